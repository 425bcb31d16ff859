from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.channels.providers.helpers import JPEG, MP4, PNG, image, video
from tests.channels.providers.oauthflow import credentials_of
from tests.channels.providers.servers.telegram import BOT_TOKEN, CHANNEL, GROUP, FakeTelegram
from tidings.channels.providers import (
    BadBodyError,
    ChannelCredentials,
    ConnectError,
    DisconnectedError,
    MediaItem,
    PostPart,
    ProviderConfig,
    RetryableError,
    UnknownOutcomeError,
    get_provider,
)
from tidings.channels.providers.telegram import TelegramProvider, TelegramSettings, utf16_length

DEFAULT = TelegramSettings()
CHAT = str(CHANNEL["id"])


def path(method: str) -> str:
    return f"/bot{BOT_TOKEN}/{method}"


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
def provider(http: httpx.AsyncClient, telegram: FakeTelegram) -> TelegramProvider:
    return TelegramProvider(http, ProviderConfig(urls={"api": telegram.base_url}))


async def connect(provider: TelegramProvider, chat: str = "@tidingsnews") -> ChannelCredentials:
    account = await provider.connect_with_fields({"bot_token": BOT_TOKEN, "chat_id": chat})
    return credentials_of(account)


async def test_the_bot_token_never_reaches_the_log(
    provider: TelegramProvider, caplog: pytest.LogCaptureFixture
) -> None:
    # httpx logs every request's URL at INFO, and Telegram's URLs carry the bot token.
    caplog.set_level(logging.INFO, logger="httpx")
    await connect(provider)
    assert "HTTP Request: GET" in caplog.text and "/bot<redacted>/getChat" in caplog.text
    assert BOT_TOKEN not in caplog.text
    assert BOT_TOKEN.split(":")[1] not in caplog.text


def test_registered() -> None:
    cls = get_provider("telegram")
    assert cls is TelegramProvider
    assert cls.connect_kind == "fields"
    assert [(f.name, f.secret) for f in cls.fields] == [("bot_token", True), ("chat_id", False)]
    assert not cls.supports_refresh


# ---- connect --------------------------------------------------------------------------------


async def test_connect_with_fields(provider: TelegramProvider, telegram: FakeTelegram) -> None:
    account = await provider.connect_with_fields(
        {"bot_token": BOT_TOKEN, "chat_id": "https://t.me/tidingsnews"}
    )
    assert [(r.method, r.path, r.query) for r in telegram.requests] == [
        ("GET", path("getMe"), {}),
        ("GET", path("getChat"), {"chat_id": "@tidingsnews"}),
        ("GET", path("getChatMember"), {"chat_id": CHAT, "user_id": "123456"}),
    ]
    assert account.internal_id == CHAT
    assert account.name == "Tidings News"
    assert account.username == "@tidingsnews"
    assert account.tokens.access_token == BOT_TOKEN
    assert account.tokens.refresh_token is None and account.tokens.expires_at is None
    assert account.custom_instance_details == {"chat_id": CHAT}
    assert account.additional_settings == {
        "bot_id": "123456",
        "bot_username": "tidings_bot",
        "chat_type": "channel",
        "chat_username": "tidingsnews",
    }
    # A bare name is taken as @name; a numeric id as is.
    assert (
        await provider.connect_with_fields({"bot_token": BOT_TOKEN, "chat_id": "tidingsnews"})
    ).internal_id == CHAT
    group = await provider.connect_with_fields(
        {"bot_token": BOT_TOKEN, "chat_id": str(GROUP["id"])}
    )
    assert group.name == "Private group" and group.username is None


async def test_connect_refusals(provider: TelegramProvider, telegram: FakeTelegram) -> None:
    with pytest.raises(ConnectError, match=r"Bot token .* is required"):
        await provider.connect_with_fields({"chat_id": "@x"})
    with pytest.raises(ConnectError, match="refused the bot token: Telegram: Unauthorized"):
        await provider.connect_with_fields({"bot_token": "1:wrong", "chat_id": "@tidingsnews"})
    with pytest.raises(ConnectError, match=r"cannot see @nowhere.*chat not found.*@tidings_bot"):
        await provider.connect_with_fields({"bot_token": BOT_TOKEN, "chat_id": "@nowhere"})
    telegram.bot_status = "member"
    with pytest.raises(ConnectError, match="administrator of the channel"):
        await provider.connect_with_fields({"bot_token": BOT_TOKEN, "chat_id": "@tidingsnews"})
    telegram.bot_status = "left"
    with pytest.raises(ConnectError, match="not a member"):
        await provider.connect_with_fields({"bot_token": BOT_TOKEN, "chat_id": "@tidingsnews"})


async def test_refresh_is_not_possible(provider: TelegramProvider) -> None:
    creds = ChannelCredentials(access_token=BOT_TOKEN, internal_id=CHAT)
    with pytest.raises(DisconnectedError, match="cannot be refreshed"):
        await provider.refresh(creds)


# ---- publishing -----------------------------------------------------------------------------


async def test_publish_text(provider: TelegramProvider, telegram: FakeTelegram) -> None:
    creds = await connect(provider)
    settings = provider.parse_settings(
        {"__type": "telegram", "disable_notification": True, "disable_link_preview": True}
    )
    result = await provider.publish(creds, PostPart(content="Hello <b>Telegram</b>"), settings)
    call = telegram.last("POST", path("sendMessage"))
    assert call.json == {
        "chat_id": CHAT,
        "text": "Hello <b>Telegram</b>",
        "disable_notification": True,
        "link_preview_options": {"is_disabled": True},
    }
    assert result.url == f"https://t.me/tidingsnews/{result.id}"
    assert telegram.messages[(CHAT, int(result.id))]["text"] == "Hello <b>Telegram</b>"
    await provider.publish(
        creds,
        PostPart(content="<b>x</b>"),
        provider.parse_settings({"parse_mode": "HTML", "protect_content": True}),
    )
    assert telegram.last("POST", path("sendMessage")).json == {
        "chat_id": CHAT,
        "text": "<b>x</b>",
        "protect_content": True,
        "parse_mode": "HTML",
    }


async def test_private_group_link(provider: TelegramProvider, telegram: FakeTelegram) -> None:
    creds = await connect(provider, str(GROUP["id"]))
    result = await provider.publish(creds, PostPart(content="hi"), DEFAULT)
    assert result.url == f"https://t.me/c/9876543210/{result.id}"


async def test_publish_photo_and_video(provider: TelegramProvider, telegram: FakeTelegram) -> None:
    creds = await connect(provider)
    photo = await provider.publish(creds, PostPart(content="a cat", media=[image(PNG)]), DEFAULT)
    call = telegram.last("POST", path("sendPhoto"))
    assert call.content_type.startswith("multipart/form-data")
    assert call.form == {"chat_id": CHAT, "caption": "a cat"}
    assert call.files["photo"].data == PNG
    assert call.files["photo"].filename == "a.png"
    assert telegram.messages[(CHAT, int(photo.id))]["caption"] == "a cat"

    await provider.publish(creds, PostPart(content="clip", media=[video()]), DEFAULT)
    call = telegram.last("POST", path("sendVideo"))
    assert call.form == {
        "chat_id": CHAT,
        "caption": "clip",
        "supports_streaming": "true",
        "width": "1280",
        "height": "720",
    }
    assert call.files["video"].data == MP4
    assert call.files["video"].content_type == "video/mp4"
    assert call.files["thumbnail"].data == JPEG

    gif = image(b"GIF89a" + b"\x00" * 20, "image/gif", name="fun.gif")
    await provider.publish(creds, PostPart(content="", media=[gif]), DEFAULT)
    call = telegram.last("POST", path("sendAnimation"))
    assert call.form == {"chat_id": CHAT}
    assert call.files["animation"].filename == "fun.gif"


async def test_publish_album(provider: TelegramProvider, telegram: FakeTelegram) -> None:
    creds = await connect(provider)
    part = PostPart(
        content="album", media=[image(PNG), image(JPEG, "image/jpeg", name="b.jpg"), video()]
    )
    result = await provider.publish(creds, part, DEFAULT)
    call = telegram.last("POST", path("sendMediaGroup"))
    assert call.form["chat_id"] == CHAT
    assert json.loads(call.form["media"]) == [
        {"type": "photo", "media": "attach://file0", "caption": "album"},
        {"type": "photo", "media": "attach://file1"},
        {"type": "video", "media": "attach://file2", "supports_streaming": True},
    ]
    assert [call.files[f"file{i}"].data for i in range(3)] == [PNG, JPEG, MP4]
    ids = result.data["message_ids"]
    assert len(ids) == 3 and result.id == ids[-1]


async def test_long_text_with_media_follows_as_reply(
    provider: TelegramProvider, telegram: FakeTelegram
) -> None:
    creds = await connect(provider)
    text = "x" * 1025
    result = await provider.publish(creds, PostPart(content=text, media=[image()]), DEFAULT)
    photo = telegram.last("POST", path("sendPhoto"))
    assert "caption" not in photo.form
    follow = telegram.last("POST", path("sendMessage"))
    photo_id = int(result.data["message_ids"][0])
    assert follow.json == {
        "chat_id": CHAT,
        "text": text,
        "reply_parameters": {"message_id": photo_id, "allow_sending_without_reply": True},
    }
    assert result.id == result.data["message_ids"][1]
    # Exactly 1024 still fits in the caption.
    await provider.publish(creds, PostPart(content="y" * 1024, media=[image()]), DEFAULT)
    assert telegram.last("POST", path("sendPhoto")).form["caption"] == "y" * 1024


async def test_reply_chain(provider: TelegramProvider, telegram: FakeTelegram) -> None:
    creds = await connect(provider)
    first = await provider.publish(creds, PostPart(content="1/3"), DEFAULT)
    second = await provider.reply(creds, first, PostPart(content="2/3"), DEFAULT)
    third = await provider.reply(creds, second, PostPart(content="3/3", media=[image()]), DEFAULT)
    texts = telegram.calls("POST", path("sendMessage"))
    assert "reply_parameters" not in texts[0].json
    assert texts[1].json["reply_parameters"] == {
        "message_id": int(first.id),
        "allow_sending_without_reply": True,
    }
    photo = telegram.last("POST", path("sendPhoto"))
    assert json.loads(photo.form["reply_parameters"]) == {
        "message_id": int(second.id),
        "allow_sending_without_reply": True,
    }
    stored = telegram.messages
    assert stored[(CHAT, int(second.id))]["reply_to_message"]["message_id"] == int(first.id)
    assert stored[(CHAT, int(third.id))]["reply_to_message"]["message_id"] == int(second.id)


# ---- errors ---------------------------------------------------------------------------------


async def test_revoked_token_is_disconnect(
    provider: TelegramProvider, telegram: FakeTelegram
) -> None:
    creds = await connect(provider)
    telegram.revoked = True
    with pytest.raises(DisconnectedError, match=r"Unauthorized.*revoked") as info:
        await provider.publish(creds, PostPart(content="x"), DEFAULT)
    assert info.value.status_code == 401


async def test_kicked_bot_is_disconnect(provider: TelegramProvider, telegram: FakeTelegram) -> None:
    creds = await connect(provider)
    telegram.kicked = True
    with pytest.raises(DisconnectedError, match="bot was kicked"):
        await provider.publish(creds, PostPart(content="x"), DEFAULT)


async def test_migrated_group_is_disconnect(
    provider: TelegramProvider, telegram: FakeTelegram
) -> None:
    creds = await connect(provider)
    telegram.fail(
        "POST",
        path("sendMessage"),
        400,
        {
            "ok": False,
            "error_code": 400,
            "description": "Bad Request: group chat was upgraded to a supergroup chat",
            "parameters": {"migrate_to_chat_id": -1001111},
        },
    )
    with pytest.raises(DisconnectedError, match="now chat -1001111"):
        await provider.publish(creds, PostPart(content="x"), DEFAULT)


async def test_rate_limited(provider: TelegramProvider, telegram: FakeTelegram) -> None:
    creds = await connect(provider)
    telegram.fail(
        "POST",
        path("sendMessage"),
        429,
        {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 17",
            "parameters": {"retry_after": 17},
        },
    )
    with pytest.raises(RetryableError, match="retry after 17") as info:
        await provider.publish(creds, PostPart(content="x"), DEFAULT)
    assert info.value.retry_after == 17


async def test_server_error_is_retryable(
    provider: TelegramProvider, telegram: FakeTelegram
) -> None:
    creds = await connect(provider)
    telegram.fail("POST", path("sendPhoto"), 502, text="<html>502 Bad Gateway</html>")
    with pytest.raises(RetryableError) as info:
        await provider.publish(creds, PostPart(content="x", media=[image()]), DEFAULT)
    assert info.value.status_code == 502


async def test_rejected_content_is_bad_body(
    provider: TelegramProvider, telegram: FakeTelegram
) -> None:
    creds = await connect(provider)
    with pytest.raises(BadBodyError, match="Telegram: Bad Request: message is too long") as info:
        await provider.publish(creds, PostPart(content="y" * 4097), DEFAULT)
    assert info.value.status_code == 400


async def test_hang_is_unknown_outcome(provider: TelegramProvider, telegram: FakeTelegram) -> None:
    creds = await connect(provider)
    telegram.hang("POST", path("sendMessage"))
    started = time.monotonic()
    with pytest.raises(UnknownOutcomeError):
        await provider.publish(creds, PostPart(content="maybe"), DEFAULT)
    assert time.monotonic() - started < 3
    assert telegram.last("POST", path("sendMessage")).json["text"] == "maybe"


# ---- validation -----------------------------------------------------------------------------


def test_length_boundary(provider: TelegramProvider) -> None:
    assert provider.validate([PostPart(content="x" * 4096)]) == []
    assert [v.code for v in provider.validate([PostPart(content="x" * 4097)])] == ["too_long"]
    # Telegram counts UTF-16 code units: an emoji outside the BMP is 2.
    assert utf16_length("😀") == 2
    assert provider.validate([PostPart(content="😀" * 2048)]) == []
    assert [v.code for v in provider.validate([PostPart(content="x" + "😀" * 2048)])] == [
        "too_long"
    ]


def test_media_rules(provider: TelegramProvider) -> None:
    def codes(media: list[MediaItem]) -> list[str]:
        return [v.code for v in provider.validate([PostPart(content="x", media=media)])]

    assert codes([image()] * 10) == []
    assert codes([image()] * 5 + [video()] * 5) == []
    assert codes([image()] * 6 + [video()] * 5) == ["too_many_media"]
    big_photo = image()
    big_photo.size = 10 * 1024 * 1024 + 1
    assert codes([big_photo]) == ["media_size"]
    big_video = video()
    big_video.size = 50 * 1024 * 1024
    assert codes([big_video]) == []
    big_video.size += 1
    assert codes([big_video]) == ["media_size"]

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from tests.channels.providers.helpers import JPEG, PNG, image, video
from tests.channels.providers.oauthflow import approve, credentials_of, query_of
from tests.channels.providers.servers.discord import (
    API,
    BOT_TOKEN,
    CHANNELS,
    GUILD_ID,
    FakeDiscord,
)
from tidings.channels.providers import (
    BadBodyError,
    ChannelCredentials,
    ConnectError,
    DisconnectedError,
    PostPart,
    ProviderConfig,
    ProviderError,
    PublishResult,
    RefreshTokenError,
    RetryableError,
    UnknownOutcomeError,
    get_provider,
)
from tidings.channels.providers.discord import BOT_PERMISSIONS, DiscordProvider, DiscordSettings

REDIRECT = "https://tidings.example/integrations/social/discord"
GENERAL = CHANNELS[0]["id"]
ANNOUNCEMENTS = CHANNELS[2]["id"]
MESSAGES = f"{API}/channels/{{channel}}/messages"
DEFAULT = DiscordSettings()


@pytest.fixture
async def discord() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        yield server


@pytest.fixture
def provider(http: httpx.AsyncClient, discord: FakeDiscord) -> DiscordProvider:
    return DiscordProvider(
        http,
        ProviderConfig(
            client_id="discord-app",
            client_secret="discord-secret",
            urls={"api": discord.url(API), "web": discord.base_url, "cdn": "https://cdn.test"},
            extra={"bot_token": BOT_TOKEN},
        ),
    )


async def connect(
    provider: DiscordProvider, discord: FakeDiscord, http: httpx.AsyncClient
) -> ChannelCredentials:
    start = await provider.authorization_url(REDIRECT, "st", "unused-verifier")
    callback = await approve(http, start.url, REDIRECT)
    account = await provider.exchange_code(callback["code"], REDIRECT, "unused-verifier")
    picked = await provider.select_choice(credentials_of(account), GENERAL)
    return credentials_of(picked)


def test_registered() -> None:
    assert get_provider("discord") is DiscordProvider
    assert DiscordProvider.connect_kind == "oauth"
    assert DiscordProvider.supports_replies
    assert DiscordProvider.tool_names() == ["channels"]
    assert DiscordProvider.settings_schema()["properties"]["channel"]


# ---- connect --------------------------------------------------------------------------------


async def test_connect_picks_a_channel(
    provider: DiscordProvider, discord: FakeDiscord, http: httpx.AsyncClient
) -> None:
    start = await provider.authorization_url(REDIRECT, "st4te", "v")
    where, query = query_of(start.url)
    assert where == discord.url("/oauth2/authorize")
    assert query == {
        "client_id": "discord-app",
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "scope": "bot identify guilds",
        "permissions": str(BOT_PERMISSIONS),
        "integration_type": "0",
        "state": "st4te",
    }
    # View, send, embed, attach, history, @everyone, threads.
    assert BOT_PERMISSIONS == 274878155776
    callback = await approve(http, start.url, REDIRECT)
    assert callback["state"] == "st4te"
    assert callback["guild_id"] == GUILD_ID
    account = await provider.exchange_code(callback["code"], REDIRECT, "v")

    token_call = discord.last("POST", f"{API}/oauth2/token")
    basic = base64.b64encode(b"discord-app:discord-secret").decode()
    assert token_call.auth == f"Basic {basic}"
    assert token_call.form == {
        "grant_type": "authorization_code",
        "code": callback["code"],
        "redirect_uri": REDIRECT,
    }
    assert discord.last("GET", f"{API}/users/@me").auth == f"Bearer {account.tokens.access_token}"
    assert account.internal_id == GUILD_ID
    assert account.name == "Tidings Fans"
    assert account.picture == f"https://cdn.test/icons/{GUILD_ID}/a1b2c3.png"
    assert account.username == "nelly"
    assert account.in_between_steps
    assert account.tokens.refresh_token
    assert account.tokens.expires_at is not None
    assert account.custom_instance_details == {"guild_id": GUILD_ID}

    creds = credentials_of(account)
    choices = await provider.list_choices(creds)
    listing = discord.last("GET", f"{API}/guilds/{GUILD_ID}/channels")
    assert listing.auth == f"Bot {BOT_TOKEN}"
    # Text and announcement channels only, by position.
    assert [(c.id, c.name) for c in choices] == [
        (ANNOUNCEMENTS, "#announcements"),
        (GENERAL, "#general"),
    ]
    assert await provider.call_tool("channels", creds, {}) == [
        {"id": ANNOUNCEMENTS, "name": "announcements"},
        {"id": GENERAL, "name": "general"},
    ]

    picked = await provider.select_choice(creds, GENERAL)
    assert not picked.in_between_steps
    assert picked.internal_id == GUILD_ID
    assert picked.name == "Tidings Fans"
    assert picked.tokens.access_token == account.tokens.access_token
    assert picked.tokens.refresh_token == account.tokens.refresh_token
    assert picked.additional_settings == {
        "connected_by": "80351110224678912",
        "channel_id": GENERAL,
        "channel_name": "general",
    }
    with pytest.raises(ConnectError, match="not a text channel"):
        await provider.select_choice(creds, CHANNELS[1]["id"])  # voice


async def test_exchange_bad_code(provider: DiscordProvider) -> None:
    with pytest.raises(ConnectError, match="Invalid authorization code"):
        await provider.exchange_code("nope", REDIRECT, "v")


async def test_unconfigured_bot_token(http: httpx.AsyncClient, discord: FakeDiscord) -> None:
    provider = DiscordProvider(http, ProviderConfig(urls={"api": discord.url(API)}))
    creds = ChannelCredentials(
        access_token="t", internal_id=GUILD_ID, additional_settings={"channel_id": GENERAL}
    )
    with pytest.raises(ProviderError, match="TIDINGS_DISCORD_BOT_TOKEN"):
        await provider.publish(creds, PostPart(content="x"), DEFAULT)
    with pytest.raises(ProviderError, match="TIDINGS_DISCORD_CLIENT_ID"):
        await provider.authorization_url(REDIRECT, "s", "v")


# ---- refresh --------------------------------------------------------------------------------


async def test_refresh(
    provider: DiscordProvider, discord: FakeDiscord, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, discord, http)
    tokens = await provider.refresh(creds)
    call = discord.last("POST", f"{API}/oauth2/token")
    assert call.form == {"grant_type": "refresh_token", "refresh_token": creds.refresh_token}
    assert call.auth and call.auth.startswith("Basic ")
    assert tokens.access_token != creds.access_token
    assert tokens.refresh_token and tokens.refresh_token != creds.refresh_token
    # The old refresh token was rotated away: refusing it means reconnecting.
    with pytest.raises(DisconnectedError, match="Invalid refresh token"):
        await provider.refresh(creds)
    # A platform answer without a new refresh token keeps the stored one.
    discord.oauth.rotate_refresh = False
    creds.refresh_token = tokens.refresh_token
    assert (await provider.refresh(creds)).refresh_token is None


# ---- publishing -----------------------------------------------------------------------------


async def test_publish_text(
    provider: DiscordProvider, discord: FakeDiscord, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, discord, http)
    result = await provider.publish(
        creds, PostPart(content="Hello **Discord**", idempotency_key="p1"), DEFAULT
    )
    call = discord.last("POST", MESSAGES)
    assert call.path == f"{API}/channels/{GENERAL}/messages"
    assert call.auth == f"Bot {BOT_TOKEN}"
    assert call.json == {
        "content": "Hello **Discord**",
        "nonce": call.json["nonce"],
        "enforce_nonce": True,
    }
    assert len(call.json["nonce"]) == 25
    assert result.id in discord.messages
    assert result.url == discord.url(f"/channels/{GUILD_ID}/{GENERAL}/{result.id}")
    assert result.data == {"channel_id": GENERAL}


async def test_channel_setting_overrides_and_retry_is_deduplicated(
    provider: DiscordProvider, discord: FakeDiscord, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, discord, http)
    settings = provider.parse_settings({"__type": "discord", "channel": ANNOUNCEMENTS})
    first = await provider.publish(creds, PostPart(content="news", idempotency_key="k"), settings)
    again = await provider.publish(creds, PostPart(content="news", idempotency_key="k"), settings)
    assert discord.last("POST", MESSAGES).path == f"{API}/channels/{ANNOUNCEMENTS}/messages"
    assert first.id == again.id
    assert len(discord.messages) == 1


async def test_publish_without_channel_is_bad_body(provider: DiscordProvider) -> None:
    creds = ChannelCredentials(access_token="t", internal_id=GUILD_ID)
    with pytest.raises(BadBodyError, match="Pick the Discord channel"):
        await provider.publish(creds, PostPart(content="x"), DEFAULT)


async def test_publish_with_attachments(
    provider: DiscordProvider, discord: FakeDiscord, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, discord, http)
    part = PostPart(
        content="pics",
        media=[image(PNG, alt="a cat"), image(JPEG, "image/jpeg", name="b.jpg"), video()],
    )
    result = await provider.publish(creds, part, DEFAULT)
    call = discord.last("POST", MESSAGES)
    assert call.auth == f"Bot {BOT_TOKEN}"
    assert call.content_type.startswith("multipart/form-data")
    payload = json.loads(call.form["payload_json"])
    assert payload["content"] == "pics"
    assert payload["attachments"] == [
        {"id": 0, "filename": "a.png", "description": "a cat"},
        {"id": 1, "filename": "b.jpg"},
        {"id": 2, "filename": "v.mp4"},
    ]
    assert list(call.files) == ["files[0]", "files[1]", "files[2]"]
    assert call.files["files[0]"].data == PNG
    assert call.files["files[0]"].content_type == "image/png"
    assert call.files["files[1]"].data == JPEG
    assert call.files["files[2]"].content_type == "video/mp4"
    stored = discord.messages[result.id]["attachments"]
    assert [a["filename"] for a in stored] == ["a.png", "b.jpg", "v.mp4"]


async def test_reply_chain(
    provider: DiscordProvider, discord: FakeDiscord, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, discord, http)
    first = await provider.publish(creds, PostPart(content="1/3"), DEFAULT)
    second = await provider.reply(creds, first, PostPart(content="2/3"), DEFAULT)
    third = await provider.reply(creds, second, PostPart(content="3/3", media=[image()]), DEFAULT)
    calls = discord.calls("POST", MESSAGES)
    assert calls[1].json["message_reference"] == {
        "message_id": first.id,
        "channel_id": GENERAL,
        "fail_if_not_exists": False,
    }
    assert json.loads(calls[2].form["payload_json"])["message_reference"]["message_id"] == (
        second.id
    )
    assert discord.messages[second.id]["message_reference"]["message_id"] == first.id
    assert discord.messages[third.id]["message_reference"]["message_id"] == second.id


# ---- errors ---------------------------------------------------------------------------------


async def test_bad_bot_token_is_refresh_error(
    http: httpx.AsyncClient, discord: FakeDiscord
) -> None:
    provider = DiscordProvider(
        http, ProviderConfig(urls={"api": discord.url(API)}, extra={"bot_token": "wrong"})
    )
    creds = ChannelCredentials(
        access_token="t", internal_id=GUILD_ID, additional_settings={"channel_id": GENERAL}
    )
    with pytest.raises(RefreshTokenError, match="401: Unauthorized") as info:
        await provider.publish(creds, PostPart(content="x"), DEFAULT)
    assert info.value.status_code == 401


async def test_rate_limited(
    provider: DiscordProvider, discord: FakeDiscord, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, discord, http)
    discord.fail(
        "POST",
        MESSAGES,
        429,
        {"message": "You are being rate limited.", "retry_after": 2.5, "global": False},
        headers={"Retry-After": "3"},
    )
    with pytest.raises(RetryableError, match="You are being rate limited") as info:
        await provider.publish(creds, PostPart(content="x"), DEFAULT)
    assert info.value.retry_after == 2.5
    assert info.value.status_code == 429


async def test_server_error_is_retryable(
    provider: DiscordProvider, discord: FakeDiscord, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, discord, http)
    discord.fail("POST", MESSAGES, 502, text="Bad Gateway")
    with pytest.raises(RetryableError) as info:
        await provider.publish(creds, PostPart(content="x"), DEFAULT)
    assert info.value.status_code == 502
    assert info.value.excerpt == "Bad Gateway"


async def test_rejected_content_is_bad_body(
    provider: DiscordProvider, discord: FakeDiscord, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, discord, http)
    with pytest.raises(
        BadBodyError, match=r"Invalid Form Body: content: Must be 2000 or fewer in length\."
    ) as info:
        await provider.publish(creds, PostPart(content="y" * 2001), DEFAULT)
    assert info.value.status_code == 400


async def test_bot_removed_is_disconnect(
    provider: DiscordProvider, discord: FakeDiscord, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, discord, http)
    discord.bot_in_guild = False
    with pytest.raises(DisconnectedError, match="Missing Access"):
        await provider.publish(creds, PostPart(content="x"), DEFAULT)
    with pytest.raises(DisconnectedError, match="Missing Access"):
        await provider.list_choices(creds)


async def test_deleted_channel_is_disconnect(
    provider: DiscordProvider, discord: FakeDiscord, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, discord, http)
    creds.additional_settings["channel_id"] = "999"
    with pytest.raises(DisconnectedError, match="Unknown Channel"):
        await provider.publish(creds, PostPart(content="x"), DEFAULT)


async def test_hang_is_unknown_outcome(
    provider: DiscordProvider, discord: FakeDiscord, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, discord, http)
    discord.hang("POST", MESSAGES)
    started = time.monotonic()
    with pytest.raises(UnknownOutcomeError):
        await provider.publish(creds, PostPart(content="maybe"), DEFAULT)
    assert time.monotonic() - started < 3
    assert discord.last("POST", MESSAGES).json["content"] == "maybe"


async def test_find_published_after_a_lost_answer(
    provider: DiscordProvider, discord: FakeDiscord, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, discord, http)
    since = datetime.now(UTC)
    # Look-alikes: a human's message, an old bot message, a reply to something else.
    discord.add_message(GENERAL, "the news", bot=False)
    discord.add_message(GENERAL, "the news", bot=True, timestamp="2020-01-01T00:00:00+00:00")
    discord.hang("POST", MESSAGES, process=True)
    with pytest.raises(UnknownOutcomeError):
        await provider.publish(creds, PostPart(content="the news"), DEFAULT)
    sent = next(
        m
        for m in discord.messages.values()
        if m["author"]["bot"] and m["content"] == "the news" and m["timestamp"] > "2021"
    )
    found = await provider.find_published(
        creds, PostPart(content="the news"), DEFAULT, parent=None, since=since
    )
    listing = discord.last("GET", MESSAGES)
    assert listing.path == f"{API}/channels/{GENERAL}/messages"
    assert listing.auth == f"Bot {BOT_TOKEN}" and listing.query == {"limit": "50"}
    assert found is not None and found.id == sent["id"]
    assert found.url == discord.url(f"/channels/{GUILD_ID}/{GENERAL}/{sent['id']}")
    # A reply is found under its parent only; an unsent part is not found at all.
    parent = PublishResult(id=sent["id"], data={"channel_id": GENERAL})
    assert (
        await provider.find_published(
            creds, PostPart(content="the news"), DEFAULT, parent=parent, since=since
        )
        is None
    )
    reply_id = discord.add_message(GENERAL, "more", bot=True, reference=sent["id"])
    found_reply = await provider.find_published(
        creds, PostPart(content="more"), DEFAULT, parent=parent, since=since
    )
    assert found_reply is not None and found_reply.id == reply_id
    assert (
        await provider.find_published(
            creds, PostPart(content="never sent"), DEFAULT, parent=None, since=since
        )
        is None
    )


# ---- validation -----------------------------------------------------------------------------


def test_length_boundary(provider: DiscordProvider) -> None:
    assert provider.validate([PostPart(content="x" * 1980)]) == []
    violations = provider.validate([PostPart(content="x" * 1981)])
    assert [(v.code, v.part_index) for v in violations] == [("too_long", 0)]
    reply = provider.validate([PostPart(content="a"), PostPart(content="x" * 1981)])
    assert [(v.code, v.part_index) for v in reply] == [("too_long", 1)]


def test_media_rules(provider: DiscordProvider) -> None:
    def codes(media: list) -> list[str]:  # type: ignore[type-arg]
        return [v.code for v in provider.validate([PostPart(content="x", media=media)])]

    assert codes([image()] * 10) == []
    assert codes([image()] * 5 + [video()] * 5) == []
    assert codes([image()] * 11) == ["too_many_images", "too_many_media"]
    assert codes([image()] * 6 + [video()] * 5) == ["too_many_media"]
    assert codes([image(mime="image/bmp")]) == ["media_type"]
    assert [v.code for v in provider.validate([PostPart(content="x")], {"channel": "#x"})] == [
        "settings"
    ]

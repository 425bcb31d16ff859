from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.channels.providers.helpers import JPEG, MP4, PNG, image, video
from tests.channels.providers.oauthflow import approve, credentials_of, query_of
from tests.channels.providers.servers.slack import TEAM_ID, FakeSlack
from tidings.channels.providers import (
    BadBodyError,
    ChannelCredentials,
    ConnectError,
    DisconnectedError,
    PostPart,
    ProviderConfig,
    PublishResult,
    RefreshTokenError,
    RetryableError,
    UnknownOutcomeError,
    get_provider,
)
from tidings.channels.providers.slack import SlackProvider, SlackSettings

REDIRECT = "https://tidings.example/integrations/social/slack"
POST = "/api/chat.postMessage"
GENERAL = "C0GENERAL1"
DEFAULT = SlackSettings()


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


@pytest.fixture
def provider(http: httpx.AsyncClient, slack: FakeSlack) -> SlackProvider:
    p = SlackProvider(
        http,
        ProviderConfig(
            client_id="slack-app",
            client_secret="slack-secret",
            urls={"api": slack.url("/api"), "web": slack.base_url},
        ),
    )
    p.share_poll_interval = 0.01
    return p


async def connect(
    provider: SlackProvider, slack: FakeSlack, http: httpx.AsyncClient, channel: str = GENERAL
) -> ChannelCredentials:
    start = await provider.authorization_url(REDIRECT, "st", "v")
    callback = await approve(http, start.url, REDIRECT)
    account = await provider.exchange_code(callback["code"], REDIRECT, "v")
    return credentials_of(await provider.select_choice(credentials_of(account), channel))


def test_registered() -> None:
    assert get_provider("slack") is SlackProvider
    assert SlackProvider.supports_replies
    assert SlackProvider.tool_names() == ["channels"]
    assert SlackProvider.default_max_length == 400000


# ---- connect --------------------------------------------------------------------------------


async def test_connect_picks_a_channel(
    provider: SlackProvider, slack: FakeSlack, http: httpx.AsyncClient
) -> None:
    start = await provider.authorization_url(REDIRECT, "st4te", "v")
    where, query = query_of(start.url)
    assert where == slack.url("/oauth/v2/authorize")
    assert query == {
        "client_id": "slack-app",
        "scope": "channels:read,groups:read,channels:history,groups:history,channels:join,"
        "chat:write,chat:write.public,files:write,files:read,team:read",
        "redirect_uri": REDIRECT,
        "state": "st4te",
    }
    callback = await approve(http, start.url, REDIRECT)
    assert callback["state"] == "st4te"
    account = await provider.exchange_code(callback["code"], REDIRECT, "v")
    call = slack.last("POST", "/api/oauth.v2.access")
    assert call.auth == "Basic " + base64.b64encode(b"slack-app:slack-secret").decode()
    assert call.form == {"code": callback["code"], "redirect_uri": REDIRECT}
    assert slack.last("GET", "/api/team.info").auth == f"Bearer {account.tokens.access_token}"
    assert account.internal_id == TEAM_ID
    assert account.name == "Acme"
    assert account.username == "acme"
    assert account.picture == "https://avatars.test/acme_132.png"
    assert account.in_between_steps
    # Without token rotation Slack tokens never expire and come without a refresh token.
    assert account.tokens.refresh_token is None and account.tokens.expires_at is None

    creds = credentials_of(account)
    choices = await provider.list_choices(creds)
    listings = slack.calls("GET", "/api/conversations.list")
    assert [c.query.get("cursor") for c in listings] == [None, "2"]  # followed the cursor
    assert listings[0].query == {
        "types": "public_channel,private_channel",
        "exclude_archived": "true",
        "limit": "200",
    }
    assert [(c.id, c.name) for c in choices] == [
        ("C0GENERAL1", "#general"),
        ("C0RANDOM22", "#random"),
        ("G0SECRET33", "#secret"),
        ("G0TEAM4444", "#team"),
    ]
    # A public channel the app is not in: it joins.
    picked = await provider.select_choice(creds, "C0RANDOM22")
    assert slack.last("POST", "/api/conversations.join").json == {"channel": "C0RANDOM22"}
    assert not picked.in_between_steps
    assert picked.internal_id == TEAM_ID
    assert picked.additional_settings == {
        "bot_user_id": "U0BOT",
        "channel_id": "C0RANDOM22",
        "channel_name": "random",
    }
    assert picked.tokens.access_token == account.tokens.access_token
    # A private channel it was not invited to: the user has to invite it first.
    with pytest.raises(ConnectError, match="Invite the app to #secret"):
        await provider.select_choice(creds, "G0SECRET33")
    with pytest.raises(ConnectError, match="was not found"):
        await provider.select_choice(creds, "C0NOPE")
    assert await provider.call_tool("channels", creds, {}) == [
        {"id": "C0GENERAL1", "name": "general"},
        {"id": "C0RANDOM22", "name": "random"},
        {"id": "G0SECRET33", "name": "secret"},
        {"id": "G0TEAM4444", "name": "team"},
    ]


async def test_exchange_bad_code(provider: SlackProvider) -> None:
    with pytest.raises(ConnectError, match="invalid_code"):
        await provider.exchange_code("nope", REDIRECT, "v")


# ---- refresh --------------------------------------------------------------------------------


async def test_refresh_with_token_rotation(
    provider: SlackProvider, slack: FakeSlack, http: httpx.AsyncClient
) -> None:
    slack.rotation()
    creds = await connect(provider, slack, http)
    assert creds.refresh_token and creds.token_expires_at
    tokens = await provider.refresh(creds)
    call = slack.last("POST", "/api/oauth.v2.access")
    assert call.form == {"grant_type": "refresh_token", "refresh_token": creds.refresh_token}
    assert call.auth and call.auth.startswith("Basic ")
    assert tokens.access_token != creds.access_token
    assert tokens.refresh_token and tokens.expires_at
    with pytest.raises(DisconnectedError, match="invalid_refresh_token"):
        await provider.refresh(creds)  # rotated away


async def test_refresh_without_rotation_is_disconnect(
    provider: SlackProvider, slack: FakeSlack, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, slack, http)
    with pytest.raises(DisconnectedError, match="reconnect"):
        await provider.refresh(creds)


# ---- publishing -----------------------------------------------------------------------------


async def test_publish_text(
    provider: SlackProvider, slack: FakeSlack, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, slack, http)
    result = await provider.publish(creds, PostPart(content="Hello *Slack*"), DEFAULT)
    call = slack.last("POST", POST)
    assert call.auth == f"Bearer {creds.access_token}"
    assert call.content_type.startswith("application/json")
    assert call.json == {"channel": GENERAL, "text": "Hello *Slack*", "unfurl_links": True}
    assert (GENERAL, result.id) in slack.messages
    assert result.url == f"https://acme.slack.test/archives/{GENERAL}/p{result.id.replace('.', '')}"
    assert result.data == {"channel_id": GENERAL, "thread_ts": result.id}
    # Another channel for one post, links without previews.
    settings = provider.parse_settings({"channel": "G0TEAM4444", "unfurl_links": False})
    await provider.publish(creds, PostPart(content="team"), settings)
    assert slack.last("POST", POST).json == {
        "channel": "G0TEAM4444",
        "text": "team",
        "unfurl_links": False,
    }


async def test_publish_with_files(provider: SlackProvider, http: httpx.AsyncClient) -> None:
    async with FakeSlack(share_polls=2) as slack:
        provider.config.urls = {"api": slack.url("/api"), "web": slack.base_url}
        creds = await connect(provider, slack, http)
        part = PostPart(content="look", media=[image(PNG, alt="a cat"), video()])
        result = await provider.publish(creds, part, DEFAULT)

        tickets = slack.calls("POST", "/api/files.getUploadURLExternal")
        assert [t.form for t in tickets] == [
            {"filename": "a.png", "length": str(len(PNG)), "alt_txt": "a cat"},
            {"filename": "v.mp4", "length": str(len(MP4))},
        ]
        assert all(t.auth == f"Bearer {creds.access_token}" for t in tickets)
        uploads = slack.calls("POST", "/upload/v1/{file}")
        assert [u.body for u in uploads] == [PNG, MP4]
        assert [u.content_type for u in uploads] == ["image/png", "video/mp4"]
        file_ids = list(slack.files)
        complete = slack.last("POST", "/api/files.completeUploadExternal")
        assert complete.auth == f"Bearer {creds.access_token}"
        assert complete.json == {
            "files": [{"id": file_ids[0]}, {"id": file_ids[1]}],
            "channel_id": GENERAL,
            "initial_comment": "look",
        }
        # The share shows up in files.info after two polls: the message ts is read there.
        infos = slack.calls("GET", "/api/files.info")
        assert [i.query for i in infos] == [{"file": file_ids[0]}] * 3
        message = slack.messages[(GENERAL, result.id)]
        assert message["files"] == file_ids and message["text"] == "look"
        assert slack.calls("POST", POST) == []
        assert result.url and result.url.endswith(result.id.replace(".", ""))


async def test_share_never_visible_is_still_published(
    provider: SlackProvider, http: httpx.AsyncClient
) -> None:
    async with FakeSlack(share_polls=1000) as slack:
        provider.config.urls = {"api": slack.url("/api"), "web": slack.base_url}
        provider.share_poll_timeout = 0.05
        creds = await connect(provider, slack, http)
        result = await provider.publish(creds, PostPart(content="x", media=[image()]), DEFAULT)
        file_id = next(iter(slack.files))
        assert result.id == file_id
        assert result.data == {"channel_id": GENERAL, "file_id": file_id}
        # A reply to it follows in the channel, since its thread is unknown.
        await provider.reply(creds, result, PostPart(content="more"), DEFAULT)
        assert slack.last("POST", POST).json == {
            "channel": GENERAL,
            "text": "more",
            "unfurl_links": True,
        }


async def test_reply_chain(
    provider: SlackProvider, slack: FakeSlack, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, slack, http)
    first = await provider.publish(creds, PostPart(content="1/3"), DEFAULT)
    second = await provider.reply(creds, first, PostPart(content="2/3"), DEFAULT)
    third = await provider.reply(creds, second, PostPart(content="3/3", media=[image()]), DEFAULT)
    posts = slack.calls("POST", POST)
    assert [p.json.get("thread_ts") for p in posts] == [None, first.id]
    complete = slack.last("POST", "/api/files.completeUploadExternal")
    # Slack threads are one level deep: every reply goes under the first message.
    assert complete.json["thread_ts"] == first.id
    assert slack.messages[(GENERAL, second.id)]["thread_ts"] == first.id
    assert slack.messages[(GENERAL, third.id)]["thread_ts"] == first.id
    assert third.data == {"channel_id": GENERAL, "thread_ts": first.id}
    # A reply given only the parent's id (no stored data) still lands in the thread.
    fourth = await provider.reply(creds, PublishResult(id=first.id), PostPart(content="4"), DEFAULT)
    assert slack.messages[(GENERAL, fourth.id)]["thread_ts"] == first.id


# ---- errors ---------------------------------------------------------------------------------


async def test_invalid_auth_is_refresh_error(
    provider: SlackProvider, slack: FakeSlack, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, slack, http)
    slack.oauth.expire_all()
    with pytest.raises(RefreshTokenError, match="invalid_auth") as info:
        await provider.publish(creds, PostPart(content="x"), DEFAULT)
    assert info.value.status_code == 200  # Slack's errors come with HTTP 200


@pytest.mark.parametrize("cause", ["revoked", "inactive"])
async def test_revoked_or_inactive_is_disconnect(
    provider: SlackProvider, slack: FakeSlack, http: httpx.AsyncClient, cause: str
) -> None:
    creds = await connect(provider, slack, http)
    if cause == "revoked":
        slack.oauth.revoke_all()
    else:
        slack.inactive = True
    code = "token_revoked" if cause == "revoked" else "account_inactive"
    with pytest.raises(DisconnectedError, match=code):
        await provider.publish(creds, PostPart(content="x"), DEFAULT)


async def test_rate_limited(
    provider: SlackProvider, slack: FakeSlack, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, slack, http)
    slack.fail(
        "POST", POST, 429, {"ok": False, "error": "ratelimited"}, headers={"Retry-After": "30"}
    )
    with pytest.raises(RetryableError, match="ratelimited") as info:
        await provider.publish(creds, PostPart(content="x"), DEFAULT)
    assert info.value.retry_after == 30
    # Also when the body is empty, and when the error comes with HTTP 200.
    slack.fail("POST", POST, 429, text="", headers={"Retry-After": "5"})
    with pytest.raises(RetryableError, match="ratelimited") as info:
        await provider.publish(creds, PostPart(content="x"), DEFAULT)
    assert info.value.retry_after == 5
    slack.fail("POST", POST, 200, {"ok": False, "error": "ratelimited"})
    with pytest.raises(RetryableError):
        await provider.publish(creds, PostPart(content="x"), DEFAULT)


async def test_server_errors_are_retryable(
    provider: SlackProvider, slack: FakeSlack, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, slack, http)
    slack.fail("POST", POST, 503, text="upstream connect error")
    with pytest.raises(RetryableError) as info:
        await provider.publish(creds, PostPart(content="x"), DEFAULT)
    assert info.value.status_code == 503
    assert info.value.excerpt == "upstream connect error"
    slack.fail("POST", POST, 200, {"ok": False, "error": "internal_error"})
    with pytest.raises(RetryableError, match="internal_error"):
        await provider.publish(creds, PostPart(content="x"), DEFAULT)


async def test_rejected_content_is_bad_body(
    http: httpx.AsyncClient, provider: SlackProvider
) -> None:
    async with FakeSlack(max_text=100) as slack:
        provider.config.urls = {"api": slack.url("/api"), "web": slack.base_url}
        creds = await connect(provider, slack, http)
        with pytest.raises(BadBodyError, match="msg_too_long") as info:
            await provider.publish(creds, PostPart(content="y" * 101), DEFAULT)
        assert info.value.excerpt == '{"ok":false,"error":"msg_too_long"}'
        creds.additional_settings["channel_id"] = "G0SECRET33"
        with pytest.raises(BadBodyError, match=r"not_in_channel.*invite it"):
            await provider.publish(creds, PostPart(content="y"), DEFAULT)


async def test_hang_is_unknown_outcome(
    provider: SlackProvider, slack: FakeSlack, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, slack, http)
    slack.hang("POST", POST)
    started = time.monotonic()
    with pytest.raises(UnknownOutcomeError):
        await provider.publish(creds, PostPart(content="maybe"), DEFAULT)
    assert time.monotonic() - started < 3
    assert slack.last("POST", POST).json["text"] == "maybe"


async def test_upload_hang_is_retryable_but_share_hang_is_unknown(
    provider: SlackProvider, slack: FakeSlack, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, slack, http)
    slack.hang("POST", "/upload/v1/{file}")
    with pytest.raises(RetryableError):
        await provider.publish(
            creds, PostPart(content="x", media=[image(JPEG, "image/jpeg")]), DEFAULT
        )
    slack.hang("POST", "/api/files.completeUploadExternal")
    with pytest.raises(UnknownOutcomeError):
        await provider.publish(creds, PostPart(content="x", media=[image()]), DEFAULT)


async def test_find_published_after_a_lost_answer(
    provider: SlackProvider, slack: FakeSlack, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, slack, http)
    since = datetime.now(UTC) - timedelta(seconds=1)
    slack.add_message(GENERAL, "a < b & c", user="U0ALICE")  # a person wrote the same
    slack.hang("POST", POST, process=True)
    with pytest.raises(UnknownOutcomeError):
        await provider.publish(creds, PostPart(content="a < b & c"), DEFAULT)
    sent = max(ts for (c, ts), m in slack.messages.items() if m["user"] == "U0BOT")
    found = await provider.find_published(
        creds, PostPart(content="a < b & c"), DEFAULT, parent=None, since=since
    )
    history = slack.last("GET", "/api/conversations.history")
    assert history.auth == f"Bearer {creds.access_token}"
    assert history.query["channel"] == GENERAL and history.query["limit"] == "100"
    assert float(history.query["oldest"]) == pytest.approx(
        (since - timedelta(minutes=2)).timestamp(), abs=1e-3
    )
    assert found is not None and found.id == sent
    assert found.data == {"channel_id": GENERAL, "thread_ts": sent}
    assert (
        await provider.find_published(
            creds, PostPart(content="other"), DEFAULT, parent=None, since=since
        )
        is None
    )
    # Replies are looked for in the parent's thread.
    slack.hang("POST", POST, process=True)
    with pytest.raises(UnknownOutcomeError):
        await provider.reply(creds, found, PostPart(content="in thread"), DEFAULT)
    reply = await provider.find_published(
        creds, PostPart(content="in thread"), DEFAULT, parent=found, since=since
    )
    assert slack.last("GET", "/api/conversations.replies").query["ts"] == sent
    assert reply is not None and slack.messages[(GENERAL, reply.id)]["thread_ts"] == sent
    assert (
        await provider.find_published(
            creds, PostPart(content="in thread"), DEFAULT, parent=None, since=since
        )
        is None
    )


# ---- validation -----------------------------------------------------------------------------


def test_length_boundary(provider: SlackProvider) -> None:
    assert provider.validate([PostPart(content="x" * 400000)]) == []
    violations = provider.validate([PostPart(content="x" * 400001)])
    assert [(v.code, v.part_index) for v in violations] == [("too_long", 0)]


def test_media_and_settings_rules(provider: SlackProvider) -> None:
    def codes(media: list, settings: dict | None = None) -> list[str]:  # type: ignore[type-arg]
        return [v.code for v in provider.validate([PostPart(content="x", media=media)], settings)]

    assert codes([image(), video()]) == []
    assert codes([image()] * 11) == ["too_many_images"]
    assert codes([], {"channel": "general"}) == ["settings"]
    assert codes([], {"channel": "C0GENERAL1"}) == []

from __future__ import annotations

import base64
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.channels.providers.helpers import JPEG, MP4, PNG, StreamedFile, image, video
from tests.channels.providers.servers.x import CLIENT_ID, CLIENT_SECRET, FakeX
from tidings.channels.providers import (
    BadBodyError,
    ChannelCredentials,
    ConnectError,
    DisconnectedError,
    PostPart,
    ProviderConfig,
    ProviderError,
    RefreshTokenError,
    RetryableError,
    UnknownOutcomeError,
    code_challenge,
    config_from_env,
    get_provider,
    new_code_verifier,
)
from tidings.channels.providers.x import XProvider, XSettings, weighted_length

REDIRECT = "https://tidings.example/integrations/social/x"
TWEETS = "/2/tweets"
DEFAULT = XSettings()
BASIC = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()


@pytest.fixture
async def api() -> AsyncIterator[FakeX]:
    async with FakeX() as server:
        yield server


def make(http: httpx.AsyncClient, api: FakeX, *, secret: bool = True) -> XProvider:
    env = {
        "TIDINGS_X_CLIENT_ID": CLIENT_ID,
        "TIDINGS_X_API_URL": api.base_url,
        "TIDINGS_X_AUTH_URL": api.base_url,
    }
    if secret:
        env["TIDINGS_X_CLIENT_SECRET"] = CLIENT_SECRET
    provider = XProvider(http, config_from_env("x", env))
    provider.max_poll_wait = 0.01
    return provider


@pytest.fixture
def provider(http: httpx.AsyncClient, api: FakeX) -> XProvider:
    return make(http, api)


async def connect(provider: XProvider, api: FakeX, http: httpx.AsyncClient) -> ChannelCredentials:
    verifier = new_code_verifier()
    start = await provider.authorization_url(REDIRECT, "xyz", verifier)
    location = (await http.get(start.url)).headers["location"]
    code = parse_qs(urlsplit(location).query)["code"][0]
    account = await provider.exchange_code(code, REDIRECT, verifier)
    return ChannelCredentials(
        access_token=account.tokens.access_token,
        refresh_token=account.tokens.refresh_token,
        token_expires_at=account.tokens.expires_at,
        internal_id=account.internal_id,
        profile=account.username,
        additional_settings=account.additional_settings,
    )


def test_registered_and_config() -> None:
    assert get_provider("x") is XProvider
    config = config_from_env("x", {})
    assert config.url("api") == "https://api.x.com"
    assert config.url("auth") == "https://x.com"
    assert config.client_id is None


# ---- connect and refresh --------------------------------------------------------------------


async def test_oauth_connect(provider: XProvider, api: FakeX, http: httpx.AsyncClient) -> None:
    verifier = new_code_verifier()
    start = await provider.authorization_url(REDIRECT, "xyz", verifier)
    url = urlsplit(start.url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == api.url("/i/oauth2/authorize")
    assert parse_qs(url.query) == {
        "response_type": ["code"],
        "client_id": [CLIENT_ID],
        "redirect_uri": [REDIRECT],
        "scope": ["tweet.read tweet.write users.read offline.access media.write"],
        "state": ["xyz"],
        "code_challenge": [code_challenge(verifier)],
        "code_challenge_method": ["S256"],
    }
    assert start.custom_instance_details is None
    location = (await http.get(start.url)).headers["location"]
    callback = parse_qs(urlsplit(location).query)
    assert callback["state"] == ["xyz"]
    account = await provider.exchange_code(callback["code"][0], REDIRECT, verifier)

    token_call = api.last("POST", "/2/oauth2/token")
    assert token_call.auth == BASIC
    assert token_call.form == {
        "grant_type": "authorization_code",
        "code": callback["code"][0],
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    me = api.last("GET", "/2/users/me")
    assert me.auth == f"Bearer {account.tokens.access_token}"
    assert me.query == {"user.fields": "profile_image_url,verified,verified_type"}
    assert account.internal_id == "1500"
    assert account.name == "Xavier"
    assert account.username == "xavier"
    assert account.picture == "https://pbs.example/x_400x400.jpg"
    assert account.additional_settings == {"verified": False}
    assert account.tokens.refresh_token in api.oauth.refresh
    assert account.tokens.expires_at is not None


async def test_public_client_sends_client_id(api: FakeX, http: httpx.AsyncClient) -> None:
    api.oauth.clients[CLIENT_ID].client_secret = ""
    provider = make(http, api, secret=False)
    creds = await connect(provider, api, http)
    call = api.last("POST", "/2/oauth2/token")
    assert call.auth is None
    assert call.form["client_id"] == CLIENT_ID
    assert creds.access_token in api.oauth.access


async def test_exchange_refused(provider: XProvider, api: FakeX) -> None:
    with pytest.raises(ConnectError, match="refused the authorization"):
        await provider.exchange_code("bogus", REDIRECT, new_code_verifier())


async def test_unconfigured(http: httpx.AsyncClient) -> None:
    with pytest.raises(ProviderError, match="TIDINGS_X_CLIENT_ID"):
        await XProvider(http, ProviderConfig()).authorization_url(REDIRECT, "s", "v" * 43)


async def test_refresh_rotates(provider: XProvider, api: FakeX, http: httpx.AsyncClient) -> None:
    creds = await connect(provider, api, http)
    tokens = await provider.refresh(creds)
    call = api.last("POST", "/2/oauth2/token")
    assert call.auth == BASIC
    assert call.form == {"grant_type": "refresh_token", "refresh_token": creds.refresh_token}
    assert tokens.refresh_token and tokens.refresh_token != creds.refresh_token
    assert tokens.access_token in api.oauth.access
    # The old refresh token is spent: using it again means the grant is gone.
    with pytest.raises(DisconnectedError, match="Value passed for the token was invalid"):
        await provider.refresh(creds)


async def test_refresh_without_new_refresh_token(
    provider: XProvider, api: FakeX, http: httpx.AsyncClient
) -> None:
    api.oauth.rotate_refresh = False
    creds = await connect(provider, api, http)
    tokens = await provider.refresh(creds)
    assert tokens.refresh_token is None  # the caller keeps the stored one
    creds.access_token = tokens.access_token
    await provider.publish(creds, PostPart(content="still works"), DEFAULT)


async def test_refresh_revoked_is_disconnect(
    provider: XProvider, api: FakeX, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, api, http)
    api.oauth.revoke_all()
    with pytest.raises(DisconnectedError):
        await provider.refresh(creds)


# ---- publishing -----------------------------------------------------------------------------


async def test_publish_text(provider: XProvider, api: FakeX, http: httpx.AsyncClient) -> None:
    creds = await connect(provider, api, http)
    settings = provider.parse_settings({"__type": "x", "who_can_reply_post": "following"})
    result = await provider.publish(creds, PostPart(content="hello X"), settings)
    call = api.last("POST", TWEETS)
    assert call.auth == f"Bearer {creds.access_token}"
    assert call.json == {"text": "hello X", "reply_settings": "following"}
    assert result.id in api.tweets
    assert result.url == f"https://x.com/xavier/status/{result.id}"


async def test_publish_with_images(
    provider: XProvider, api: FakeX, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, api, http)
    part = PostPart(
        content="pics", media=[image(PNG, alt="a cat"), image(JPEG, "image/jpeg", name="b.jpg")]
    )
    await provider.publish(creds, part, DEFAULT)
    uploads = api.calls("POST", "/2/media/upload")
    assert [u.files["media"].data for u in uploads] == [PNG, JPEG]
    assert [u.form for u in uploads] == [
        {"media_category": "tweet_image", "media_type": "image/png"},
        {"media_category": "tweet_image", "media_type": "image/jpeg"},
    ]
    assert all(u.auth == f"Bearer {creds.access_token}" for u in uploads)
    ids = list(api.media)
    alt = api.last("POST", "/2/media/metadata")
    assert alt.json == {"id": ids[0], "metadata": {"alt_text": {"text": "a cat"}}}
    assert len(api.calls("POST", "/2/media/metadata")) == 1
    assert api.last("POST", TWEETS).json == {"text": "pics", "media": {"media_ids": ids}}


async def test_publish_video_chunked(
    provider: XProvider, api: FakeX, http: httpx.AsyncClient
) -> None:
    api.processing_polls = 2
    provider.chunk_size = 100
    creds = await connect(provider, api, http)
    await provider.publish(creds, PostPart(content="clip", media=[video()]), DEFAULT)

    init = api.last("POST", "/2/media/upload/initialize")
    assert init.json == {
        "media_type": "video/mp4",
        "total_bytes": len(MP4),
        "media_category": "tweet_video",
    }
    media_id = next(iter(api.media))
    appends = api.calls("POST", "/2/media/upload/{id}/append")
    assert [a.path for a in appends] == [f"/2/media/upload/{media_id}/append"] * 3
    assert [a.form["segment_index"] for a in appends] == ["0", "1", "2"]
    assert b"".join(a.files["media"].data for a in appends) == MP4
    assert api.last("POST", "/2/media/upload/{id}/finalize").path.endswith(f"{media_id}/finalize")
    polls = api.calls("GET", "/2/media/upload")
    assert [p.query for p in polls] == [{"command": "STATUS", "media_id": media_id}] * 2
    assert api.media[media_id]["data"] == MP4
    assert api.last("POST", TWEETS).json["media"] == {"media_ids": [media_id]}


async def test_video_segments_are_streamed_never_read_whole(
    provider: XProvider, api: FakeX, http: httpx.AsyncClient
) -> None:
    provider.chunk_size = 1000
    creds = await connect(provider, api, http)
    source = StreamedFile(os.urandom(4500), piece=333)
    await provider.publish(creds, PostPart(content="clip", media=[source.item()]), DEFAULT)
    assert api.last("POST", "/2/media/upload/initialize").json["total_bytes"] == 4500
    appends = api.calls("POST", "/2/media/upload/{id}/append")
    assert [a.form["segment_index"] for a in appends] == ["0", "1", "2", "3", "4"]
    assert [len(a.files["media"].data) for a in appends] == [1000, 1000, 1000, 1000, 500]
    media_id = next(iter(api.media))
    assert api.media[media_id]["data"] == source.data and source.opens == 1
    assert api.last("POST", TWEETS).json["media"] == {"media_ids": [media_id]}


async def test_reply_chain(provider: XProvider, api: FakeX, http: httpx.AsyncClient) -> None:
    creds = await connect(provider, api, http)
    settings = provider.parse_settings({"who_can_reply_post": "verified"})
    first = await provider.publish(creds, PostPart(content="1/3"), settings)
    second = await provider.reply(creds, first, PostPart(content="2/3"), settings)
    third = await provider.reply(creds, second, PostPart(content="3/3"), settings)
    bodies = [c.json for c in api.calls("POST", TWEETS)]
    assert bodies == [
        {"text": "1/3", "reply_settings": "verified"},
        {"text": "2/3", "reply": {"in_reply_to_tweet_id": first.id}},
        {"text": "3/3", "reply": {"in_reply_to_tweet_id": second.id}},
    ]
    assert third.id in api.tweets


# ---- errors ---------------------------------------------------------------------------------


async def test_401_is_refresh_error(
    provider: XProvider, api: FakeX, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, api, http)
    api.oauth.expire_all()
    with pytest.raises(RefreshTokenError, match="Unauthorized") as info:
        await provider.publish(creds, PostPart(content="x"), DEFAULT)
    assert info.value.status_code == 401


async def test_429_with_reset(provider: XProvider, api: FakeX, http: httpx.AsyncClient) -> None:
    creds = await connect(provider, api, http)
    api.fail(
        "POST",
        TWEETS,
        429,
        {"title": "Too Many Requests", "detail": "Too Many Requests", "status": 429},
        headers={"x-rate-limit-reset": str(int(time.time()) + 900)},
    )
    with pytest.raises(RetryableError, match="Too Many Requests") as info:
        await provider.publish(creds, PostPart(content="x"), DEFAULT)
    assert info.value.retry_after is not None and 890 < info.value.retry_after <= 900
    api.fail("POST", TWEETS, 429, {"title": "Too Many Requests"}, headers={"Retry-After": "7"})
    with pytest.raises(RetryableError) as info:
        await provider.publish(creds, PostPart(content="x"), DEFAULT)
    assert info.value.retry_after == 7


async def test_5xx_is_retryable(provider: XProvider, api: FakeX, http: httpx.AsyncClient) -> None:
    creds = await connect(provider, api, http)
    api.fail("POST", TWEETS, 503, {"title": "Service Unavailable", "detail": "Over capacity"})
    with pytest.raises(RetryableError, match="Over capacity"):
        await provider.publish(creds, PostPart(content="x"), DEFAULT)


async def test_duplicate_is_bad_body(
    provider: XProvider, api: FakeX, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, api, http)
    await provider.publish(creds, PostPart(content="same"), DEFAULT)
    with pytest.raises(BadBodyError, match="duplicate content") as info:
        await provider.publish(creds, PostPart(content="same"), DEFAULT)
    assert info.value.status_code == 403


async def test_invalid_request_message(
    provider: XProvider, api: FakeX, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, api, http)
    from tidings.channels.providers import PublishResult

    with pytest.raises(BadBodyError, match="in_reply_to_tweet_id` query parameter value"):
        await provider.reply(creds, PublishResult(id="404"), PostPart(content="x"), DEFAULT)


async def test_suspended_is_disconnect(
    provider: XProvider, api: FakeX, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, api, http)
    api.suspended = True
    with pytest.raises(DisconnectedError, match="suspended"):
        await provider.publish(creds, PostPart(content="x"), DEFAULT)


async def test_hang_is_unknown_outcome(
    provider: XProvider, api: FakeX, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, api, http)
    api.hang("POST", TWEETS)
    started = time.monotonic()
    with pytest.raises(UnknownOutcomeError):
        await provider.publish(creds, PostPart(content="maybe"), DEFAULT)
    assert time.monotonic() - started < 3


async def test_find_published(provider: XProvider, api: FakeX, http: httpx.AsyncClient) -> None:
    assert provider.can_check_published
    creds = await connect(provider, api, http)
    since = datetime.now(UTC)
    part = PostPart(content="Tom & Jerry: see https://example.com/a and example.org")
    assert await provider.find_published(creds, part, DEFAULT, parent=None, since=since) is None
    api.hang("POST", TWEETS, process=True)
    with pytest.raises(UnknownOutcomeError):
        await provider.publish(creds, part, DEFAULT)
    # X shows the text with t.co links and HTML escapes: still recognised.
    found = await provider.find_published(creds, part, DEFAULT, parent=None, since=since)
    assert found is not None and found.id in api.tweets
    assert found.url == f"https://x.com/xavier/status/{found.id}"
    lookup = api.last("GET", "/2/users/{id}/tweets")
    assert lookup.path == "/2/users/1500/tweets"
    assert lookup.auth == f"Bearer {creds.access_token}"
    assert lookup.query["max_results"] == "20"
    assert lookup.query["tweet.fields"] == "created_at,referenced_tweets"
    start = datetime.fromisoformat(lookup.query["start_time"].replace("Z", "+00:00"))
    assert timedelta(minutes=1) < since - start <= timedelta(minutes=2, seconds=1)
    # Replies match under their parent only.
    reply = PostPart(content="2/2")
    api.hang("POST", TWEETS, process=True)
    with pytest.raises(UnknownOutcomeError):
        await provider.reply(creds, found, reply, DEFAULT)
    assert await provider.find_published(creds, reply, DEFAULT, parent=found, since=since)
    assert await provider.find_published(creds, reply, DEFAULT, parent=None, since=since) is None
    other = PostPart(content="never sent")
    assert await provider.find_published(creds, other, DEFAULT, parent=None, since=since) is None


# ---- counting and validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "length"),
    [
        ("hello", 5),
        ("https://example.com/a/very/long/path/that/goes/on/and/on?x=1", 23),
        ("see example.com/page now", 4 + 23 + 4),
        ("mail me at bob@example.com", 26),  # an e-mail address is not a URL
        ("(https://example.com).", 1 + 23 + 2),
        ("日本語", 6),  # CJK weighs 2
        ("한국어", 6),
        ("café", 4),  # Latin-1 weighs 1
        ("e\u0301", 1),  # NFC: é
        ("😀", 2),
        ("👨‍👩‍👧‍👦", 2),  # a ZWJ sequence is one emoji
        ("🇫🇷", 2),
        ("👍🏽", 2),
        ("\u2014", 1),  # em dash: General Punctuation range
        ("\u2030", 2),  # per mille: outside the light ranges
    ],
)
def test_weighted_length(text: str, length: int) -> None:
    assert weighted_length(text) == length


def test_length_boundaries(provider: XProvider) -> None:
    def codes(text: str, creds: ChannelCredentials | None = None) -> list[str]:
        return [v.code for v in provider.validate([PostPart(content=text)], credentials=creds)]

    assert codes("a" * 280) == []
    assert codes("a" * 281) == ["too_long"]
    assert codes("字" * 140) == []
    assert codes("字" * 140 + "a") == ["too_long"]
    url = "https://example.com/" + "x" * 200
    assert codes("a" * 256 + " " + url) == []  # 256 + 1 + 23 = 280
    assert codes("a" * 257 + " " + url) == ["too_long"]
    assert codes("😀" * 140) == []
    assert codes("😀" * 141) == ["too_long"]
    verified = ChannelCredentials(
        access_token="t", internal_id="1", additional_settings={"verified": True}
    )
    assert codes("a" * 4000, verified) == []
    assert codes("a" * 4001, verified) == ["too_long"]


def test_media_rules(provider: XProvider) -> None:
    def codes(media: list) -> list[str]:  # type: ignore[type-arg]
        return [v.code for v in provider.validate([PostPart(content="x", media=media)])]

    assert codes([image()] * 4) == []
    assert codes([image()] * 5) == ["too_many_images"]
    assert codes([video()]) == []
    assert codes([video(), video()]) == ["too_many_videos"]
    assert codes([image(), video()]) == ["media_mixed"]
    assert codes([video(mime="video/x-msvideo")]) == ["media_type"]
    assert [
        v.code for v in provider.validate([PostPart(content="x")], {"community_id": "abc"})
    ] == ["settings"]

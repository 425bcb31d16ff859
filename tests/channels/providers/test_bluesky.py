from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.channels.providers.helpers import JPEG, MP4, PNG, image, video
from tests.channels.providers.servers.bluesky import FakeBluesky
from tidings.channels.providers import (
    BadBodyError,
    ChannelCredentials,
    ConnectError,
    DisconnectedError,
    PostPart,
    PublishResult,
    RefreshTokenError,
    RetryableError,
    UnknownOutcomeError,
    config_from_env,
    get_provider,
)
from tidings.channels.providers.bluesky import BlueskyProvider, BlueskySettings, grapheme_count

CREATE = "/xrpc/com.atproto.repo.createRecord"
UPLOAD = "/xrpc/com.atproto.repo.uploadBlob"
NO_SETTINGS = BlueskySettings()


@pytest.fixture
async def pds() -> AsyncIterator[FakeBluesky]:
    async with FakeBluesky() as server:
        yield server


@pytest.fixture
def provider(http: httpx.AsyncClient) -> BlueskyProvider:
    return BlueskyProvider(http)


async def connect(provider: BlueskyProvider, pds: FakeBluesky) -> ChannelCredentials:
    account = await provider.connect_with_fields(
        {"service": pds.base_url, "identifier": "alice.test", "password": "app-pass-1234"}
    )
    return ChannelCredentials(
        access_token=account.tokens.access_token,
        refresh_token=account.tokens.refresh_token,
        token_expires_at=account.tokens.expires_at,
        internal_id=account.internal_id,
        custom_instance_details=account.custom_instance_details,
        profile=account.username,
    )


def test_registered() -> None:
    cls = get_provider("bluesky")
    assert cls is BlueskyProvider
    assert cls.connect_kind == "fields"
    assert [f.name for f in cls.fields] == ["service", "identifier", "password"]
    assert cls.fields[0].default == "https://bsky.social"
    assert cls.fields[2].secret


# ---- connect and refresh --------------------------------------------------------------------


async def test_connect_with_fields(provider: BlueskyProvider, pds: FakeBluesky) -> None:
    account = await provider.connect_with_fields(
        {"service": pds.base_url + "/", "identifier": "alice.test", "password": "app-pass-1234"}
    )
    assert account.internal_id == "did:plc:alice123"
    assert account.name == "Alice"
    assert account.username == "alice.test"
    assert account.picture == "https://cdn.example/alice.jpg"
    assert not account.in_between_steps
    assert account.custom_instance_details == {
        "service": pds.base_url,
        "identifier": "alice.test",
        "password": "app-pass-1234",
    }
    assert account.tokens.access_token in pds.sessions
    assert account.tokens.refresh_token in pds.refresh_tokens
    expires = account.tokens.expires_at
    assert expires is not None
    assert abs((expires - datetime.now(UTC)).total_seconds() - 7200) < 60

    login = pds.last("POST", "/xrpc/com.atproto.server.createSession")
    assert login.json == {"identifier": "alice.test", "password": "app-pass-1234"}
    assert login.auth is None
    profile = pds.last("GET", "/xrpc/app.bsky.actor.getProfile")
    assert profile.query == {"actor": "did:plc:alice123"}
    assert profile.auth == f"Bearer {account.tokens.access_token}"


async def test_connect_uses_configured_service(http: httpx.AsyncClient, pds: FakeBluesky) -> None:
    # TIDINGS_BLUESKY_SERVICE_URL supplies the default of the service field.
    config = config_from_env("bluesky", {"TIDINGS_BLUESKY_SERVICE_URL": pds.base_url})
    assert config.url("web") == "https://bsky.app"
    provider = BlueskyProvider(http, config)
    account = await provider.connect_with_fields({"identifier": "bob.test", "password": "bob-pass"})
    assert account.internal_id == "did:plc:bob456"
    assert account.name == "bob.test"  # no display name: the handle
    assert account.custom_instance_details is not None
    assert account.custom_instance_details["service"] == pds.base_url


async def test_connect_wrong_password(provider: BlueskyProvider, pds: FakeBluesky) -> None:
    with pytest.raises(ConnectError, match="Invalid identifier or password"):
        await provider.connect_with_fields(
            {"service": pds.base_url, "identifier": "alice.test", "password": "nope"}
        )


async def test_connect_missing_field(provider: BlueskyProvider) -> None:
    with pytest.raises(ConnectError, match="password"):
        await provider.connect_with_fields({"identifier": "alice.test"})
    with pytest.raises(ConnectError, match="https://"):
        await provider.connect_with_fields(
            {"service": "ftp://x", "identifier": "a", "password": "b"}
        )


async def test_connect_runs_url_guard(http: httpx.AsyncClient, pds: FakeBluesky) -> None:
    seen: list[str] = []

    async def guard(url: str) -> None:
        seen.append(url)
        raise ConnectError("private address")

    provider = BlueskyProvider(http, url_guard=guard)
    with pytest.raises(ConnectError, match="private address"):
        await provider.connect_with_fields(
            {"service": pds.base_url, "identifier": "alice.test", "password": "app-pass-1234"}
        )
    assert seen == [pds.base_url]
    assert pds.requests == []


async def test_refresh(provider: BlueskyProvider, pds: FakeBluesky) -> None:
    creds = await connect(provider, pds)
    tokens = await provider.refresh(creds)
    call = pds.last("POST", "/xrpc/com.atproto.server.refreshSession")
    assert call.auth == f"Bearer {creds.refresh_token}"
    assert tokens.access_token != creds.access_token
    assert tokens.access_token in pds.sessions
    assert tokens.refresh_token in pds.refresh_tokens
    assert tokens.expires_at is not None
    # refreshSession rotates: the old refresh token is gone.
    assert creds.refresh_token not in pds.refresh_tokens


async def test_refresh_falls_back_to_login(provider: BlueskyProvider, pds: FakeBluesky) -> None:
    creds = await connect(provider, pds)
    pds.refresh_tokens.clear()  # the refresh token expired too
    tokens = await provider.refresh(creds)
    assert tokens.access_token in pds.sessions
    login = pds.last("POST", "/xrpc/com.atproto.server.createSession")
    assert login.json == {"identifier": "alice.test", "password": "app-pass-1234"}


async def test_refresh_with_revoked_app_password(
    provider: BlueskyProvider, pds: FakeBluesky
) -> None:
    creds = await connect(provider, pds)
    pds.refresh_tokens.clear()
    pds.accounts[0].password = "changed"
    with pytest.raises(DisconnectedError, match="app password"):
        await provider.refresh(creds)


# ---- publishing -----------------------------------------------------------------------------


async def test_publish_text_with_facets(provider: BlueskyProvider, pds: FakeBluesky) -> None:
    creds = await connect(provider, pds)
    text = "Héllo 👋 @bob.test see https://example.com/a(b)c. #Tidings @nobody.test"
    result = await provider.publish(creds, PostPart(content=text), NO_SETTINGS)

    call = pds.last("POST", CREATE)
    assert call.auth == f"Bearer {creds.access_token}"
    assert call.json["repo"] == "did:plc:alice123"
    assert call.json["collection"] == "app.bsky.feed.post"
    record = call.json["record"]
    assert record["$type"] == "app.bsky.feed.post"
    assert record["text"] == text
    assert "embed" not in record and "reply" not in record
    assert datetime.fromisoformat(record["createdAt"].replace("Z", "+00:00"))

    raw = text.encode()

    def span(fragment: str) -> dict[str, int]:
        start = raw.index(fragment.encode())
        return {"byteStart": start, "byteEnd": start + len(fragment.encode())}

    assert record["facets"] == [
        {
            "index": span("@bob.test"),
            "features": [{"$type": "app.bsky.richtext.facet#mention", "did": "did:plc:bob456"}],
        },
        {
            "index": span("https://example.com/a(b)c"),
            "features": [
                {"$type": "app.bsky.richtext.facet#link", "uri": "https://example.com/a(b)c"}
            ],
        },
        {
            "index": span("#Tidings"),
            "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": "Tidings"}],
        },
    ]
    # Both handles were resolved; the unknown one stays plain text.
    handles = [
        r.query["handle"] for r in pds.calls("GET", "/xrpc/com.atproto.identity.resolveHandle")
    ]
    assert handles == ["bob.test", "nobody.test"]

    assert result.id.startswith("at://did:plc:alice123/app.bsky.feed.post/")
    rkey = result.id.rsplit("/", 1)[1]
    assert result.url == f"https://bsky.app/profile/alice.test/post/{rkey}"
    assert result.data["cid"] == pds.records[result.id]["cid"]


async def test_publish_with_settings_langs(provider: BlueskyProvider, pds: FakeBluesky) -> None:
    creds = await connect(provider, pds)
    settings = provider.parse_settings({"__type": "bluesky", "langs": ["en", "fr"]})
    await provider.publish(creds, PostPart(content="bonjour"), settings)
    assert pds.last("POST", CREATE).json["record"]["langs"] == ["en", "fr"]


async def test_publish_with_images(provider: BlueskyProvider, pds: FakeBluesky) -> None:
    creds = await connect(provider, pds)
    part = PostPart(
        content="two pictures",
        media=[image(PNG, "image/png", alt="a cat"), image(JPEG, "image/jpeg", name="b.jpg")],
    )
    await provider.publish(creds, part, NO_SETTINGS)

    uploads = pds.calls("POST", UPLOAD)
    assert [(u.content_type, u.body) for u in uploads] == [
        ("image/png", PNG),
        ("image/jpeg", JPEG),
    ]
    assert all(u.auth == f"Bearer {creds.access_token}" for u in uploads)
    embed = pds.last("POST", CREATE).json["record"]["embed"]
    assert embed["$type"] == "app.bsky.embed.images"
    assert [i["alt"] for i in embed["images"]] == ["a cat", ""]
    assert embed["images"][0]["aspectRatio"] == {"width": 800, "height": 600}
    blob = embed["images"][1]["image"]
    assert blob["$type"] == "blob"
    assert pds.blobs[blob["ref"]["$link"]] == JPEG
    assert blob["mimeType"] == "image/jpeg" and blob["size"] == len(JPEG)


async def test_publish_with_video(provider: BlueskyProvider, pds: FakeBluesky) -> None:
    creds = await connect(provider, pds)
    await provider.publish(creds, PostPart(content="clip", media=[video()]), NO_SETTINGS)
    assert pds.last("POST", UPLOAD).body == MP4
    embed = pds.last("POST", CREATE).json["record"]["embed"]
    assert embed["$type"] == "app.bsky.embed.video"
    assert embed["video"]["mimeType"] == "video/mp4"
    assert embed["aspectRatio"] == {"width": 1280, "height": 720}


async def test_reply_chain(provider: BlueskyProvider, pds: FakeBluesky) -> None:
    creds = await connect(provider, pds)
    first = await provider.publish(creds, PostPart(content="1/3"), NO_SETTINGS)
    second = await provider.reply(creds, first, PostPart(content="2/3"), NO_SETTINGS)
    third = await provider.reply(creds, second, PostPart(content="3/3"), NO_SETTINGS)

    records = [c.json["record"] for c in pds.calls("POST", CREATE)]
    assert [r["text"] for r in records] == ["1/3", "2/3", "3/3"]
    root = {"uri": first.id, "cid": first.data["cid"]}
    assert "reply" not in records[0]
    assert records[1]["reply"] == {"root": root, "parent": root}
    assert records[2]["reply"] == {
        "root": root,
        "parent": {"uri": second.id, "cid": second.data["cid"]},
    }
    assert third.data["root_uri"] == first.id


async def test_reply_with_only_stored_id(provider: BlueskyProvider, pds: FakeBluesky) -> None:
    # After a restart the engine may only have the id: the refs are read back from the repo.
    creds = await connect(provider, pds)
    first = await provider.publish(creds, PostPart(content="1/3"), NO_SETTINGS)
    second = await provider.reply(creds, first, PostPart(content="2/3"), NO_SETTINGS)
    await provider.reply(
        creds, PublishResult(id=second.id, url=second.url), PostPart(content="3/3"), NO_SETTINGS
    )
    lookup = pds.last("GET", "/xrpc/com.atproto.repo.getRecord")
    assert lookup.query == {
        "repo": "did:plc:alice123",
        "collection": "app.bsky.feed.post",
        "rkey": second.id.rsplit("/", 1)[1],
    }
    reply = pds.last("POST", CREATE).json["record"]["reply"]
    assert reply["root"] == {"uri": first.id, "cid": first.data["cid"]}
    assert reply["parent"] == {"uri": second.id, "cid": second.data["cid"]}


# ---- errors ---------------------------------------------------------------------------------


async def test_expired_token_is_refresh_error(provider: BlueskyProvider, pds: FakeBluesky) -> None:
    creds = await connect(provider, pds)
    pds.expire_sessions()
    with pytest.raises(RefreshTokenError, match="Token has expired") as info:
        await provider.publish(creds, PostPart(content="hi"), NO_SETTINGS)
    assert info.value.status_code == 400
    # After refreshing once the same publish succeeds.
    tokens = await provider.refresh(creds)
    creds.access_token = tokens.access_token
    await provider.publish(creds, PostPart(content="hi"), NO_SETTINGS)


async def test_401_is_refresh_error(provider: BlueskyProvider, pds: FakeBluesky) -> None:
    creds = await connect(provider, pds)
    pds.fail("POST", CREATE, 401, {"error": "AuthenticationRequired", "message": "Bad token"})
    with pytest.raises(RefreshTokenError) as info:
        await provider.publish(creds, PostPart(content="hi"), NO_SETTINGS)
    assert info.value.status_code == 401


async def test_429_with_retry_after(provider: BlueskyProvider, pds: FakeBluesky) -> None:
    creds = await connect(provider, pds)
    pds.fail(
        "POST",
        CREATE,
        429,
        {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
        headers={"Retry-After": "7"},
    )
    with pytest.raises(RetryableError) as info:
        await provider.publish(creds, PostPart(content="hi"), NO_SETTINGS)
    assert info.value.retry_after == 7
    assert info.value.status_code == 429
    assert "RateLimitExceeded" in (info.value.excerpt or "")


async def test_429_with_ratelimit_reset(provider: BlueskyProvider, pds: FakeBluesky) -> None:
    creds = await connect(provider, pds)
    reset = int(time.time()) + 60
    pds.fail(
        "POST",
        CREATE,
        429,
        {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
        headers={"ratelimit-reset": str(reset)},
    )
    with pytest.raises(RetryableError) as info:
        await provider.publish(creds, PostPart(content="hi"), NO_SETTINGS)
    assert info.value.retry_after is not None
    assert 55 <= info.value.retry_after <= 61


async def test_500_is_retryable(provider: BlueskyProvider, pds: FakeBluesky) -> None:
    creds = await connect(provider, pds)
    pds.fail("POST", CREATE, 500, {"error": "InternalServerError", "message": "boom"})
    with pytest.raises(RetryableError) as info:
        await provider.publish(creds, PostPart(content="hi"), NO_SETTINGS)
    assert info.value.status_code == 500
    assert info.value.retry_after is None


async def test_rejected_content_is_bad_body(provider: BlueskyProvider, pds: FakeBluesky) -> None:
    creds = await connect(provider, pds)
    with pytest.raises(BadBodyError, match="must not be longer than 3000 bytes") as info:
        await provider.publish(creds, PostPart(content="é" * 1600), NO_SETTINGS)
    assert info.value.status_code == 400


async def test_taken_down_account_is_disconnected(
    provider: BlueskyProvider, pds: FakeBluesky
) -> None:
    creds = await connect(provider, pds)
    pds.accounts[0].taken_down = True
    with pytest.raises(DisconnectedError, match="taken down"):
        await provider.publish(creds, PostPart(content="hi"), NO_SETTINGS)


async def test_hang_after_send_is_unknown_outcome(
    provider: BlueskyProvider, pds: FakeBluesky
) -> None:
    creds = await connect(provider, pds)
    pds.hang("POST", CREATE)
    started = time.monotonic()
    with pytest.raises(UnknownOutcomeError, match="may have been published"):
        await provider.publish(creds, PostPart(content="hi"), NO_SETTINGS)
    assert time.monotonic() - started < 3
    # The server did receive the full post.
    assert pds.last("POST", CREATE).json["record"]["text"] == "hi"


async def test_find_published_after_unknown_outcome(
    provider: BlueskyProvider, pds: FakeBluesky
) -> None:
    assert provider.can_check_published
    creds = await connect(provider, pds)
    since = datetime.now(UTC)
    # The answer is lost before the PDS did anything: not published.
    pds.hang("POST", CREATE)
    with pytest.raises(UnknownOutcomeError):
        await provider.publish(creds, PostPart(content="lost"), NO_SETTINGS)
    part = PostPart(content="lost")
    assert await provider.find_published(creds, part, NO_SETTINGS, parent=None, since=since) is None
    # The PDS created the record, only the answer was lost: found.
    pds.hang("POST", CREATE, process=True)
    with pytest.raises(UnknownOutcomeError):
        await provider.publish(creds, part, NO_SETTINGS)
    found = await provider.find_published(creds, part, NO_SETTINGS, parent=None, since=since)
    assert found is not None
    assert found.id in pds.records
    assert found.data["cid"] == pds.records[found.id]["cid"]
    listing = pds.last("GET", "/xrpc/com.atproto.repo.listRecords")
    assert listing.query == {
        "repo": "did:plc:alice123",
        "collection": "app.bsky.feed.post",
        "limit": "25",
    }
    assert listing.auth == f"Bearer {creds.access_token}"
    # A reply is matched under its parent only; older posts do not count.
    reply_part = PostPart(content="answer")
    pds.hang("POST", CREATE, process=True)
    with pytest.raises(UnknownOutcomeError):
        await provider.reply(creds, found, reply_part, NO_SETTINGS)
    reply = await provider.find_published(creds, reply_part, NO_SETTINGS, parent=found, since=since)
    assert reply is not None and reply.data["root_uri"] == found.id
    assert (
        await provider.find_published(creds, reply_part, NO_SETTINGS, parent=None, since=since)
        is None
    )
    later = datetime.now(UTC) + timedelta(minutes=10)
    assert await provider.find_published(creds, part, NO_SETTINGS, parent=None, since=later) is None


async def test_hang_on_upload_is_retryable(provider: BlueskyProvider, pds: FakeBluesky) -> None:
    creds = await connect(provider, pds)
    pds.hang("POST", UPLOAD)
    with pytest.raises(RetryableError):
        await provider.publish(creds, PostPart(content="x", media=[image()]), NO_SETTINGS)
    assert pds.calls("POST", CREATE) == []


async def test_unreachable_is_retryable(provider: BlueskyProvider) -> None:
    creds = ChannelCredentials(
        access_token="t",
        internal_id="did:plc:x",
        custom_instance_details={"service": "http://127.0.0.1:9"},
    )
    with pytest.raises(RetryableError, match="Could not reach"):
        await provider.publish(creds, PostPart(content="hi"), NO_SETTINGS)


# ---- validation -----------------------------------------------------------------------------


def codes(provider: BlueskyProvider, parts: list[PostPart]) -> list[tuple[str, int | None]]:
    return [(v.code, v.part_index) for v in provider.validate(parts, {})]


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("abc", 3),
        ("👨‍👩‍👧‍👦", 1),  # family: ZWJ sequence of 7 code points
        ("🇫🇷🇯🇵", 2),  # two flags: regional indicator pairs
        ("e\u0301", 1),  # e + combining acute
        ("👍🏽", 1),  # skin tone modifier
        ("क्षि", 1),  # Devanagari conjunct
        ("\r\n", 1),
    ],
)
def test_grapheme_count(text: str, count: int) -> None:
    assert grapheme_count(text) == count


def test_length_boundary(provider: BlueskyProvider) -> None:
    assert codes(provider, [PostPart(content="a" * 300)]) == []
    assert codes(provider, [PostPart(content="a" * 301)]) == [("too_long", 0)]
    family = "👨‍👩‍👧‍👦"
    assert codes(provider, [PostPart(content=family * 300)]) == [
        ("too_long", 0)  # 300 graphemes but 7500 bytes: over the byte limit
    ]
    assert codes(provider, [PostPart(content=family * 100 + "a" * 200)]) == []
    assert codes(provider, [PostPart(content=family * 100 + "a" * 201)]) == [("too_long", 0)]
    combining = "e\u0301" * 300
    assert codes(provider, [PostPart(content=combining)]) == []
    assert codes(provider, [PostPart(content=combining + "e\u0301")]) == [("too_long", 0)]


def test_media_rules(provider: BlueskyProvider) -> None:
    assert codes(provider, [PostPart(content="x", media=[image()] * 4)]) == []
    assert codes(provider, [PostPart(content="x", media=[image()] * 5)]) == [("too_many_images", 0)]
    assert codes(provider, [PostPart(content="x", media=[video()])]) == []
    assert codes(provider, [PostPart(content="x", media=[video(), video()])]) == [
        ("too_many_videos", 0)
    ]
    assert codes(provider, [PostPart(content="x", media=[image(), video()])]) == [
        ("media_mixed", 0)
    ]
    assert codes(provider, [PostPart(content="x", media=[image(mime="image/tiff")])]) == [
        ("media_type", 0)
    ]
    # Size limits (when the size is known): 1,000,000 bytes per image.
    big = replace(image(), size=1_000_000)
    assert codes(provider, [PostPart(content="x", media=[big])]) == []
    too_big = replace(image(), size=1_000_001)
    assert codes(provider, [PostPart(content="x", media=[too_big])]) == [("media_size", 0)]
    # Media alone is fine; nothing at all is not; replies are checked too.
    assert codes(provider, [PostPart(content="", media=[image()])]) == []
    assert codes(provider, [PostPart(content="ok"), PostPart(content="  ")]) == [("empty", 1)]
    assert codes(provider, []) == [("empty", None)]


def test_settings(provider: BlueskyProvider) -> None:
    schema = provider.settings_schema()
    assert "langs" in schema["properties"]
    violations = provider.validate([PostPart(content="x")], {"langs": ["a", "b", "c", "d"]})
    assert [v.code for v in violations] == ["settings"]
    assert "langs" in violations[0].message

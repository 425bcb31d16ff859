from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.channels.providers.helpers import image, video
from tests.channels.providers.oauthflow import approve, credentials_of, query_of
from tests.channels.providers.servers.threads import (
    CLIENT_ID,
    CLIENT_SECRET,
    USER_ID,
    FakeThreads,
    V,
)
from tidings.channels.providers import (
    BadBodyError,
    ChannelCredentials,
    ConnectError,
    DisconnectedError,
    MediaItem,
    PostPart,
    ProviderConfig,
    PublishResult,
    RefreshTokenError,
    RetryableError,
    UnknownOutcomeError,
    get_provider,
)
from tidings.channels.providers.threads import ThreadsProvider, ThreadsSettings

REDIRECT = "https://tidings.example/integrations/social/threads"
CREATE = f"{V}/me/threads"
PUBLISH = f"{V}/me/threads_publish"
DEFAULT = ThreadsSettings()


@pytest.fixture
async def threads() -> AsyncIterator[FakeThreads]:
    async with FakeThreads() as server:
        yield server


def make_provider(http: httpx.AsyncClient, server: FakeThreads) -> ThreadsProvider:
    p = ThreadsProvider(
        http,
        ProviderConfig(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            urls={"graph": server.base_url, "web": server.base_url},
        ),
    )
    p.container_poll_interval = 0.01
    return p


@pytest.fixture
def provider(http: httpx.AsyncClient, threads: FakeThreads) -> ThreadsProvider:
    return make_provider(http, threads)


async def connect(provider: ThreadsProvider, http: httpx.AsyncClient) -> ChannelCredentials:
    start = await provider.authorization_url(REDIRECT, "st", "v")
    callback = await approve(http, start.url, REDIRECT)
    return credentials_of(await provider.exchange_code(callback["code"], REDIRECT, "v"))


def test_registered() -> None:
    assert get_provider("threads") is ThreadsProvider
    assert ThreadsProvider.supports_replies and ThreadsProvider.supports_refresh
    assert ThreadsProvider.default_max_length == 500


# ---- connect and refresh ----------------------------------------------------------------------


async def test_connect(
    provider: ThreadsProvider, threads: FakeThreads, http: httpx.AsyncClient
) -> None:
    start = await provider.authorization_url(REDIRECT, "st4te", "v")
    where, query = query_of(start.url)
    assert where == threads.url("/oauth/authorize")
    assert query == {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "scope": "threads_basic,threads_content_publish,threads_manage_replies",
        "response_type": "code",
        "state": "st4te",
    }
    callback = await approve(http, start.url, REDIRECT)
    assert callback["state"] == "st4te"
    account = await provider.exchange_code(callback["code"], REDIRECT, "v")

    code_call = threads.last("POST", "/oauth/access_token")
    assert code_call.form == {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "grant_type": "authorization_code",
        "redirect_uri": REDIRECT,
        "code": callback["code"],
    }
    exchange = threads.last("GET", "/access_token")
    assert exchange.query["grant_type"] == "th_exchange_token"
    assert exchange.query["client_secret"] == CLIENT_SECRET
    assert exchange.query["access_token"].startswith("short-")
    me = threads.last("GET", f"{V}/me")
    assert me.query == {
        "fields": "id,username,name,threads_profile_picture_url",
        "access_token": account.tokens.access_token,
    }
    assert account.tokens.access_token.startswith("long-")  # the long-lived token is kept
    assert account.tokens.refresh_token is None
    assert account.tokens.expires_at is not None
    assert account.internal_id == USER_ID
    assert account.name == "Nelly T"
    assert account.username == "nelly"
    assert account.picture == "https://cdn.threads.test/nelly.jpg"
    assert not account.in_between_steps


async def test_exchange_bad_code(provider: ThreadsProvider) -> None:
    with pytest.raises(ConnectError, match="Invalid verification code format"):
        await provider.exchange_code("nope", REDIRECT, "v")


async def test_refresh(
    provider: ThreadsProvider, threads: FakeThreads, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    tokens = await provider.refresh(creds)
    call = threads.last("GET", "/refresh_access_token")
    assert call.query == {"grant_type": "th_refresh_token", "access_token": creds.access_token}
    assert tokens.access_token != creds.access_token
    assert tokens.refresh_token is None  # nothing to store: the token itself is renewed
    assert tokens.expires_at is not None
    threads.book.revoke_all()
    with pytest.raises(DisconnectedError, match="not authorized application"):
        await provider.refresh(creds)


# ---- publishing -------------------------------------------------------------------------------


async def test_publish_text(
    provider: ThreadsProvider, threads: FakeThreads, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    settings = provider.parse_settings({"__type": "threads", "reply_control": "mentioned_only"})
    result = await provider.publish(creds, PostPart(content="Hello Threads"), settings)
    create = threads.last("POST", CREATE)
    assert create.form == {
        "text": "Hello Threads",
        "reply_control": "mentioned_only",
        "media_type": "TEXT",
        "access_token": creds.access_token,
    }
    container = next(iter(threads.containers))
    publish = threads.last("POST", PUBLISH)
    assert publish.form == {"creation_id": container, "access_token": creds.access_token}
    assert threads.calls("GET", f"{V}/{container}") == []  # text needs no processing wait
    assert result.id in threads.posts
    assert result.url == f"https://www.threads.net/@nelly/post/{result.id}"


async def test_publish_video_waits_for_processing(
    http: httpx.AsyncClient,
) -> None:
    async with FakeThreads(video_polls=2) as server:
        provider = make_provider(http, server)
        creds = await connect(provider, http)
        clip = video()
        clip.alt = "a clip"
        await provider.publish(creds, PostPart(content="clip", media=[clip]), DEFAULT)
        create = server.last("POST", CREATE)
        assert create.form == {
            "text": "clip",
            "media_type": "VIDEO",
            "video_url": "https://media.example/v.mp4",
            "alt_text": "a clip",
            "access_token": creds.access_token,
        }
        container = next(iter(server.containers))
        polls = server.calls("GET", f"{V}/{container}")
        assert len(polls) == 3
        assert polls[0].query == {
            "fields": "status,error_message",
            "access_token": creds.access_token,
        }
        assert server.last("POST", PUBLISH).form["creation_id"] == container


async def test_publish_carousel(
    provider: ThreadsProvider, threads: FakeThreads, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    part = PostPart(content="carousel", media=[image(), image(name="b.png"), video()])
    result = await provider.publish(creds, part, DEFAULT)
    creates = threads.calls("POST", CREATE)
    assert [c.form for c in creates[:3]] == [
        {
            "media_type": "IMAGE",
            "image_url": "https://media.example/a.png",
            "is_carousel_item": "true",
            "access_token": creds.access_token,
        },
        {
            "media_type": "IMAGE",
            "image_url": "https://media.example/b.png",
            "is_carousel_item": "true",
            "access_token": creds.access_token,
        },
        {
            "media_type": "VIDEO",
            "video_url": "https://media.example/v.mp4",
            "is_carousel_item": "true",
            "access_token": creds.access_token,
        },
    ]
    children = list(threads.containers)[:3]
    assert creates[3].form == {
        "text": "carousel",
        "media_type": "CAROUSEL",
        "children": ",".join(children),
        "access_token": creds.access_token,
    }
    assert len(threads.posts[result.id]["children"]) == 3


async def test_reply_chain(
    provider: ThreadsProvider, threads: FakeThreads, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    first = await provider.publish(creds, PostPart(content="1/3"), DEFAULT)
    second = await provider.reply(creds, first, PostPart(content="2/3"), DEFAULT)
    third = await provider.reply(creds, second, PostPart(content="3/3", media=[image()]), DEFAULT)
    creates = threads.calls("POST", CREATE)
    assert [c.form.get("reply_to_id") for c in creates] == [None, first.id, second.id]
    assert threads.posts[second.id]["reply_to_id"] == first.id
    assert threads.posts[third.id]["reply_to_id"] == second.id
    assert threads.posts[third.id]["media_type"] == "IMAGE"


# ---- errors -----------------------------------------------------------------------------------


async def test_invalid_or_expired_token_is_refresh_error(
    provider: ThreadsProvider, threads: FakeThreads, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    wrong = ChannelCredentials(access_token="nope", internal_id=USER_ID)
    with pytest.raises(RefreshTokenError, match="Invalid OAuth access token") as info:
        await provider.publish(wrong, PostPart(content="x"), DEFAULT)
    assert info.value.status_code == 401
    threads.book.expire_all()
    with pytest.raises(RefreshTokenError, match="Session has expired"):
        await provider.publish(creds, PostPart(content="x"), DEFAULT)


async def test_revoked_is_disconnect(
    provider: ThreadsProvider, threads: FakeThreads, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    threads.book.revoke_all()
    with pytest.raises(DisconnectedError, match="has not authorized application"):
        await provider.publish(creds, PostPart(content="x"), DEFAULT)


async def test_rate_limited(
    provider: ThreadsProvider, threads: FakeThreads, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    threads.fail(
        "POST",
        PUBLISH,
        400,
        {
            "error": {
                "message": "Application request limit reached",
                "type": "OAuthException",
                "code": 4,
            }
        },
        headers={
            "X-Business-Use-Case-Usage": '{"1": [{"type": "threads", '
            '"estimated_time_to_regain_access": 3}]}'
        },
    )
    with pytest.raises(RetryableError, match="request limit reached") as info:
        await provider.publish(creds, PostPart(content="x"), DEFAULT)
    assert info.value.retry_after == 180
    threads.fail(
        "POST",
        PUBLISH,
        429,
        {"error": {"message": "Too many calls", "code": 613}},
        headers={"Retry-After": "9"},
    )
    with pytest.raises(RetryableError) as info:
        await provider.publish(creds, PostPart(content="x"), DEFAULT)
    assert info.value.retry_after == 9


async def test_server_error_is_retryable(
    provider: ThreadsProvider, threads: FakeThreads, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    threads.fail(
        "POST",
        PUBLISH,
        500,
        {
            "error": {
                "message": "An unknown error has occurred.",
                "type": "OAuthException",
                "code": 1,
                "is_transient": True,
            }
        },
    )
    with pytest.raises(RetryableError, match="unknown error") as info:
        await provider.publish(creds, PostPart(content="x"), DEFAULT)
    assert info.value.status_code == 500
    threads.fail("POST", PUBLISH, 503, text="Service Unavailable")
    with pytest.raises(RetryableError):
        await provider.publish(creds, PostPart(content="x"), DEFAULT)


async def test_rejected_content_is_bad_body(
    provider: ThreadsProvider, threads: FakeThreads, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    with pytest.raises(
        BadBodyError, match="Param text must be at most 500 characters long"
    ) as info:
        await provider.publish(creds, PostPart(content="y" * 501), DEFAULT)
    assert info.value.status_code == 400
    threads.processing_error = "Unsupported video codec"
    with pytest.raises(BadBodyError, match="Unsupported video codec"):
        await provider.publish(creds, PostPart(content="v", media=[video()]), DEFAULT)


async def test_hang_is_unknown_outcome(
    provider: ThreadsProvider, threads: FakeThreads, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    threads.hang("POST", CREATE)
    with pytest.raises(RetryableError):  # a lost container is harmless: retry
        await provider.publish(creds, PostPart(content="x"), DEFAULT)
    threads.hang("POST", PUBLISH)
    started = time.monotonic()
    with pytest.raises(UnknownOutcomeError):
        await provider.publish(creds, PostPart(content="maybe"), DEFAULT)
    assert time.monotonic() - started < 3


async def test_find_published_after_a_lost_answer(
    provider: ThreadsProvider, threads: FakeThreads, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    since = datetime.now(UTC)
    threads.hang("POST", PUBLISH, process=True)
    with pytest.raises(UnknownOutcomeError):
        await provider.publish(creds, PostPart(content="lost"), DEFAULT)
    [sent] = list(threads.posts)
    found = await provider.find_published(
        creds, PostPart(content="lost"), DEFAULT, parent=None, since=since
    )
    listing = threads.last("GET", f"{V}/me/threads")
    assert listing.query == {
        "fields": "id,text,timestamp,permalink,username",
        "since": str(int((since - timedelta(minutes=2)).timestamp())),
        "limit": "50",
        "access_token": creds.access_token,
    }
    assert found is not None and found.id == sent
    assert found.url == f"https://www.threads.net/@nelly/post/{sent}"
    assert (
        await provider.find_published(
            creds, PostPart(content="never"), DEFAULT, parent=None, since=since
        )
        is None
    )
    # Replies: only the account's own reply under the parent counts.
    threads.add_post("me too", username="someone", reply_to=sent)
    parent = PublishResult(id=sent)
    assert (
        await provider.find_published(
            creds, PostPart(content="me too"), DEFAULT, parent=parent, since=since
        )
        is None
    )
    mine = threads.add_post("me too", username="nelly", reply_to=sent)
    found_reply = await provider.find_published(
        creds, PostPart(content="me too"), DEFAULT, parent=parent, since=since
    )
    assert (
        threads.last("GET", f"{V}/{sent}/replies").query["fields"]
        == "id,text,timestamp,permalink,username"
    )
    assert found_reply is not None and found_reply.id == mine


# ---- validation -------------------------------------------------------------------------------


def test_length_boundary(provider: ThreadsProvider) -> None:
    assert provider.validate([PostPart(content="x" * 500)]) == []
    assert [v.code for v in provider.validate([PostPart(content="x" * 501)])] == ["too_long"]


def test_media_rules(provider: ThreadsProvider) -> None:
    def codes(media: list[MediaItem]) -> list[str]:
        return [v.code for v in provider.validate([PostPart(content="x", media=media)])]

    assert codes([image()] * 10 + [video()] * 10) == []
    assert codes([image()] * 11 + [video()] * 10) == ["too_many_media"]
    assert codes([image(mime="image/tiff")]) == ["media_type"]
    assert [
        v.code for v in provider.validate([PostPart(content="x")], {"reply_control": "nobody"})
    ] == ["settings"]

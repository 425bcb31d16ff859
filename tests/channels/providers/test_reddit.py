from __future__ import annotations

import base64
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.channels.providers.helpers import JPEG, MP4, PNG, StreamedFile, image, video
from tests.channels.providers.servers.reddit import CLIENT_ID, CLIENT_SECRET, FakeReddit
from tidings.channels.providers import (
    BadBodyError,
    ChannelCredentials,
    ConnectError,
    DisconnectedError,
    MediaItem,
    PostPart,
    RefreshTokenError,
    RetryableError,
    UnknownOutcomeError,
    config_from_env,
    get_provider,
)
from tidings.channels.providers.reddit import RedditProvider, RedditSettings, ratelimit_seconds

REDIRECT = "https://tidings.example/integrations/social/reddit"
BASIC = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
SELF = RedditSettings(subreddit="python", title="Hello r/python")


@pytest.fixture
async def reddit() -> AsyncIterator[FakeReddit]:
    async with FakeReddit() as server:
        yield server


@pytest.fixture
def provider(http: httpx.AsyncClient, reddit: FakeReddit) -> RedditProvider:
    env = {
        "TIDINGS_REDDIT_CLIENT_ID": CLIENT_ID,
        "TIDINGS_REDDIT_CLIENT_SECRET": CLIENT_SECRET,
        "TIDINGS_REDDIT_AUTH_URL": reddit.base_url,
        "TIDINGS_REDDIT_API_URL": reddit.base_url,
        "TIDINGS_REDDIT_WEB_URL": "https://www.reddit.com",
    }
    return RedditProvider(http, config_from_env("reddit", env))


async def connect(provider: RedditProvider, http: httpx.AsyncClient) -> ChannelCredentials:
    start = await provider.authorization_url(REDIRECT, "st", "unused")
    code = parse_qs(urlsplit((await http.get(start.url)).headers["location"]).query)["code"][0]
    account = await provider.exchange_code(code, REDIRECT, "unused")
    return ChannelCredentials(
        access_token=account.tokens.access_token,
        refresh_token=account.tokens.refresh_token,
        internal_id=account.internal_id,
        profile=account.username,
    )


def test_registered() -> None:
    assert get_provider("reddit") is RedditProvider
    assert RedditProvider.tool_names() == ["flairs"]


# ---- connect and refresh --------------------------------------------------------------------


async def test_oauth_connect(
    provider: RedditProvider, reddit: FakeReddit, http: httpx.AsyncClient
) -> None:
    start = await provider.authorization_url(REDIRECT, "st", "unused")
    url = urlsplit(start.url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == reddit.url("/api/v1/authorize")
    assert parse_qs(url.query) == {
        "client_id": [CLIENT_ID],
        "response_type": ["code"],
        "state": ["st"],
        "redirect_uri": [REDIRECT],
        "duration": ["permanent"],
        "scope": ["identity submit flair read history"],
    }
    code = parse_qs(urlsplit((await http.get(start.url)).headers["location"]).query)["code"][0]
    account = await provider.exchange_code(code, REDIRECT, "unused")
    token_call = reddit.last("POST", "/api/v1/access_token")
    assert token_call.auth == BASIC
    assert token_call.form == {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
    }
    assert token_call.headers["user-agent"] == provider.user_agent
    me = reddit.last("GET", "/api/v1/me")
    assert me.auth == f"Bearer {account.tokens.access_token}"
    assert account.internal_id == "abc"
    assert account.name == account.username == "redditor42"
    assert account.picture == "https://styles.redditmedia.example/icon.png"
    assert account.tokens.refresh_token in reddit.oauth.refresh
    assert account.tokens.expires_at is not None


async def test_exchange_refused(provider: RedditProvider) -> None:
    with pytest.raises(ConnectError, match="Invalid authorization code"):
        await provider.exchange_code("nope", REDIRECT, "unused")


async def test_refresh_without_new_refresh_token(
    provider: RedditProvider, reddit: FakeReddit, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    tokens = await provider.refresh(creds)
    call = reddit.last("POST", "/api/v1/access_token")
    assert call.auth == BASIC
    assert call.form == {"grant_type": "refresh_token", "refresh_token": creds.refresh_token}
    assert tokens.refresh_token is None  # Reddit keeps the refresh token: the caller too
    assert tokens.access_token in reddit.oauth.access
    # The same refresh token still works next time.
    assert (await provider.refresh(creds)).access_token in reddit.oauth.access


async def test_refresh_revoked_is_disconnect(
    provider: RedditProvider, reddit: FakeReddit, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    reddit.oauth.revoke_all()
    with pytest.raises(DisconnectedError, match="Invalid refresh token"):
        await provider.refresh(creds)


# ---- tools ----------------------------------------------------------------------------------


async def test_flairs_tool(
    provider: RedditProvider, reddit: FakeReddit, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    flairs = await provider.call_tool("flairs", creds, {"subreddit": "r/python"})
    assert flairs == [{"id": "f-1", "text": "Discussion", "editable": False}]
    assert reddit.last("GET", "/r/{sr}/api/link_flair_v2").path == "/r/python/api/link_flair_v2"
    with pytest.raises(BadBodyError, match="subreddit name"):
        await provider.call_tool("flairs", creds, {})
    with pytest.raises(BadBodyError, match="Forbidden"):
        await provider.call_tool("flairs", creds, {"subreddit": "private_one"})


# ---- publishing -----------------------------------------------------------------------------


async def test_publish_self_post(
    provider: RedditProvider, reddit: FakeReddit, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    settings = provider.parse_settings(
        {
            "__type": "reddit",
            "subreddit": "/r/python",
            "title": "Hello r/python",
            "flair_id": "f-1",
            "nsfw": True,
        }
    )
    result = await provider.publish(creds, PostPart(content="body **markdown**"), settings)
    call = reddit.last("POST", "/api/submit")
    assert call.auth == f"Bearer {creds.access_token}"
    assert call.form == {
        "api_type": "json",
        "sr": "python",
        "title": "Hello r/python",
        "resubmit": "true",
        "sendreplies": "true",
        "nsfw": "true",
        "spoiler": "false",
        "flair_id": "f-1",
        "kind": "self",
        "text": "body **markdown**",
    }
    assert result.id in reddit.posts
    assert result.url == f"https://www.reddit.com{reddit.posts[result.id]['permalink']}"


async def test_publish_link_post(
    provider: RedditProvider, reddit: FakeReddit, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    settings = RedditSettings.model_validate(
        {"subreddit": "python", "title": "A link", "kind": "link", "url": "https://example.com/x"}
    )
    await provider.publish(creds, PostPart(content="ignored for links"), settings)
    form = reddit.last("POST", "/api/submit").form
    assert form["kind"] == "link"
    assert form["url"] == "https://example.com/x"
    assert "text" not in form


async def test_publish_image_post(
    provider: RedditProvider, reddit: FakeReddit, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    result = await provider.publish(creds, PostPart(content="", media=[image(PNG)]), SELF)
    lease = reddit.last("POST", "/api/media/asset.json")
    assert lease.form == {"filepath": "a.png", "mimetype": "image/png"}
    assert lease.auth == f"Bearer {creds.access_token}"
    upload = reddit.last("POST", "/media-bucket")
    asset = next(iter(reddit.assets.values()))
    assert upload.files["file"].data == PNG
    assert upload.form["key"] == asset["key"]
    assert upload.auth is None  # the storage form is signed, not bearer-authenticated
    submit = reddit.last("POST", "/api/submit").form
    assert submit["kind"] == "image"
    assert submit["url"] == reddit.url(f"/media-bucket/{asset['key']}")
    # The submit answer had no id: the post was found in the user's submissions.
    listing = reddit.last("GET", "/user/{name}/submitted")
    assert listing.path == "/user/redditor42/submitted"
    assert result.id in reddit.posts
    assert result.url == f"https://www.reddit.com{reddit.posts[result.id]['permalink']}"


async def test_publish_video_post(
    provider: RedditProvider, reddit: FakeReddit, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    await provider.publish(creds, PostPart(content="", media=[video()]), SELF)
    uploads = reddit.calls("POST", "/media-bucket")
    assert [u.files["file"].data for u in uploads] == [MP4, JPEG]
    keys = [a["key"] for a in reddit.assets.values()]
    submit = reddit.last("POST", "/api/submit").form
    assert submit["kind"] == "video"
    assert submit["url"] == reddit.url(f"/media-bucket/{keys[0]}")
    assert submit["video_poster_url"] == reddit.url(f"/media-bucket/{keys[1]}")


async def test_video_is_streamed_as_multipart_never_read_whole(
    provider: RedditProvider, reddit: FakeReddit, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    source = StreamedFile(os.urandom(300_000), piece=777)
    await provider.publish(creds, PostPart(content="", media=[source.item()]), SELF)
    upload = reddit.calls("POST", "/media-bucket")[0]
    assert upload.files["file"].data == source.data and source.opens == 1
    assert upload.form["acl"] == "private" and upload.form["x-amz-signature"].startswith("sig-")
    # One body of a known length: no chunked transfer encoding for the storage to refuse.
    assert int(upload.headers["content-length"]) > len(source.data)
    assert "transfer-encoding" not in upload.headers
    assert reddit.last("POST", "/api/submit").form["kind"] == "video"


async def test_media_post_not_found_is_unknown_outcome(
    provider: RedditProvider, reddit: FakeReddit, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    reddit.fail("GET", "/user/{name}/submitted", 200, {"data": {"children": []}})
    with pytest.raises(UnknownOutcomeError, match="check the subreddit"):
        await provider.publish(creds, PostPart(content="", media=[image()]), SELF)


async def test_reply_chain(
    provider: RedditProvider, reddit: FakeReddit, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    post = await provider.publish(creds, PostPart(content="1/3"), SELF)
    second = await provider.reply(creds, post, PostPart(content="2/3"), SELF)
    third = await provider.reply(creds, second, PostPart(content="3/3"), SELF)
    calls = reddit.calls("POST", "/api/comment")
    assert [c.form for c in calls] == [
        {"api_type": "json", "thing_id": post.id, "text": "2/3"},
        {"api_type": "json", "thing_id": second.id, "text": "3/3"},
    ]
    assert reddit.comments[third.id]["parent_id"] == second.id
    assert second.id.startswith("t1_")
    assert second.url is not None and second.url.startswith("https://www.reddit.com/r/python/")


# ---- errors ---------------------------------------------------------------------------------


async def test_401_is_refresh_error(
    provider: RedditProvider, reddit: FakeReddit, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    reddit.oauth.expire_all()
    with pytest.raises(RefreshTokenError, match="Unauthorized"):
        await provider.publish(creds, PostPart(content="x"), SELF)


async def test_ratelimit_in_body_is_retryable(
    provider: RedditProvider, reddit: FakeReddit, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    reddit.fail(
        "POST",
        "/api/submit",
        200,
        {
            "json": {
                "errors": [
                    [
                        "RATELIMIT",
                        "you are doing that too much. try again in 9 minutes.",
                        "ratelimit",
                    ]
                ]
            }
        },
    )
    with pytest.raises(RetryableError, match="doing that too much") as info:
        await provider.publish(creds, PostPart(content="x"), SELF)
    assert info.value.retry_after == 540


async def test_429_and_5xx(
    provider: RedditProvider, reddit: FakeReddit, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    reddit.fail(
        "POST",
        "/api/submit",
        429,
        {"message": "Too Many Requests", "error": 429},
        headers={"x-ratelimit-reset": "42"},
    )
    with pytest.raises(RetryableError) as info:
        await provider.publish(creds, PostPart(content="x"), SELF)
    assert info.value.retry_after == 42
    reddit.fail("POST", "/api/submit", 502, text="<html>Bad Gateway</html>")
    with pytest.raises(RetryableError) as info:
        await provider.publish(creds, PostPart(content="x"), SELF)
    assert info.value.status_code == 502


async def test_rejected_content_is_bad_body(
    provider: RedditProvider, reddit: FakeReddit, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    settings = RedditSettings(subreddit="nosuchsub", title="t")
    with pytest.raises(BadBodyError, match="that community doesn't exist \\(sr\\)") as info:
        await provider.publish(creds, PostPart(content="x"), settings)
    assert info.value.status_code == 200


async def test_user_required_is_disconnect(
    provider: RedditProvider, reddit: FakeReddit, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    reddit.fail(
        "POST", "/api/submit", 200, {"json": {"errors": [["USER_REQUIRED", "Please log in", None]]}}
    )
    with pytest.raises(DisconnectedError, match="Please log in"):
        await provider.publish(creds, PostPart(content="x"), SELF)


async def test_hang_is_unknown_outcome(
    provider: RedditProvider, reddit: FakeReddit, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    reddit.hang("POST", "/api/submit")
    started = time.monotonic()
    with pytest.raises(UnknownOutcomeError):
        await provider.publish(creds, PostPart(content="x"), SELF)
    assert time.monotonic() - started < 3


async def test_find_published(
    provider: RedditProvider, reddit: FakeReddit, http: httpx.AsyncClient
) -> None:
    assert provider.can_check_published
    creds = await connect(provider, http)
    since = datetime.now(UTC)
    part = PostPart(content="body")
    assert await provider.find_published(creds, part, SELF, parent=None, since=since) is None
    reddit.hang("POST", "/api/submit", process=True)
    with pytest.raises(UnknownOutcomeError):
        await provider.publish(creds, part, SELF)
    post = await provider.find_published(creds, part, SELF, parent=None, since=since)
    assert post is not None and post.id in reddit.posts
    comment_part = PostPart(content="a comment")
    reddit.hang("POST", "/api/comment", process=True)
    with pytest.raises(UnknownOutcomeError):
        await provider.reply(creds, post, comment_part, SELF)
    comment = await provider.find_published(creds, comment_part, SELF, parent=post, since=since)
    assert comment is not None
    assert reddit.comments[comment.id]["parent_id"] == post.id
    assert reddit.last("GET", "/user/{name}/comments").path == "/user/redditor42/comments"
    other = PostPart(content="never sent")
    assert await provider.find_published(creds, other, SELF, parent=post, since=since) is None


# ---- validation -----------------------------------------------------------------------------


def test_ratelimit_seconds() -> None:
    assert ratelimit_seconds("try again in 1 minute.") == 60
    assert ratelimit_seconds("try again in 30 seconds.") == 30
    assert ratelimit_seconds("slow down") is None


def test_validation(provider: RedditProvider) -> None:
    base = {"subreddit": "python", "title": "t"}

    def codes(parts: list[PostPart], settings: dict[str, object] | None = None) -> list[str]:
        return [v.code for v in provider.validate(parts, settings or base)]

    assert codes([PostPart(content="a" * 10000)]) == []
    assert codes([PostPart(content="a" * 10001)]) == ["too_long"]
    assert codes([PostPart(content="", media=[image()])]) == []
    assert codes([PostPart(content="", media=[image(), image()])]) == [
        "too_many_images",
        "media_count",
    ]
    no_thumb = MediaItem(url="https://m.example/v.mp4", type="video", mime_type="video/mp4")
    assert codes([PostPart(content="", media=[no_thumb])]) == ["video_thumbnail"]
    assert codes([PostPart(content="", media=[video()])]) == []
    assert codes([PostPart(content="x", media=[image()])], base | {"kind": "self"}) == [
        "media_kind"
    ]
    assert codes([PostPart(content="x")], base | {"kind": "link"}) == ["settings"]
    assert codes([PostPart(content="x")], {"subreddit": "python"}) == ["settings"]
    assert codes([PostPart(content="x")], base | {"title": "t" * 301}) == ["settings"]
    assert codes([PostPart(content="x")], base | {"title": "t" * 300}) == []
    assert codes([PostPart(content="p"), PostPart(content="c", media=[image()])]) == ["reply_media"]

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.channels.providers.helpers import JPEG, MP4, StreamedFile, image, video
from tests.channels.providers.oauthflow import approve, credentials_of, query_of
from tests.channels.providers.servers.youtube import (
    CLIENT_ID,
    CLIENT_SECRET,
    VIDEOS,
    FakeYouTube,
)
from tidings.channels.providers import (
    BadBodyError,
    ChannelCredentials,
    ConnectError,
    DisconnectedError,
    MediaItem,
    PostPart,
    ProviderConfig,
    RefreshTokenError,
    RetryableError,
    UnknownOutcomeError,
    code_challenge,
    get_provider,
    new_code_verifier,
)
from tidings.channels.providers.youtube import YouTubeProvider, YouTubeSettings

REDIRECT = "https://tidings.example/integrations/social/youtube"
SETTINGS = YouTubeSettings(title="My video")


@pytest.fixture
async def youtube() -> AsyncIterator[FakeYouTube]:
    async with FakeYouTube() as server:
        yield server


def make_provider(http: httpx.AsyncClient, server: FakeYouTube) -> YouTubeProvider:
    base = server.base_url
    return YouTubeProvider(
        http,
        ProviderConfig(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            urls={"auth": base, "token": base, "api": base, "web": "https://yt.test"},
        ),
    )


@pytest.fixture
def provider(http: httpx.AsyncClient, youtube: FakeYouTube) -> YouTubeProvider:
    return make_provider(http, youtube)


async def connect(provider: YouTubeProvider, http: httpx.AsyncClient) -> ChannelCredentials:
    verifier = new_code_verifier()
    start = await provider.authorization_url(REDIRECT, "st", verifier)
    callback = await approve(http, start.url, REDIRECT)
    return credentials_of(await provider.exchange_code(callback["code"], REDIRECT, verifier))


def test_registered() -> None:
    assert get_provider("youtube") is YouTubeProvider
    assert not YouTubeProvider.supports_replies
    assert YouTubeProvider.tool_names() == ["playlists"]
    schema = YouTubeProvider.settings_schema()
    assert "title" in schema["required"]


# ---- connect and refresh ----------------------------------------------------------------------


async def test_connect(
    provider: YouTubeProvider, youtube: FakeYouTube, http: httpx.AsyncClient
) -> None:
    verifier = new_code_verifier()
    start = await provider.authorization_url(REDIRECT, "st4te", verifier)
    where, query = query_of(start.url)
    assert where == youtube.url("/o/oauth2/v2/auth")
    assert query == {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "https://www.googleapis.com/auth/youtube.upload "
        "https://www.googleapis.com/auth/youtube.readonly https://www.googleapis.com/auth/youtube",
        "access_type": "offline",
        "prompt": "consent",
        "include_granted_scopes": "true",
        "state": "st4te",
        "code_challenge": code_challenge(verifier),
        "code_challenge_method": "S256",
    }
    callback = await approve(http, start.url, REDIRECT)
    account = await provider.exchange_code(callback["code"], REDIRECT, verifier)
    assert youtube.last("POST", "/token").form == {
        "grant_type": "authorization_code",
        "code": callback["code"],
        "redirect_uri": REDIRECT,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "code_verifier": verifier,
    }
    channels = youtube.last("GET", "/youtube/v3/channels")
    assert channels.auth == f"Bearer {account.tokens.access_token}"
    assert channels.query == {"part": "snippet", "mine": "true", "maxResults": "50"}
    assert account.internal_id == "UCx1y2z3"
    assert account.name == "Tidings TV"
    assert account.username == "@tidingstv"
    assert account.picture == "https://yt3.test/high.jpg"
    assert not account.in_between_steps
    assert account.tokens.refresh_token and account.tokens.expires_at


async def test_connect_with_several_channels_asks_to_pick(http: httpx.AsyncClient) -> None:
    async with FakeYouTube(several_channels=True) as server:
        provider = make_provider(http, server)
        creds = await connect(provider, http)
        choices = await provider.list_choices(creds)
        assert [(c.id, c.name) for c in choices] == [
            ("UCx1y2z3", "Tidings TV"),
            ("UCbrand99", "Tidings Brand"),
        ]
        picked = await provider.select_choice(creds, "UCbrand99")
        assert picked.internal_id == "UCbrand99" and not picked.in_between_steps
        assert picked.tokens.refresh_token == creds.refresh_token
        with pytest.raises(ConnectError, match="not one of"):
            await provider.select_choice(creds, "UCnope")


async def test_exchange_with_wrong_verifier(
    provider: YouTubeProvider, http: httpx.AsyncClient
) -> None:
    start = await provider.authorization_url(REDIRECT, "s", new_code_verifier())
    callback = await approve(http, start.url, REDIRECT)
    with pytest.raises(ConnectError, match="PKCE verification failed"):
        await provider.exchange_code(callback["code"], REDIRECT, new_code_verifier())


async def test_refresh_keeps_the_refresh_token(
    provider: YouTubeProvider, youtube: FakeYouTube, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    tokens = await provider.refresh(creds)
    assert youtube.last("POST", "/token").form == {
        "grant_type": "refresh_token",
        "refresh_token": creds.refresh_token,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    assert tokens.access_token != creds.access_token
    assert tokens.refresh_token is None  # Google sends none: keep the stored one
    youtube.oauth.revoke_all()
    with pytest.raises(DisconnectedError, match="Invalid refresh token"):
        await provider.refresh(creds)


# ---- publishing -------------------------------------------------------------------------------


async def test_publish_video(
    provider: YouTubeProvider, youtube: FakeYouTube, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    settings = provider.parse_settings(
        {
            "__type": "youtube",
            "title": "Launch day",
            "type": "unlisted",
            "selfDeclaredMadeForKids": "no",
            "tags": [{"value": "launch", "label": "launch"}, "news"],
            "notify_subscribers": False,
        }
    )
    result = await provider.publish(
        creds, PostPart(content="All about it", media=[video()]), settings
    )
    start = youtube.last("POST", VIDEOS)
    assert start.auth == f"Bearer {creds.access_token}"
    assert start.query == {
        "uploadType": "resumable",
        "part": "snippet,status",
        "notifySubscribers": "false",
    }
    assert start.headers["x-upload-content-length"] == str(len(MP4))
    assert start.headers["x-upload-content-type"] == "video/mp4"
    assert start.json == {
        "snippet": {
            "title": "Launch day",
            "description": "All about it",
            "categoryId": "22",
            "tags": ["launch", "news"],
        },
        "status": {"privacyStatus": "unlisted", "selfDeclaredMadeForKids": False},
    }
    put = youtube.last("PUT", VIDEOS)
    assert put.body == MP4
    assert put.content_type == "video/mp4"
    assert put.auth == f"Bearer {creds.access_token}"
    assert result.id in youtube.videos
    assert result.url == f"https://yt.test/watch?v={result.id}"
    assert result.data == {}


async def test_playlist_and_thumbnail(
    provider: YouTubeProvider, youtube: FakeYouTube, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    assert await provider.call_tool("playlists", creds, {}) == [
        {"id": "PL1", "title": "Shorts"},
        {"id": "PL2", "title": "Tutorials"},
    ]
    settings = YouTubeSettings(title="t", playlist_id="PL2", thumbnail=True)
    result = await provider.publish(creds, PostPart(content="", media=[video()]), settings)
    item = youtube.last("POST", "/youtube/v3/playlistItems")
    assert item.query == {"part": "snippet"}
    assert item.json == {
        "snippet": {
            "playlistId": "PL2",
            "resourceId": {"kind": "youtube#video", "videoId": result.id},
        }
    }
    thumb = youtube.last("POST", "/upload/youtube/v3/thumbnails/set")
    assert thumb.query == {"videoId": result.id, "uploadType": "media"}
    assert thumb.body == JPEG and thumb.content_type == "image/jpeg"
    # A failing extra does not fail the video that is already up.
    bad = YouTubeSettings(title="t", playlist_id="PLnope")
    again = await provider.publish(creds, PostPart(content="", media=[video()]), bad)
    assert again.data == {"playlist_error": "YouTube: Playlist not found."}


async def test_lost_upload_answer_is_checked(
    provider: YouTubeProvider, youtube: FakeYouTube, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    youtube.lose_upload_answer = True  # the video is created, the answer never comes
    result = await provider.publish(creds, PostPart(content="d", media=[video()]), SETTINGS)
    puts = youtube.calls("PUT", VIDEOS)
    assert [p.headers.get("content-range") for p in puts] == [None, f"bytes */{len(MP4)}"]
    assert list(youtube.videos) == [result.id]  # found, not uploaded twice


async def test_upload_never_received_is_resumed(
    provider: YouTubeProvider, youtube: FakeYouTube, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    youtube.hang("PUT", VIDEOS)  # the bytes never arrive at the session
    result = await provider.publish(creds, PostPart(content="d", media=[video()]), SETTINGS)
    puts = youtube.calls("PUT", VIDEOS)
    assert [p.headers.get("content-range") for p in puts] == [
        None,
        f"bytes */{len(MP4)}",
        f"bytes 0-{len(MP4) - 1}/{len(MP4)}",
    ]
    assert list(youtube.videos) == [result.id]


async def test_hang_is_unknown_outcome(
    provider: YouTubeProvider, youtube: FakeYouTube, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    youtube.hang("PUT", VIDEOS, times=2)  # the upload and the status query
    started = time.monotonic()
    with pytest.raises(UnknownOutcomeError):
        await provider.publish(creds, PostPart(content="d", media=[video()]), SETTINGS)
    assert time.monotonic() - started < 3


async def test_the_video_is_streamed_never_read_whole(
    provider: YouTubeProvider, youtube: FakeYouTube, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    provider.stream_chunk_size = 1000
    source = StreamedFile(os.urandom(250_000), piece=4099)
    result = await provider.publish(creds, PostPart(content="d", media=[source.item()]), SETTINGS)
    size = str(len(source.data))
    assert youtube.last("POST", VIDEOS).headers["x-upload-content-length"] == size
    put = youtube.last("PUT", VIDEOS)
    assert put.body == source.data
    # One body of a declared length, as before (not a chunked transfer).
    assert put.headers["content-length"] == size and "transfer-encoding" not in put.headers
    assert "content-range" not in put.headers
    assert list(youtube.videos) == [result.id] and source.opens == 1


async def test_a_streamed_upload_never_received_is_resumed_from_a_new_stream(
    provider: YouTubeProvider, youtube: FakeYouTube, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    source = StreamedFile(os.urandom(50_000), piece=1000)
    youtube.hang("PUT", VIDEOS)  # the bytes never arrive at the session
    result = await provider.publish(creds, PostPart(content="d", media=[source.item()]), SETTINGS)
    puts = youtube.calls("PUT", VIDEOS)
    size = len(source.data)
    assert [p.headers.get("content-range") for p in puts] == [
        None,
        f"bytes */{size}",
        f"bytes 0-{size - 1}/{size}",
    ]
    assert puts[-1].body == source.data and source.opens == 2
    assert list(youtube.videos) == [result.id]


async def test_a_stream_shorter_than_its_size_is_refused_not_uploaded(
    provider: YouTubeProvider, youtube: FakeYouTube, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    source = StreamedFile(os.urandom(5000), piece=1000)
    item = source.item(size=6000)  # the file changed since it was recorded
    with pytest.raises(BadBodyError, match="changed since it was stored"):
        await provider.publish(creds, PostPart(content="d", media=[item]), SETTINGS)
    assert youtube.videos == {}


async def test_session_start_hang_is_retryable(
    provider: YouTubeProvider, youtube: FakeYouTube, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    youtube.hang("POST", VIDEOS)
    with pytest.raises(RetryableError):
        await provider.publish(creds, PostPart(content="d", media=[video()]), SETTINGS)


# ---- errors -----------------------------------------------------------------------------------


async def test_expired_token_is_refresh_error(
    provider: YouTubeProvider, youtube: FakeYouTube, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    youtube.oauth.expire_all()
    with pytest.raises(RefreshTokenError, match="invalid authentication credentials") as info:
        await provider.publish(creds, PostPart(content="d", media=[video()]), SETTINGS)
    assert info.value.status_code == 401


async def test_suspended_is_disconnect(
    provider: YouTubeProvider, youtube: FakeYouTube, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    youtube.suspended = True
    with pytest.raises(DisconnectedError, match="suspended"):
        await provider.publish(creds, PostPart(content="d", media=[video()]), SETTINGS)


async def test_quota_and_rate_limits(
    provider: YouTubeProvider, youtube: FakeYouTube, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    body = {
        "error": {
            "code": 403,
            "message": "The request cannot be completed because you have exceeded your quota.",
            "errors": [{"reason": "quotaExceeded", "domain": "youtube.quota"}],
        }
    }
    youtube.fail("POST", VIDEOS, 403, body)
    with pytest.raises(RetryableError, match="exceeded your quota") as info:
        await provider.publish(creds, PostPart(content="d", media=[video()]), SETTINGS)
    assert info.value.retry_after == 3600
    youtube.fail(
        "POST",
        VIDEOS,
        429,
        {"error": {"code": 429, "message": "Slow down"}},
        headers={"Retry-After": "12"},
    )
    with pytest.raises(RetryableError, match="Slow down") as info:
        await provider.publish(creds, PostPart(content="d", media=[video()]), SETTINGS)
    assert info.value.retry_after == 12


async def test_server_error_is_retryable(
    provider: YouTubeProvider, youtube: FakeYouTube, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    youtube.fail(
        "POST",
        VIDEOS,
        503,
        {
            "error": {
                "code": 503,
                "message": "Backend Error",
                "errors": [{"reason": "backendError"}],
            }
        },
    )
    with pytest.raises(RetryableError, match="Backend Error") as info:
        await provider.publish(creds, PostPart(content="d", media=[video()]), SETTINGS)
    assert info.value.status_code == 503


async def test_rejected_content_is_bad_body(
    provider: YouTubeProvider, youtube: FakeYouTube, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    # A title the settings model would refuse, sent anyway.
    settings = YouTubeSettings.model_construct(**{**SETTINGS.model_dump(), "title": "x" * 101})
    with pytest.raises(BadBodyError, match="invalid video title") as info:
        await provider.publish(creds, PostPart(content="d", media=[video()]), settings)
    assert info.value.status_code == 400
    with pytest.raises(BadBodyError, match="exactly one video"):
        await provider.publish(creds, PostPart(content="d", media=[image()]), SETTINGS)


# ---- validation -------------------------------------------------------------------------------


def test_length_boundary(provider: YouTubeProvider) -> None:
    ok = {"title": "t"}
    assert provider.validate([PostPart(content="x" * 5000, media=[video()])], ok) == []
    too_long = provider.validate([PostPart(content="x" * 5001, media=[video()])], ok)
    assert [v.code for v in too_long] == ["too_long"]
    assert provider.validate([PostPart(content="d", media=[video()])], {"title": "x" * 100}) == []
    assert [
        v.code
        for v in provider.validate([PostPart(content="d", media=[video()])], {"title": "x" * 101})
    ] == ["settings"]
    assert [
        v.code for v in provider.validate([PostPart(content="a <b>", media=[video()])], ok)
    ] == ["invalid_characters"]


def test_media_and_settings_rules(provider: YouTubeProvider) -> None:
    def codes(media: list[MediaItem], settings: dict | None = None) -> list[str]:  # type: ignore[type-arg]
        return [
            v.code
            for v in provider.validate(
                [PostPart(content="d", media=media)],
                {"title": "t"} if settings is None else settings,
            )
        ]

    assert codes([video()]) == []
    assert codes([]) == ["media_required"]
    assert codes([video(), video()]) == ["too_many_videos"]
    assert "media_type" in codes([image()])
    assert codes([video()], {}) == ["settings"]  # a title is required
    assert codes([video()], {"title": "a > b"}) == ["settings"]
    assert codes([video()], {"title": "t", "type": "secret"}) == ["settings"]
    assert codes([video()], {"title": "t", "tags": ["x" * 500]}) == []
    assert codes([video()], {"title": "t", "tags": ["x" * 250, "y" * 250]}) == ["settings"]
    assert provider.parse_settings({"title": "t", "privacy": "private"}).type == "private"

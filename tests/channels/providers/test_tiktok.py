from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.channels.providers.helpers import JPEG, MP4, StreamedFile, image, video
from tests.channels.providers.oauthflow import approve, credentials_of, query_of
from tests.channels.providers.servers.tiktok import (
    CLIENT_KEY,
    CLIENT_SECRET,
    OPEN_ID,
    FakeTikTok,
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
    get_provider,
)
from tidings.channels.providers.tiktok import TikTokProvider, TikTokSettings

REDIRECT = "https://tidings.example/integrations/social/tiktok"
VIDEO_INIT = "/v2/post/publish/video/init/"
STATUS = "/v2/post/publish/status/fetch/"
DEFAULT = TikTokSettings()


def jpeg(name: str = "a.jpg") -> MediaItem:
    return image(JPEG, "image/jpeg", name=name)


@pytest.fixture
async def tiktok() -> AsyncIterator[FakeTikTok]:
    async with FakeTikTok() as server:
        yield server


def make_provider(http: httpx.AsyncClient, server: FakeTikTok) -> TikTokProvider:
    p = TikTokProvider(
        http,
        ProviderConfig(
            client_id=CLIENT_KEY,
            client_secret=CLIENT_SECRET,
            urls={"auth": server.base_url, "api": server.base_url, "web": "https://tiktok.test"},
        ),
    )
    p.status_poll_interval = 0.01
    return p


@pytest.fixture
def provider(http: httpx.AsyncClient, tiktok: FakeTikTok) -> TikTokProvider:
    return make_provider(http, tiktok)


async def connect(provider: TikTokProvider, http: httpx.AsyncClient) -> ChannelCredentials:
    start = await provider.authorization_url(REDIRECT, "st", "v")
    callback = await approve(http, start.url, REDIRECT)
    return credentials_of(await provider.exchange_code(callback["code"], REDIRECT, "v"))


def test_registered() -> None:
    assert get_provider("tiktok") is TikTokProvider
    assert not TikTokProvider.supports_replies
    assert TikTokProvider.supports_refresh


# ---- connect and refresh ----------------------------------------------------------------------


async def test_connect(
    provider: TikTokProvider, tiktok: FakeTikTok, http: httpx.AsyncClient
) -> None:
    start = await provider.authorization_url(REDIRECT, "st4te", "v")
    where, query = query_of(start.url)
    assert where == tiktok.url("/v2/auth/authorize/")
    assert query == {
        "client_key": CLIENT_KEY,
        "scope": "user.info.basic,user.info.profile,video.publish,video.upload",
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "state": "st4te",
    }
    callback = await approve(http, start.url, REDIRECT)
    account = await provider.exchange_code(callback["code"], REDIRECT, "v")
    assert tiktok.last("POST", "/v2/oauth/token/").form == {
        "client_key": CLIENT_KEY,
        "client_secret": CLIENT_SECRET,
        "code": callback["code"],
        "grant_type": "authorization_code",
        "redirect_uri": REDIRECT,
    }
    info = tiktok.last("GET", "/v2/user/info/")
    assert info.auth == f"Bearer {account.tokens.access_token}"
    assert info.query == {"fields": "open_id,union_id,avatar_url,display_name,username"}
    assert account.internal_id == OPEN_ID
    assert account.name == "Nelly"
    assert account.username == "nelly"
    assert account.picture == "https://p16.tiktokcdn.test/nelly.jpeg"
    assert account.tokens.refresh_token and account.tokens.expires_at


async def test_exchange_bad_code(provider: TikTokProvider) -> None:
    with pytest.raises(ConnectError, match="Invalid authorization code"):
        await provider.exchange_code("nope", REDIRECT, "v")


async def test_refresh(
    provider: TikTokProvider, tiktok: FakeTikTok, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    tokens = await provider.refresh(creds)
    assert tiktok.last("POST", "/v2/oauth/token/").form == {
        "client_key": CLIENT_KEY,
        "client_secret": CLIENT_SECRET,
        "grant_type": "refresh_token",
        "refresh_token": creds.refresh_token,
    }
    assert tokens.access_token != creds.access_token
    assert tokens.refresh_token and tokens.refresh_token != creds.refresh_token
    with pytest.raises(DisconnectedError, match="Invalid refresh token"):
        await provider.refresh(creds)  # rotated away


# ---- publishing -------------------------------------------------------------------------------


async def test_direct_post_video_file_upload(
    provider: TikTokProvider, tiktok: FakeTikTok, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    settings = provider.parse_settings(
        {"__type": "tiktok", "duet": "no", "video_made_with_ai": True}
    )
    result = await provider.publish(
        creds, PostPart(content="My clip #fyp", media=[video()]), settings
    )
    creator = tiktok.last("POST", "/v2/post/publish/creator_info/query/")
    assert creator.auth == f"Bearer {creds.access_token}"
    init = tiktok.last("POST", VIDEO_INIT)
    assert init.auth == f"Bearer {creds.access_token}"
    assert init.content_type == "application/json; charset=UTF-8"
    assert init.json == {
        "source_info": {
            "source": "FILE_UPLOAD",
            "video_size": len(MP4),
            "chunk_size": len(MP4),
            "total_chunk_count": 1,
        },
        "post_info": {
            "title": "My clip #fyp",
            "privacy_level": "PUBLIC_TO_EVERYONE",
            "disable_duet": True,
            "disable_stitch": True,  # the creator disabled stitches
            "disable_comment": False,
            "brand_content_toggle": False,
            "brand_organic_toggle": False,
            "is_aigc": True,
        },
    }
    publish_id = next(iter(tiktok.publishes))
    upload = tiktok.last("PUT", "/upload/{publish_id}")
    assert upload.body == MP4
    assert upload.headers["content-range"] == f"bytes 0-{len(MP4) - 1}/{len(MP4)}"
    assert upload.content_type == "video/mp4"
    statuses = tiktok.calls("POST", STATUS)
    assert [s.json for s in statuses] == [{"publish_id": publish_id}] * 2
    post_id = str(tiktok.publishes[publish_id]["post_id"])
    assert result.id == post_id
    assert result.url == f"https://tiktok.test/@nelly/video/{post_id}"
    assert result.data == {"publish_id": publish_id}


async def test_video_in_chunks(
    provider: TikTokProvider, tiktok: FakeTikTok, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    provider.chunk_size = 100  # 268 bytes: two chunks, the last one takes the rest
    await provider.publish(creds, PostPart(content="c", media=[video()]), DEFAULT)
    init = tiktok.last("POST", VIDEO_INIT).json["source_info"]
    assert (init["chunk_size"], init["total_chunk_count"]) == (100, 2)
    puts = tiktok.calls("PUT", "/upload/{publish_id}")
    size = len(MP4)
    assert [p.headers["content-range"] for p in puts] == [
        "bytes 0-99/" + str(size),
        f"bytes 100-{size - 1}/{size}",
    ]
    assert b"".join(p.body for p in puts) == MP4


async def test_video_chunks_are_streamed_never_read_whole(
    provider: TikTokProvider, tiktok: FakeTikTok, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    provider.chunk_size = 1000  # 3500 bytes: three chunks, the last one takes the rest
    source = StreamedFile(os.urandom(3500), piece=333)
    await provider.publish(creds, PostPart(content="c", media=[source.item()]), DEFAULT)
    init = tiktok.last("POST", VIDEO_INIT).json["source_info"]
    assert (init["video_size"], init["chunk_size"], init["total_chunk_count"]) == (3500, 1000, 3)
    puts = tiktok.calls("PUT", "/upload/{publish_id}")
    assert [p.headers["content-range"] for p in puts] == [
        "bytes 0-999/3500",
        "bytes 1000-1999/3500",
        "bytes 2000-3499/3500",
    ]
    assert b"".join(p.body for p in puts) == source.data and source.opens == 1


async def test_pull_from_url_and_inbox_upload(
    provider: TikTokProvider, tiktok: FakeTikTok, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    pull = TikTokSettings(upload_method="PULL_FROM_URL")
    await provider.publish(creds, PostPart(content="c", media=[video()]), pull)
    assert tiktok.last("POST", VIDEO_INIT).json["source_info"] == {
        "source": "PULL_FROM_URL",
        "video_url": "https://media.example/v.mp4",
    }
    assert tiktok.calls("PUT", "/upload/{publish_id}") == []
    inbox = TikTokSettings(content_posting_method="UPLOAD")
    result = await provider.publish(creds, PostPart(content="c", media=[video()]), inbox)
    init = tiktok.last("POST", "/v2/post/publish/inbox/video/init/")
    assert "post_info" not in init.json
    assert result.data["status"] == "SEND_TO_USER_INBOX"
    assert result.id == result.data["publish_id"]
    assert result.url == "https://tiktok.test/@nelly"


async def test_photo_post(
    provider: TikTokProvider, tiktok: FakeTikTok, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    settings = TikTokSettings(title="Trip", auto_add_music=True)
    result = await provider.publish(
        creds, PostPart(content="Day one", media=[jpeg(), jpeg("b.jpg")]), settings
    )
    init = tiktok.last("POST", "/v2/post/publish/content/init/")
    assert init.json == {
        "post_info": {
            "title": "Trip",
            "description": "Day one",
            "disable_comment": False,
            "auto_add_music": True,
            "brand_content_toggle": False,
            "brand_organic_toggle": False,
            "privacy_level": "PUBLIC_TO_EVERYONE",
        },
        "source_info": {
            "source": "PULL_FROM_URL",
            "photo_cover_index": 0,
            "photo_images": ["https://media.example/a.jpg", "https://media.example/b.jpg"],
        },
        "post_mode": "DIRECT_POST",
        "media_type": "PHOTO",
    }
    assert result.url == f"https://tiktok.test/@nelly/photo/{result.id}"


async def test_private_post_has_no_public_id(
    provider: TikTokProvider, tiktok: FakeTikTok, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    result = await provider.publish(
        creds,
        PostPart(content="me only", media=[video()]),
        TikTokSettings(privacy_level="SELF_ONLY"),
    )
    assert result.id == result.data["publish_id"]
    assert result.data["status"] == "PUBLISH_COMPLETE"


async def test_creator_options_are_respected(
    provider: TikTokProvider, tiktok: FakeTikTok, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    with pytest.raises(BadBodyError, match="does not offer FOLLOWER_OF_CREATOR"):
        await provider.publish(
            creds,
            PostPart(content="c", media=[video()]),
            TikTokSettings(privacy_level="FOLLOWER_OF_CREATOR"),
        )
    assert tiktok.calls("POST", VIDEO_INIT) == []
    tiktok.comment_disabled = True
    await provider.publish(creds, PostPart(content="c", media=[video()]), DEFAULT)
    assert tiktok.last("POST", VIDEO_INIT).json["post_info"]["disable_comment"] is True


async def test_failed_processing_is_bad_body(
    provider: TikTokProvider, tiktok: FakeTikTok, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    tiktok.fail_reason = "duration_check_failed"
    with pytest.raises(BadBodyError, match="duration_check_failed"):
        await provider.publish(creds, PostPart(content="c", media=[video()]), DEFAULT)


# ---- errors -----------------------------------------------------------------------------------


async def test_invalid_token_is_refresh_error(
    provider: TikTokProvider, tiktok: FakeTikTok, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    tiktok.oauth.expire_all()
    with pytest.raises(RefreshTokenError, match="access token is invalid") as info:
        await provider.publish(creds, PostPart(content="c", media=[video()]), DEFAULT)
    assert info.value.status_code == 401


async def test_revoked_scope_is_disconnect(
    provider: TikTokProvider, tiktok: FakeTikTok, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    tiktok.scope_revoked = True
    with pytest.raises(DisconnectedError, match="did not authorize the scope"):
        await provider.publish(creds, PostPart(content="c", media=[video()]), DEFAULT)


async def test_rate_limits(
    provider: TikTokProvider, tiktok: FakeTikTok, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    tiktok.fail(
        "POST",
        VIDEO_INIT,
        429,
        {"error": {"code": "rate_limit_exceeded", "message": "Too many requests", "log_id": "x"}},
        headers={"Retry-After": "30"},
    )
    with pytest.raises(RetryableError, match="Too many requests") as info:
        await provider.publish(creds, PostPart(content="c", media=[video()]), DEFAULT)
    assert info.value.retry_after == 30
    tiktok.fail(
        "POST",
        VIDEO_INIT,
        403,
        {
            "error": {
                "code": "spam_risk_too_many_posts",
                "message": "The daily post cap is reached",
                "log_id": "x",
            }
        },
    )
    with pytest.raises(RetryableError, match="daily post cap") as info:
        await provider.publish(creds, PostPart(content="c", media=[video()]), DEFAULT)
    assert info.value.retry_after == 3600


async def test_server_error_is_retryable(
    provider: TikTokProvider, tiktok: FakeTikTok, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    tiktok.fail(
        "POST",
        VIDEO_INIT,
        500,
        {"error": {"code": "internal_error", "message": "Something went wrong", "log_id": "x"}},
    )
    with pytest.raises(RetryableError, match="Something went wrong") as info:
        await provider.publish(creds, PostPart(content="c", media=[video()]), DEFAULT)
    assert info.value.status_code == 500


async def test_rejected_content_is_bad_body(
    provider: TikTokProvider, tiktok: FakeTikTok, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    with pytest.raises(
        BadBodyError, match=r"title exceeds 2200 characters. \(invalid_params\)"
    ) as info:
        await provider.publish(creds, PostPart(content="y" * 2201, media=[video()]), DEFAULT)
    assert info.value.status_code == 400
    with pytest.raises(BadBodyError, match="one video, or images only"):
        await provider.publish(creds, PostPart(content="c", media=[video(), jpeg()]), DEFAULT)


async def test_lost_last_chunk_answer_is_checked(
    provider: TikTokProvider, tiktok: FakeTikTok, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    tiktok.lose_upload_answer = True
    result = await provider.publish(creds, PostPart(content="c", media=[video()]), DEFAULT)
    assert len(tiktok.publishes) == 1
    assert result.id == str(next(iter(tiktok.publishes.values()))["post_id"])


async def test_hang_is_unknown_outcome(
    provider: TikTokProvider, tiktok: FakeTikTok, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    tiktok.hang("PUT", "/upload/{publish_id}")  # the bytes never arrive
    started = time.monotonic()
    with pytest.raises(UnknownOutcomeError):
        await provider.publish(creds, PostPart(content="c", media=[video()]), DEFAULT)
    assert time.monotonic() - started < 3
    tiktok.hang("POST", VIDEO_INIT)  # pulling starts publishing: a lost answer is unknown
    with pytest.raises(UnknownOutcomeError):
        await provider.publish(
            creds,
            PostPart(content="c", media=[video()]),
            TikTokSettings(upload_method="PULL_FROM_URL"),
        )


# ---- validation -------------------------------------------------------------------------------


def test_length_boundary(provider: TikTokProvider) -> None:
    assert provider.validate([PostPart(content="x" * 2000, media=[video()])]) == []
    assert [v.code for v in provider.validate([PostPart(content="x" * 2001, media=[video()])])] == [
        "too_long"
    ]
    assert [
        v.code for v in provider.validate([PostPart(content="😀" * 1001, media=[video()])])
    ] == ["too_long"]


def test_media_rules(provider: TikTokProvider) -> None:
    def codes(media: list[MediaItem], settings: dict | None = None) -> list[str]:  # type: ignore[type-arg]
        return [v.code for v in provider.validate([PostPart(content="x", media=media)], settings)]

    assert codes([video()]) == []
    assert codes([jpeg()] * 35) == []
    assert codes([jpeg()] * 36) == ["too_many_images"]
    assert codes([]) == ["media_required"]
    assert codes([video(), video()]) == ["too_many_videos"]
    assert codes([video(), jpeg()]) == ["media_mixed"]
    assert codes([image()]) == ["media_type"]  # PNG photos are not accepted
    assert codes([video()], {"brand_content_toggle": True, "privacy_level": "SELF_ONLY"}) == [
        "settings"
    ]
    assert codes([video()], {"title": "x" * 91}) == ["settings"]

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.channels.providers.helpers import JPEG, MP4, PNG, image, video
from tests.channels.providers.oauthflow import approve, credentials_of, query_of
from tests.channels.providers.servers.pinterest import (
    BOARDS,
    CLIENT_ID,
    CLIENT_SECRET,
    FakePinterest,
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
from tidings.channels.providers.pinterest import PinterestProvider, PinterestSettings

REDIRECT = "https://tidings.example/integrations/social/pinterest"
BOARD = BOARDS[0]["id"]
SETTINGS = PinterestSettings(board=BOARD)
BASIC = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()


def cover() -> MediaItem:
    return image(JPEG, "image/jpeg", alt="the cover", name="cover.jpg")


@pytest.fixture
async def pinterest() -> AsyncIterator[FakePinterest]:
    async with FakePinterest() as server:
        yield server


@pytest.fixture
def provider(http: httpx.AsyncClient, pinterest: FakePinterest) -> PinterestProvider:
    p = PinterestProvider(
        http,
        ProviderConfig(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            urls={"web": pinterest.base_url, "api": pinterest.base_url},
        ),
    )
    p.media_poll_interval = 0.01
    return p


async def connect(provider: PinterestProvider, http: httpx.AsyncClient) -> ChannelCredentials:
    start = await provider.authorization_url(REDIRECT, "st", "v")
    callback = await approve(http, start.url, REDIRECT)
    return credentials_of(await provider.exchange_code(callback["code"], REDIRECT, "v"))


def test_registered() -> None:
    assert get_provider("pinterest") is PinterestProvider
    assert not PinterestProvider.supports_replies
    assert PinterestProvider.tool_names() == ["boards"]
    assert "board" in PinterestProvider.settings_schema()["required"]


# ---- connect and refresh ----------------------------------------------------------------------


async def test_connect(
    provider: PinterestProvider, pinterest: FakePinterest, http: httpx.AsyncClient
) -> None:
    start = await provider.authorization_url(REDIRECT, "st4te", "v")
    where, query = query_of(start.url)
    assert where == pinterest.url("/oauth/")
    assert query == {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "boards:read,boards:write,pins:read,pins:write,user_accounts:read",
        "state": "st4te",
    }
    callback = await approve(http, start.url, REDIRECT)
    account = await provider.exchange_code(callback["code"], REDIRECT, "v")
    token_call = pinterest.last("POST", "/v5/oauth/token")
    assert token_call.auth == BASIC
    assert token_call.form == {
        "grant_type": "authorization_code",
        "code": callback["code"],
        "redirect_uri": REDIRECT,
    }
    assert pinterest.last("GET", "/v5/user_account").auth == f"Bearer {account.tokens.access_token}"
    assert account.internal_id == "1148715754812345"
    assert account.name == "Tidings Shop"
    assert account.username == "tidingsshop"
    assert account.picture == "https://i.pinimg.test/shop.jpg"
    assert account.tokens.refresh_token and account.tokens.expires_at
    assert not account.in_between_steps


async def test_exchange_bad_code(provider: PinterestProvider) -> None:
    with pytest.raises(ConnectError, match="Invalid authorization code"):
        await provider.exchange_code("nope", REDIRECT, "v")


async def test_refresh(
    provider: PinterestProvider, pinterest: FakePinterest, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    pinterest.oauth.rotate_refresh = False
    tokens = await provider.refresh(creds)
    call = pinterest.last("POST", "/v5/oauth/token")
    assert call.auth == BASIC
    assert call.form == {"grant_type": "refresh_token", "refresh_token": creds.refresh_token}
    assert tokens.access_token != creds.access_token
    assert tokens.refresh_token is None  # none sent: keep the stored one
    pinterest.oauth.revoke_all()
    with pytest.raises(DisconnectedError, match="Invalid refresh token"):
        await provider.refresh(creds)


async def test_boards_tool(
    provider: PinterestProvider, pinterest: FakePinterest, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    boards = await provider.call_tool("boards", creds, {})
    assert boards == [{"id": b["id"], "name": b["name"]} for b in BOARDS]
    listings = pinterest.calls("GET", "/v5/boards")
    assert [c.query for c in listings] == [
        {"page_size": "100"},
        {"page_size": "100", "bookmark": "2"},
    ]


# ---- publishing -------------------------------------------------------------------------------


async def test_pin_one_image(
    provider: PinterestProvider, pinterest: FakePinterest, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    settings = provider.parse_settings(
        {
            "__type": "pinterest",
            "board": BOARD,
            "title": "Best soup",
            "link": "https://tidings.example/soup",
            "dominant_color": "#6E7874",
        }
    )
    result = await provider.publish(
        creds, PostPart(content="A warm soup", media=[image(PNG, alt="soup")]), settings
    )
    call = pinterest.last("POST", "/v5/pins")
    assert call.auth == f"Bearer {creds.access_token}"
    assert call.json == {
        "board_id": BOARD,
        "description": "A warm soup",
        "media_source": {"source_type": "image_url", "url": "https://media.example/a.png"},
        "title": "Best soup",
        "link": "https://tidings.example/soup",
        "dominant_color": "#6E7874",
        "alt_text": "soup",
    }
    assert result.id in pinterest.pins
    assert result.url == pinterest.url(f"/pin/{result.id}/")


async def test_pin_carousel(
    provider: PinterestProvider, pinterest: FakePinterest, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    media = [image(name=f"{i}.png") for i in range(3)]
    await provider.publish(creds, PostPart(content="three", media=media), SETTINGS)
    assert pinterest.last("POST", "/v5/pins").json["media_source"] == {
        "source_type": "multiple_image_urls",
        "items": [{"url": f"https://media.example/{i}.png"} for i in range(3)],
        "index": 0,
    }


async def test_pin_video_with_cover(
    provider: PinterestProvider, pinterest: FakePinterest, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    result = await provider.publish(
        creds, PostPart(content="clip", media=[video(), cover()]), SETTINGS
    )
    register = pinterest.last("POST", "/v5/media")
    assert register.auth == f"Bearer {creds.access_token}"
    assert register.json == {"media_type": "video"}
    media_id, media = next(iter(pinterest.media.items()))
    upload = pinterest.last("POST", "/storage-upload")
    assert upload.form == {
        "key": f"uploads/{media['key']}",
        "x-amz-signature": f"sig-{media['key']}",
        "Content-Type": "multipart/form-data",
    }
    assert upload.auth is None  # the storage URL is pre-signed: no token sent there
    assert upload.files["file"].data == MP4
    assert upload.files["file"].content_type == "video/mp4"
    polls = pinterest.calls("GET", "/v5/media/{media_id}")
    assert [p.path for p in polls] == [f"/v5/media/{media_id}"] * 2
    pin = pinterest.last("POST", "/v5/pins").json
    assert pin["media_source"] == {
        "source_type": "video_id",
        "media_id": media_id,
        "cover_image_url": "https://media.example/cover.jpg",
    }
    assert pin["alt_text"] == "the cover"
    assert result.id in pinterest.pins


async def test_video_processing_failure_is_bad_body(
    provider: PinterestProvider, pinterest: FakePinterest, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    pinterest.video_fails = True
    with pytest.raises(BadBodyError, match="could not process the video"):
        await provider.publish(creds, PostPart(content="clip", media=[video(), cover()]), SETTINGS)
    assert pinterest.calls("POST", "/v5/pins") == []


async def test_video_without_cover_is_refused(provider: PinterestProvider) -> None:
    creds = ChannelCredentials(access_token="t", internal_id="1")
    with pytest.raises(BadBodyError, match="cover image as the second item"):
        await provider.publish(creds, PostPart(content="clip", media=[video()]), SETTINGS)
    with pytest.raises(BadBodyError, match="video goes first"):
        await provider.publish(creds, PostPart(content="clip", media=[cover(), video()]), SETTINGS)


# ---- errors -----------------------------------------------------------------------------------


async def test_expired_token_is_refresh_error(
    provider: PinterestProvider, pinterest: FakePinterest, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    pinterest.oauth.expire_all()
    with pytest.raises(RefreshTokenError, match="Authentication failed") as info:
        await provider.publish(creds, PostPart(content="x", media=[image()]), SETTINGS)
    assert info.value.status_code == 401


async def test_suspended_is_disconnect(
    provider: PinterestProvider, pinterest: FakePinterest, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    pinterest.suspended = True
    with pytest.raises(DisconnectedError, match="suspended"):
        await provider.publish(creds, PostPart(content="x", media=[image()]), SETTINGS)


async def test_rate_limited(
    provider: PinterestProvider, pinterest: FakePinterest, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    pinterest.fail(
        "POST",
        "/v5/pins",
        429,
        {"code": 8, "message": "Rate limit exceeded."},
        headers={"Retry-After": "45"},
    )
    with pytest.raises(RetryableError, match="Rate limit exceeded") as info:
        await provider.publish(creds, PostPart(content="x", media=[image()]), SETTINGS)
    assert info.value.retry_after == 45


async def test_server_error_is_retryable(
    provider: PinterestProvider, pinterest: FakePinterest, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    pinterest.fail("POST", "/v5/pins", 503, {"code": 0, "message": "Service unavailable"})
    with pytest.raises(RetryableError, match="Service unavailable") as info:
        await provider.publish(creds, PostPart(content="x", media=[image()]), SETTINGS)
    assert info.value.status_code == 503


async def test_rejected_content_is_bad_body(
    provider: PinterestProvider, pinterest: FakePinterest, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    with pytest.raises(BadBodyError, match="description is too long") as info:
        await provider.publish(creds, PostPart(content="y" * 801, media=[image()]), SETTINGS)
    assert info.value.status_code == 400
    with pytest.raises(BadBodyError, match="Board not found"):
        await provider.publish(
            creds, PostPart(content="x", media=[image()]), PinterestSettings(board="404")
        )


async def test_hang_is_unknown_outcome(
    provider: PinterestProvider, pinterest: FakePinterest, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    pinterest.hang("POST", "/v5/pins")
    started = time.monotonic()
    with pytest.raises(UnknownOutcomeError):
        await provider.publish(creds, PostPart(content="maybe", media=[image()]), SETTINGS)
    assert time.monotonic() - started < 3
    assert pinterest.last("POST", "/v5/pins").json["description"] == "maybe"


async def test_find_published_after_a_lost_answer(
    provider: PinterestProvider, pinterest: FakePinterest, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    since = datetime.now(UTC)
    pinterest.hang("POST", "/v5/pins", process=True)
    with pytest.raises(UnknownOutcomeError):
        await provider.publish(creds, PostPart(content="lost pin", media=[image()]), SETTINGS)
    [sent] = list(pinterest.pins)
    part = PostPart(content="lost pin", media=[image()])
    found = await provider.find_published(creds, part, SETTINGS, parent=None, since=since)
    listing = pinterest.last("GET", "/v5/boards/{board_id}/pins")
    assert listing.path == f"/v5/boards/{BOARD}/pins"
    assert listing.auth == f"Bearer {creds.access_token}" and listing.query == {"page_size": "25"}
    assert found is not None and found.id == sent
    assert found.url == pinterest.url(f"/pin/{sent}/")
    other_board = PinterestSettings(board=BOARDS[1]["id"])
    assert await provider.find_published(creds, part, other_board, parent=None, since=since) is None
    assert (
        await provider.find_published(
            creds, part, SETTINGS, parent=None, since=since + timedelta(minutes=10)
        )
        is None
    )


# ---- validation -------------------------------------------------------------------------------


def test_length_boundary(provider: PinterestProvider) -> None:
    board = {"board": BOARD}
    assert provider.validate([PostPart(content="x" * 500, media=[image()])], board) == []
    too_long = provider.validate([PostPart(content="x" * 501, media=[image()])], board)
    assert [v.code for v in too_long] == ["too_long"]


def test_media_rules(provider: PinterestProvider) -> None:
    def codes(media: list[MediaItem], settings: dict | None = None) -> list[str]:  # type: ignore[type-arg]
        chosen = {"board": BOARD} if settings is None else settings
        return [v.code for v in provider.validate([PostPart(content="x", media=media)], chosen)]

    assert codes([image()]) == []
    assert codes([image()] * 5) == []
    assert codes([image()] * 6) == ["too_many_images", "too_many_media"]
    assert codes([]) == ["media_required"]
    assert codes([video(), cover()]) == []
    assert codes([video()]) == ["video_cover"]
    assert codes([cover(), video()]) == ["video_cover"]
    assert codes([video(), cover(), image()]) == ["video_cover"]
    assert codes([image()], {}) == ["settings"]  # a board is required
    assert codes([image()], {"board": BOARD, "dominant_color": "red"}) == ["settings"]
    assert codes([image()], {"board": BOARD, "title": "t" * 101}) == ["settings"]

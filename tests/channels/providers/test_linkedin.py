from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest

from tests.channels.providers.helpers import JPEG, MP4, PNG, StreamedFile, image, video
from tests.channels.providers.servers.linkedin import (
    CLIENT_ID,
    CLIENT_SECRET,
    VERSION,
    FakeLinkedIn,
)
from tidings.channels.providers import (
    BadBodyError,
    ChannelCredentials,
    ConnectedAccount,
    ConnectError,
    DisconnectedError,
    PostPart,
    PublishResult,
    RefreshTokenError,
    RetryableError,
    UnknownOutcomeError,
    UnknownToolError,
    config_from_env,
    get_provider,
    new_code_verifier,
)
from tidings.channels.providers.linkedin import (
    LinkedInPageProvider,
    LinkedInProvider,
    LinkedInSettings,
    escape_little_text,
)

REDIRECT = "https://tidings.example/integrations/social/linkedin"
DEFAULT = LinkedInSettings()


@pytest.fixture
async def li() -> AsyncIterator[FakeLinkedIn]:
    async with FakeLinkedIn() as server:
        yield server


def env(li: FakeLinkedIn) -> dict[str, str]:
    return {
        "TIDINGS_LINKEDIN_CLIENT_ID": CLIENT_ID,
        "TIDINGS_LINKEDIN_CLIENT_SECRET": CLIENT_SECRET,
        "TIDINGS_LINKEDIN_API_URL": li.base_url,
        "TIDINGS_LINKEDIN_AUTH_URL": li.base_url,
        "TIDINGS_LINKEDIN_PAGE_API_URL": li.base_url,
        "TIDINGS_LINKEDIN_PAGE_AUTH_URL": li.base_url,
    }


@pytest.fixture
def provider(http: httpx.AsyncClient, li: FakeLinkedIn) -> LinkedInProvider:
    p = LinkedInProvider(http, config_from_env("linkedin", env(li)))
    p.video_poll_interval = 0.01
    return p


@pytest.fixture
def page_provider(http: httpx.AsyncClient, li: FakeLinkedIn) -> LinkedInPageProvider:
    p = LinkedInPageProvider(http, config_from_env("linkedin-page", env(li)))
    p.video_poll_interval = 0.01
    return p


async def oauth(
    provider: LinkedInProvider, http: httpx.AsyncClient
) -> tuple[ConnectedAccount, str]:
    start = await provider.authorization_url(REDIRECT, "st", new_code_verifier())
    location = (await http.get(start.url)).headers["location"]
    code = parse_qs(urlsplit(location).query)["code"][0]
    return await provider.exchange_code(code, REDIRECT, "unused"), code


async def connect(provider: LinkedInProvider, http: httpx.AsyncClient) -> ChannelCredentials:
    account = (await oauth(provider, http))[0]
    return ChannelCredentials(
        access_token=account.tokens.access_token,
        refresh_token=account.tokens.refresh_token,
        token_expires_at=account.tokens.expires_at,
        internal_id=account.internal_id,
    )


def test_registered() -> None:
    assert get_provider("linkedin") is LinkedInProvider
    assert get_provider("linkedin-page") is LinkedInPageProvider
    # The page provider shares the LinkedIn app credentials.
    config = config_from_env("linkedin-page", {"TIDINGS_LINKEDIN_CLIENT_ID": "shared"})
    assert config.client_id == "shared"
    assert config.url("api") == "https://api.linkedin.com"


def test_escape_little_text() -> None:
    assert escape_little_text("Hi (all) @you #tag *b* _i_ ~s~ [x] {y} <z> a|b \\") == (
        "Hi \\(all\\) \\@you \\#tag \\*b\\* \\_i\\_ \\~s\\~ \\[x\\] \\{y\\} \\<z\\> a\\|b \\\\"
    )


# ---- connect --------------------------------------------------------------------------------


async def test_oauth_connect(
    provider: LinkedInProvider, li: FakeLinkedIn, http: httpx.AsyncClient
) -> None:
    start = await provider.authorization_url(REDIRECT, "st", new_code_verifier())
    url = urlsplit(start.url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == li.url("/oauth/v2/authorization")
    assert parse_qs(url.query) == {
        "response_type": ["code"],
        "client_id": [CLIENT_ID],
        "redirect_uri": [REDIRECT],
        "state": ["st"],
        "scope": ["openid profile w_member_social"],
    }
    account, code = await oauth(provider, http)
    assert li.last("POST", "/oauth/v2/accessToken").form == {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    assert li.last("GET", "/v2/userinfo").auth == f"Bearer {account.tokens.access_token}"
    assert account.internal_id == "abc123"
    assert account.tokens.expires_at is not None
    assert account.tokens.refresh_token in li.oauth.refresh
    assert account.name == "Lena Link"
    assert account.picture == "https://media.licdn.example/lena.jpg"
    assert account.username == "lena@example.com"
    assert not account.in_between_steps


async def test_exchange_refused(provider: LinkedInProvider) -> None:
    with pytest.raises(ConnectError, match="Invalid authorization code"):
        await provider.exchange_code("bad", REDIRECT, "v")


async def test_refresh_keeps_refresh_token(
    provider: LinkedInProvider, li: FakeLinkedIn, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    tokens = await provider.refresh(creds)
    assert li.last("POST", "/oauth/v2/accessToken").form == {
        "grant_type": "refresh_token",
        "refresh_token": creds.refresh_token,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    assert tokens.refresh_token is None  # not re-sent: keep the stored one
    assert tokens.access_token in li.oauth.access
    creds.refresh_token = None
    with pytest.raises(DisconnectedError, match="reconnect"):
        await provider.refresh(creds)


# ---- pages (in-between step) ------------------------------------------------------------


async def test_page_connect_and_pick(
    page_provider: LinkedInPageProvider, li: FakeLinkedIn, http: httpx.AsyncClient
) -> None:
    start = await page_provider.authorization_url(REDIRECT, "st", "v")
    assert "r_organization_admin" in parse_qs(urlsplit(start.url).query)["scope"][0]
    location = (await http.get(start.url)).headers["location"]
    account = await page_provider.exchange_code(
        parse_qs(urlsplit(location).query)["code"][0], REDIRECT, "v"
    )
    assert account.in_between_steps
    creds = ChannelCredentials(
        access_token=account.tokens.access_token,
        refresh_token=account.tokens.refresh_token,
        internal_id=account.internal_id,
    )
    choices = await page_provider.list_choices(creds)
    assert [(c.id, c.name, c.username) for c in choices] == [
        ("2414183", "Acme Corp", "acme"),
        ("555", "Side Project", "side"),
    ]
    acl = li.last("GET", "/rest/organizationAcls")
    assert acl.query == {"q": "roleAssignee", "role": "ADMINISTRATOR", "state": "APPROVED"}
    assert acl.headers["linkedin-version"] == VERSION
    assert acl.headers["x-restli-protocol-version"] == "2.0.0"
    assert await page_provider.call_tool("list_pages", creds, {}) == [
        {"id": "2414183", "name": "Acme Corp", "username": "acme"},
        {"id": "555", "name": "Side Project", "username": "side"},
    ]
    with pytest.raises(UnknownToolError):
        await page_provider.call_tool("flairs", creds, {})

    picked = await page_provider.select_choice(creds, "2414183")
    assert picked.internal_id == "2414183"
    assert picked.name == "Acme Corp"
    assert not picked.in_between_steps
    assert picked.tokens.access_token == creds.access_token
    assert picked.tokens.refresh_token == creds.refresh_token
    with pytest.raises(ConnectError, match="do not administer"):
        await page_provider.select_choice(creds, "999")

    page_creds = ChannelCredentials(access_token=creds.access_token, internal_id="2414183")
    result = await page_provider.publish(page_creds, PostPart(content="from the page"), DEFAULT)
    assert li.posts[result.id]["author"] == "urn:li:organization:2414183"
    comment = await page_provider.reply(page_creds, result, PostPart(content="c"), DEFAULT)
    assert li.comments[comment.id]["actor"] == "urn:li:organization:2414183"


async def test_lost_page_admin_is_disconnect(
    page_provider: LinkedInPageProvider, li: FakeLinkedIn, http: httpx.AsyncClient
) -> None:
    creds = await connect(page_provider, http)
    li.admin_of = []
    page_creds = ChannelCredentials(access_token=creds.access_token, internal_id="2414183")
    with pytest.raises(DisconnectedError, match="Not enough permissions"):
        await page_provider.publish(page_creds, PostPart(content="x"), DEFAULT)


# ---- publishing -----------------------------------------------------------------------------


async def test_publish_text(
    provider: LinkedInProvider, li: FakeLinkedIn, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    result = await provider.publish(
        creds, PostPart(content="Launch (today) #news"), LinkedInSettings(visibility="CONNECTIONS")
    )
    call = li.last("POST", "/rest/posts")
    assert call.auth == f"Bearer {creds.access_token}"
    assert call.headers["linkedin-version"] == VERSION
    assert call.json == {
        "author": "urn:li:person:abc123",
        "commentary": "Launch \\(today\\) \\#news",
        "visibility": "CONNECTIONS",
        "distribution": {
            "feedDistribution": "MAIN_FEED",
            "targetEntities": [],
            "thirdPartyDistributionChannels": [],
        },
        "lifecycleState": "PUBLISHED",
        "isReshareDisabledByAuthor": False,
    }
    assert result.id.startswith("urn:li:share:")
    assert result.url == f"https://www.linkedin.com/feed/update/{result.id}"


async def test_publish_single_image(
    provider: LinkedInProvider, li: FakeLinkedIn, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    await provider.publish(creds, PostPart(content="one", media=[image(alt="chart")]), DEFAULT)
    init = li.last("POST", "/rest/images")
    assert init.query == {"action": "initializeUpload"}
    assert init.json == {"initializeUploadRequest": {"owner": "urn:li:person:abc123"}}
    put = li.last("PUT", "/dms-uploads/{key}")
    assert put.body == PNG
    assert put.auth == f"Bearer {creds.access_token}"
    urn = next(iter(li.images))
    assert li.last("POST", "/rest/posts").json["content"] == {
        "media": {"id": urn, "altText": "chart"}
    }


async def test_publish_carousel(
    provider: LinkedInProvider, li: FakeLinkedIn, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    media = [image(PNG), image(JPEG, "image/jpeg", alt="second"), image(PNG)]
    await provider.publish(creds, PostPart(content="three", media=media), DEFAULT)
    assert [p.body for p in li.calls("PUT", "/dms-uploads/{key}")] == [PNG, JPEG, PNG]
    urns = list(li.images)
    assert li.last("POST", "/rest/posts").json["content"] == {
        "multiImage": {
            "images": [{"id": urns[0]}, {"id": urns[1], "altText": "second"}, {"id": urns[2]}]
        }
    }


async def test_publish_video(
    provider: LinkedInProvider, li: FakeLinkedIn, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    await provider.publish(creds, PostPart(content="clip", media=[video()]), DEFAULT)
    init = li.calls("POST", "/rest/videos")[0]
    assert init.query == {"action": "initializeUpload"}
    assert init.json == {
        "initializeUploadRequest": {
            "owner": "urn:li:person:abc123",
            "fileSizeBytes": len(MP4),
            "uploadCaptions": False,
            "uploadThumbnail": True,
        }
    }
    urn = next(iter(li.videos))
    stored = li.videos[urn]
    puts = li.calls("PUT", "/dms-uploads/{key}")
    assert len(puts) == 4  # 268 bytes in 100-byte parts + the thumbnail
    assert li.uploads[stored["thumb_key"]] == JPEG
    finalize = li.calls("POST", "/rest/videos")[1]
    assert finalize.query == {"action": "finalizeUpload"}
    assert finalize.json == {
        "finalizeUploadRequest": {
            "video": urn,
            "uploadToken": stored["token"],
            "uploadedPartIds": [f'"{k}"' for k in stored["keys"]],
        }
    }
    assert stored["data"] == MP4
    assert len(li.calls("GET", "/rest/videos/{urn}")) == 2  # PROCESSING, then AVAILABLE
    assert li.last("POST", "/rest/posts").json["content"] == {"media": {"id": urn}}


async def test_video_parts_are_streamed_never_read_whole(
    provider: LinkedInProvider, li: FakeLinkedIn, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    source = StreamedFile(os.urandom(950), piece=33)
    await provider.publish(creds, PostPart(content="clip", media=[source.item()]), DEFAULT)
    init = li.calls("POST", "/rest/videos")[0]
    assert init.json["initializeUploadRequest"]["fileSizeBytes"] == 950
    stored = li.videos[next(iter(li.videos))]
    parts = [li.uploads[key] for key in stored["keys"]]
    assert [len(p) for p in parts] == [100] * 9 + [50]
    assert stored["data"] == source.data and source.opens == 1


async def test_reply_chain(
    provider: LinkedInProvider, li: FakeLinkedIn, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    post = await provider.publish(creds, PostPart(content="1/4"), DEFAULT)
    second = await provider.reply(creds, post, PostPart(content="2/4"), DEFAULT)
    third = await provider.reply(creds, second, PostPart(content="3/4"), DEFAULT)
    fourth = await provider.reply(creds, third, PostPart(content="4/4"), DEFAULT)

    calls = li.calls("POST", "/rest/socialActions/{urn}/comments")
    assert [c.path for c in calls] == [
        f"/rest/socialActions/{post.id}/comments",
        f"/rest/socialActions/{second.id}/comments",
        f"/rest/socialActions/{second.id}/comments",
    ]
    # URNs travel percent-encoded in the path.
    assert calls[1].raw_path == f"/rest/socialActions/{quote(second.id, safe='')}/comments"
    assert calls[0].json == {
        "actor": "urn:li:person:abc123",
        "object": post.id,
        "message": {"text": "2/4"},
    }
    assert calls[1].json == {
        "actor": "urn:li:person:abc123",
        "object": post.id,
        "message": {"text": "3/4"},
        "parentComment": second.id,
    }
    # LinkedIn nests one level: the fourth part replies in the same comment thread.
    assert calls[2].json["parentComment"] == second.id
    assert second.url == (
        f"https://www.linkedin.com/feed/update/{post.id}?commentUrn={quote(second.id, safe='')}"
    )
    assert fourth.id in li.comments


async def test_reply_from_stored_ids_only(
    provider: LinkedInProvider, li: FakeLinkedIn, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    post = await provider.publish(creds, PostPart(content="p"), DEFAULT)
    second = await provider.reply(creds, PublishResult(id=post.id), PostPart(content="c"), DEFAULT)
    await provider.reply(creds, PublishResult(id=second.id), PostPart(content="r"), DEFAULT)
    last = li.last("POST", "/rest/socialActions/{urn}/comments")
    assert last.json["parentComment"] == second.id
    assert last.json["object"].startswith("urn:li:activity:")


# ---- errors ---------------------------------------------------------------------------------


async def test_401_is_refresh_error(
    provider: LinkedInProvider, li: FakeLinkedIn, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    li.oauth.expire_all()
    with pytest.raises(RefreshTokenError, match="Invalid access token"):
        await provider.publish(creds, PostPart(content="x"), DEFAULT)


async def test_revoked_is_disconnect(
    provider: LinkedInProvider, li: FakeLinkedIn, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    li.oauth.revoke_all()
    with pytest.raises(DisconnectedError, match="revoked by the user"):
        await provider.publish(creds, PostPart(content="x"), DEFAULT)


async def test_429_and_5xx(
    provider: LinkedInProvider, li: FakeLinkedIn, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    li.fail(
        "POST",
        "/rest/posts",
        429,
        {"status": 429, "message": "Resource level throttle limit reached"},
        headers={"Retry-After": "30"},
    )
    with pytest.raises(RetryableError, match="throttle") as info:
        await provider.publish(creds, PostPart(content="x"), DEFAULT)
    assert info.value.retry_after == 30
    li.fail("POST", "/rest/posts", 500, {"status": 500, "message": "Internal Server Error"})
    with pytest.raises(RetryableError) as info:
        await provider.publish(creds, PostPart(content="x"), DEFAULT)
    assert info.value.status_code == 500


async def test_rejected_content(
    provider: LinkedInProvider, li: FakeLinkedIn, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    await provider.publish(creds, PostPart(content="same"), DEFAULT)
    with pytest.raises(BadBodyError, match="Content is a duplicate") as info:
        await provider.publish(creds, PostPart(content="same"), DEFAULT)
    assert info.value.status_code == 422


async def test_hang_is_unknown_outcome(
    provider: LinkedInProvider, li: FakeLinkedIn, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    li.hang("POST", "/rest/posts")
    started = time.monotonic()
    with pytest.raises(UnknownOutcomeError):
        await provider.publish(creds, PostPart(content="x"), DEFAULT)
    assert time.monotonic() - started < 3


async def test_created_without_urn_is_unknown_outcome(
    provider: LinkedInProvider, li: FakeLinkedIn, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    li.fail("POST", "/rest/posts", 201, {})
    with pytest.raises(UnknownOutcomeError, match="did not say what it created"):
        await provider.publish(creds, PostPart(content="x"), DEFAULT)


# ---- validation -----------------------------------------------------------------------------


def test_validation(provider: LinkedInProvider) -> None:
    def codes(parts: list[PostPart]) -> list[tuple[str, int | None]]:
        return [(v.code, v.part_index) for v in provider.validate(parts)]

    assert codes([PostPart(content="a" * 3000)]) == []
    assert codes([PostPart(content="a" * 3001)]) == [("too_long", 0)]
    assert codes([PostPart(content="p"), PostPart(content="c" * 1250)]) == []
    assert codes([PostPart(content="p"), PostPart(content="c" * 1251)]) == [("too_long", 1)]
    assert codes([PostPart(content="x", media=[image()] * 2)]) == []  # carousel
    assert codes([PostPart(content="x", media=[image()] * 20)]) == []
    assert codes([PostPart(content="x", media=[image()] * 21)]) == [("too_many_images", 0)]
    assert codes([PostPart(content="x", media=[video()])]) == []
    assert codes([PostPart(content="x", media=[image(), video()])]) == [("media_mixed", 0)]
    assert codes([PostPart(content="x", media=[video(), video()])]) == [("too_many_videos", 0)]
    assert codes([PostPart(content="p"), PostPart(content="c", media=[image()])]) == [
        ("reply_media", 1)
    ]

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.channels.providers.helpers import image, video
from tests.channels.providers.oauthflow import approve, credentials_of, query_of
from tests.channels.providers.servers.facebook import (
    APP_ID,
    APP_SECRET,
    USER_ID,
    FakeFacebook,
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
    ProviderError,
    PublishResult,
    RefreshTokenError,
    RetryableError,
    UnknownOutcomeError,
    config_from_env,
    get_provider,
)
from tidings.channels.providers.facebook import FacebookProvider, FacebookSettings

REDIRECT = "https://tidings.example/integrations/social/facebook"
PAGE = "101"
FEED = f"{V}/{PAGE}/feed"
PHOTOS = f"{V}/{PAGE}/photos"
DEFAULT = FacebookSettings()


@pytest.fixture
async def facebook() -> AsyncIterator[FakeFacebook]:
    async with FakeFacebook() as server:
        yield server


@pytest.fixture
def provider(http: httpx.AsyncClient, facebook: FakeFacebook) -> FacebookProvider:
    return FacebookProvider(
        http,
        ProviderConfig(
            client_id=APP_ID,
            client_secret=APP_SECRET,
            urls={"graph": facebook.base_url, "web": facebook.base_url},
        ),
    )


async def connect_user(provider: FacebookProvider, http: httpx.AsyncClient) -> ChannelCredentials:
    start = await provider.authorization_url(REDIRECT, "st", "v")
    callback = await approve(http, start.url, REDIRECT)
    return credentials_of(await provider.exchange_code(callback["code"], REDIRECT, "v"))


async def connect(provider: FacebookProvider, http: httpx.AsyncClient) -> ChannelCredentials:
    user = await connect_user(provider, http)
    return credentials_of(await provider.select_choice(user, PAGE))


def test_registered() -> None:
    assert get_provider("facebook") is FacebookProvider
    assert FacebookProvider.supports_replies
    assert not FacebookProvider.supports_refresh
    assert FacebookProvider.tool_names() == ["pages"]
    env = {"TIDINGS_FACEBOOK_CLIENT_ID": "id", "TIDINGS_FACEBOOK_GRAPH_URL": "http://g"}
    config = config_from_env("facebook", env)
    assert config.client_id == "id"
    assert config.urls == {"graph": "http://g", "web": "https://www.facebook.com"}


# ---- connect ----------------------------------------------------------------------------------


async def test_connect_and_pick_a_page(
    provider: FacebookProvider, facebook: FakeFacebook, http: httpx.AsyncClient
) -> None:
    start = await provider.authorization_url(REDIRECT, "st4te", "v")
    where, query = query_of(start.url)
    assert where == facebook.url(f"{V}/dialog/oauth")
    assert query == {
        "client_id": APP_ID,
        "redirect_uri": REDIRECT,
        "state": "st4te",
        "scope": "pages_show_list,business_management,pages_manage_posts,"
        "pages_manage_engagement,pages_read_engagement,read_insights",
        "response_type": "code",
    }
    callback = await approve(http, start.url, REDIRECT)
    account = await provider.exchange_code(callback["code"], REDIRECT, "v")
    token_calls = facebook.calls("GET", f"{V}/oauth/access_token")
    assert token_calls[0].query == {
        "client_id": APP_ID,
        "client_secret": APP_SECRET,
        "redirect_uri": REDIRECT,
        "code": callback["code"],
    }
    short = token_calls[1].query["fb_exchange_token"]
    assert short.startswith("short-")
    assert token_calls[1].query == {
        "client_id": APP_ID,
        "client_secret": APP_SECRET,
        "grant_type": "fb_exchange_token",
        "fb_exchange_token": short,
    }
    assert account.tokens.access_token.startswith("long-")
    assert facebook.last("GET", f"{V}/me").query == {
        "fields": "id,name,picture",
        "access_token": account.tokens.access_token,
    }
    assert account.internal_id == f"facebook-user-{USER_ID}"
    assert account.name == "Pat Owner"
    assert account.picture == "https://fbcdn.test/pat.jpg"
    assert account.in_between_steps

    user = credentials_of(account)
    choices = await provider.list_choices(user)
    listings = facebook.calls("GET", f"{V}/me/accounts")
    assert [c.query.get("after") for c in listings] == [None, "1"]  # followed the paging
    assert listings[0].query == {
        "fields": "id,name,username,picture{url},access_token,tasks",
        "limit": "100",
        "access_token": user.access_token,
    }
    assert [(c.id, c.name, c.username, c.picture) for c in choices] == [
        ("101", "Tidings Cafe", "tidingscafe", "https://fbcdn.test/101.jpg"),
        ("102", "Tidings Books", None, "https://fbcdn.test/102.jpg"),
    ]
    picked = await provider.select_choice(user, PAGE)
    assert picked.internal_id == PAGE
    assert picked.name == "Tidings Cafe"
    assert not picked.in_between_steps
    assert picked.tokens.access_token == facebook.page_tokens[PAGE]
    assert picked.tokens.expires_at is None  # page tokens do not expire
    with pytest.raises(ConnectError, match="not one of yours"):
        await provider.select_choice(user, "999")
    assert await provider.call_tool("pages", user, {}) == [
        {"id": "101", "name": "Tidings Cafe", "picture": "https://fbcdn.test/101.jpg"},
        {"id": "102", "name": "Tidings Books", "picture": "https://fbcdn.test/102.jpg"},
    ]


async def test_tokens_and_app_secret_never_reach_the_log(
    provider: FacebookProvider,
    facebook: FakeFacebook,
    http: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The Graph API takes the app secret and the tokens as query parameters, and httpx logs
    # every request's URL at INFO.
    caplog.set_level(logging.INFO, logger="httpx")
    start = await provider.authorization_url(REDIRECT, "st4te", "v")
    callback = await approve(http, start.url, REDIRECT)
    account = await provider.exchange_code(callback["code"], REDIRECT, "v")
    await provider.list_choices(credentials_of(account))
    assert "oauth/access_token?client_id=" in caplog.text
    assert "fields=id%2Cname%2Cpicture&access_token=<redacted>" in caplog.text
    for secret in (APP_SECRET, account.tokens.access_token, callback["code"]):
        assert secret not in caplog.text


async def test_exchange_bad_code(provider: FacebookProvider) -> None:
    with pytest.raises(ConnectError, match="Invalid verification code format"):
        await provider.exchange_code("nope", REDIRECT, "v")


async def test_refresh_means_reconnect(provider: FacebookProvider, http: httpx.AsyncClient) -> None:
    creds = await connect(provider, http)
    with pytest.raises(DisconnectedError, match="cannot be refreshed"):
        await provider.refresh(creds)


# ---- publishing -------------------------------------------------------------------------------


async def test_publish_text_and_link(
    provider: FacebookProvider, facebook: FakeFacebook, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    result = await provider.publish(creds, PostPart(content="Hello page"), DEFAULT)
    call = facebook.last("POST", FEED)
    assert call.form == {"message": "Hello page", "access_token": creds.access_token}
    assert facebook.posts[result.id]["message"] == "Hello page"
    assert result.url == f"https://www.facebook.com/{PAGE}/posts/{result.id}"
    assert facebook.last("GET", f"{V}/{result.id}").query == {
        "fields": "permalink_url",
        "access_token": creds.access_token,
    }
    settings = provider.parse_settings({"__type": "facebook", "link": "https://tidings.example/a"})
    await provider.publish(creds, PostPart(content="read this"), settings)
    assert facebook.last("POST", FEED).form == {
        "message": "read this",
        "link": "https://tidings.example/a",
        "access_token": creds.access_token,
    }


async def test_publish_one_photo(
    provider: FacebookProvider, facebook: FakeFacebook, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    result = await provider.publish(creds, PostPart(content="pic", media=[image()]), DEFAULT)
    assert facebook.last("POST", PHOTOS).form == {
        "url": "https://media.example/a.png",
        "message": "pic",
        "access_token": creds.access_token,
    }
    assert facebook.calls("POST", FEED) == []
    assert facebook.posts[result.id]["kind"] == "photo"


async def test_publish_several_photos(
    provider: FacebookProvider, facebook: FakeFacebook, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    part = PostPart(content="album", media=[image(), image(name="b.png")])
    result = await provider.publish(creds, part, DEFAULT)
    uploads = facebook.calls("POST", PHOTOS)
    assert [u.form for u in uploads] == [
        {
            "url": "https://media.example/a.png",
            "published": "false",
            "access_token": creds.access_token,
        },
        {
            "url": "https://media.example/b.png",
            "published": "false",
            "access_token": creds.access_token,
        },
    ]
    photo_ids = [k for k, v in facebook.posts.items() if v["kind"] == "photo"]
    feed = facebook.last("POST", FEED)
    assert feed.form["message"] == "album"
    assert json.loads(feed.form["attached_media"]) == [{"media_fbid": i} for i in photo_ids]
    assert facebook.posts[result.id]["attached"] == photo_ids


async def test_publish_video(
    provider: FacebookProvider, facebook: FakeFacebook, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    result = await provider.publish(creds, PostPart(content="clip", media=[video()]), DEFAULT)
    assert facebook.last("POST", f"{V}/{PAGE}/videos").form == {
        "file_url": "https://media.example/v.mp4",
        "description": "clip",
        "access_token": creds.access_token,
    }
    # Facebook answers a relative permalink for videos.
    assert result.url == facebook.url(f"/{PAGE}/videos/{result.id}/")


async def test_stories(
    provider: FacebookProvider, facebook: FakeFacebook, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    story = provider.parse_settings({"post_type": "story"})
    photo = await provider.publish(creds, PostPart(content="", media=[image()]), story)
    upload = facebook.last("POST", PHOTOS)
    assert upload.form["published"] == "false"
    photo_id = next(k for k, v in facebook.posts.items() if v["kind"] == "photo")
    assert facebook.last("POST", f"{V}/{PAGE}/photo_stories").form == {
        "photo_id": photo_id,
        "access_token": creds.access_token,
    }
    assert facebook.posts[photo.id]["kind"] == "story"

    clip = await provider.publish(creds, PostPart(content="", media=[video()]), story)
    phases = facebook.calls("POST", f"{V}/{PAGE}/video_stories")
    assert [p.form.get("upload_phase") for p in phases] == ["start", "finish"]
    video_id = phases[1].form["video_id"]
    upload = facebook.last("POST", f"/video-upload{V}/{video_id}")
    assert upload.headers["file_url"] == "https://media.example/v.mp4"
    assert upload.auth == f"OAuth {creds.access_token}"
    assert facebook.posts[clip.id]["video"] == "https://media.example/v.mp4"

    with pytest.raises(BadBodyError, match="exactly one photo or video"):
        await provider.publish(creds, PostPart(content="text only"), story)


async def test_reply_chain_of_comments(
    provider: FacebookProvider, facebook: FakeFacebook, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    first = await provider.publish(creds, PostPart(content="1/3"), DEFAULT)
    second = await provider.reply(creds, first, PostPart(content="2/3"), DEFAULT)
    third = await provider.reply(creds, second, PostPart(content="3/3", media=[image()]), DEFAULT)
    assert facebook.last("POST", f"{V}/{first.id}/comments").form == {
        "message": "2/3",
        "access_token": creds.access_token,
    }
    assert facebook.last("POST", f"{V}/{second.id}/comments").form == {
        "message": "3/3",
        "attachment_url": "https://media.example/a.png",
        "access_token": creds.access_token,
    }
    assert facebook.posts[second.id]["parent"] == first.id
    assert facebook.posts[third.id]["parent"] == second.id
    assert third.url == f"https://www.facebook.com/comment/{third.id}"


# ---- errors -----------------------------------------------------------------------------------


async def test_invalid_token_is_refresh_error(
    provider: FacebookProvider, http: httpx.AsyncClient
) -> None:
    creds = ChannelCredentials(access_token="garbage", internal_id=PAGE)
    with pytest.raises(RefreshTokenError, match="Cannot parse access token") as info:
        await provider.publish(creds, PostPart(content="x"), DEFAULT)
    assert info.value.status_code == 401


async def test_revoked_is_disconnect(
    provider: FacebookProvider, facebook: FakeFacebook, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    facebook.book.revoke_all()
    with pytest.raises(DisconnectedError, match="has not authorized application"):
        await provider.publish(creds, PostPart(content="x"), DEFAULT)


async def test_lost_permission_is_disconnect(
    provider: FacebookProvider, facebook: FakeFacebook, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    creds.internal_id = "102"  # the token of page 101 cannot post on page 102
    with pytest.raises(DisconnectedError, match="does not belong"):
        await provider.publish(creds, PostPart(content="x"), DEFAULT)


async def test_rate_limited(
    provider: FacebookProvider, facebook: FakeFacebook, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    facebook.fail(
        "POST",
        FEED,
        400,
        {
            "error": {
                "message": "(#32) Page request limit reached",
                "type": "OAuthException",
                "code": 32,
            }
        },
        headers={"Retry-After": "60"},
    )
    with pytest.raises(RetryableError, match="Page request limit reached") as info:
        await provider.publish(creds, PostPart(content="x"), DEFAULT)
    assert info.value.retry_after == 60


async def test_server_error_is_retryable(
    provider: FacebookProvider, facebook: FakeFacebook, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    facebook.fail(
        "POST",
        FEED,
        500,
        {"error": {"message": "Please reduce the amount of data", "code": 1, "is_transient": True}},
    )
    with pytest.raises(RetryableError, match="reduce the amount") as info:
        await provider.publish(creds, PostPart(content="x"), DEFAULT)
    assert info.value.status_code == 500


async def test_rejected_content_is_bad_body(
    provider: FacebookProvider, facebook: FakeFacebook, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    await provider.publish(creds, PostPart(content="same"), DEFAULT)
    with pytest.raises(BadBodyError, match="Facebook: Duplicate status message") as info:
        await provider.publish(creds, PostPart(content="same"), DEFAULT)
    assert info.value.status_code == 400


async def test_hang_is_unknown_outcome(
    provider: FacebookProvider, facebook: FakeFacebook, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    facebook.hang("POST", FEED)
    started = time.monotonic()
    with pytest.raises(UnknownOutcomeError):
        await provider.publish(creds, PostPart(content="maybe"), DEFAULT)
    assert time.monotonic() - started < 3
    assert facebook.last("POST", FEED).form["message"] == "maybe"


async def test_find_published_after_a_lost_answer(
    provider: FacebookProvider, facebook: FakeFacebook, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    since = datetime.now(UTC)
    facebook.hang("POST", FEED, process=True)
    with pytest.raises(UnknownOutcomeError):
        await provider.publish(creds, PostPart(content="lost post"), DEFAULT)
    [sent] = [k for k, v in facebook.posts.items() if v["kind"] == "feed"]
    found = await provider.find_published(
        creds, PostPart(content="lost post"), DEFAULT, parent=None, since=since
    )
    listing = facebook.last("GET", f"{V}/{PAGE}/feed")
    assert listing.query == {
        "fields": "id,message,created_time,permalink_url",
        "since": str(int((since - timedelta(minutes=2)).timestamp())),
        "limit": "25",
        "access_token": creds.access_token,
    }
    assert found is not None and found.id == sent
    assert (
        await provider.find_published(
            creds, PostPart(content="nope"), DEFAULT, parent=None, since=since
        )
        is None
    )
    # Comments: only the page's own comment counts.
    parent = PublishResult(id=sent)
    facebook.add_comment(sent, "same words", author="a-fan")
    assert (
        await provider.find_published(
            creds, PostPart(content="same words"), DEFAULT, parent=parent, since=since
        )
        is None
    )
    mine = facebook.add_comment(sent, "same words", author=PAGE)
    found_comment = await provider.find_published(
        creds, PostPart(content="same words"), DEFAULT, parent=parent, since=since
    )
    assert found_comment is not None and found_comment.id == mine
    story = provider.parse_settings({"post_type": "story"})
    with pytest.raises(ProviderError, match="cannot check"):
        await provider.find_published(
            creds, PostPart(content="", media=[image()]), story, parent=None, since=since
        )


# ---- validation -------------------------------------------------------------------------------


def test_length_boundary(provider: FacebookProvider) -> None:
    assert provider.validate([PostPart(content="x" * 63206)]) == []
    assert [v.code for v in provider.validate([PostPart(content="x" * 63207)])] == ["too_long"]


def test_media_rules(provider: FacebookProvider) -> None:
    def codes(parts: list[PostPart], settings: dict | None = None) -> list[str]:  # type: ignore[type-arg]
        return [v.code for v in provider.validate(parts, settings)]

    def part(media: list[MediaItem], text: str = "x") -> PostPart:
        return PostPart(content=text, media=media)

    assert codes([part([image()] * 10)]) == []
    assert codes([part([image()] * 11)]) == ["too_many_images"]
    assert codes([part([video()])]) == []
    assert codes([part([video(), image()])]) == ["media_mixed"]
    # A story needs its one medium.
    story = {"post_type": "story"}
    assert codes([part([image()])], story) == []
    assert codes([part([])], story) == ["story_media"]
    assert codes([part([image(), image()])], story) == ["story_media"]
    # Comments carry one photo at most.
    assert codes([part([]), part([image()])]) == []
    assert codes([part([]), part([image(), image()])]) == ["comment_media"]
    assert codes([part([]), part([video()])]) == ["comment_media"]
    assert codes([part([image()])], {"link": "https://a.example"}) == ["link_with_media"]
    assert codes([part([])], {"link": "not a url"}) == ["settings"]

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.channels.providers.helpers import JPEG, image, video
from tests.channels.providers.oauthflow import approve, credentials_of, query_of
from tests.channels.providers.servers.facebook import APP_ID, APP_SECRET, USER_ID, V
from tests.channels.providers.servers.instagram import (
    IG_APP_ID,
    IG_APP_SECRET,
    IG_ID,
    V21,
    FakeInstagram,
    FakeInstagramLogin,
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
from tidings.channels.providers.instagram import (
    InstagramProvider,
    InstagramSettings,
    InstagramStandaloneProvider,
)

REDIRECT = "https://tidings.example/integrations/social/instagram"
MEDIA = f"{V}/{IG_ID}/media"
PUBLISH = f"{V}/{IG_ID}/media_publish"
DEFAULT = InstagramSettings()


def jpeg(name: str = "a.jpg", alt: str | None = None) -> MediaItem:
    return image(JPEG, "image/jpeg", alt=alt, name=name)


@pytest.fixture
async def instagram() -> AsyncIterator[FakeInstagram]:
    async with FakeInstagram() as server:
        yield server


def make_provider(http: httpx.AsyncClient, server: FakeInstagram) -> InstagramProvider:
    p = InstagramProvider(
        http,
        ProviderConfig(
            client_id=APP_ID,
            client_secret=APP_SECRET,
            urls={"graph": server.base_url, "web": server.base_url},
        ),
    )
    p.container_poll_interval = 0.01
    return p


@pytest.fixture
def provider(http: httpx.AsyncClient, instagram: FakeInstagram) -> InstagramProvider:
    return make_provider(http, instagram)


async def connect(provider: InstagramProvider, http: httpx.AsyncClient) -> ChannelCredentials:
    start = await provider.authorization_url(REDIRECT, "st", "v")
    callback = await approve(http, start.url, REDIRECT)
    user = credentials_of(await provider.exchange_code(callback["code"], REDIRECT, "v"))
    return credentials_of(await provider.select_choice(user, IG_ID))


def test_registered() -> None:
    assert get_provider("instagram") is InstagramProvider
    assert get_provider("instagram-standalone") is InstagramStandaloneProvider
    assert not InstagramProvider.supports_refresh
    assert InstagramStandaloneProvider.supports_refresh
    assert InstagramProvider.supports_replies and InstagramStandaloneProvider.supports_replies
    # Instagram through Facebook Login uses the Facebook app's credentials.
    config = config_from_env("instagram", {"TIDINGS_FACEBOOK_CLIENT_ID": "fb"})
    assert config.client_id == "fb"
    assert (
        config_from_env("instagram-standalone", {"TIDINGS_FACEBOOK_CLIENT_ID": "fb"}).client_id
        is None
    )


# ---- connect (Facebook Login) -----------------------------------------------------------------


async def test_connect_and_pick_the_account(
    provider: InstagramProvider, instagram: FakeInstagram, http: httpx.AsyncClient
) -> None:
    start = await provider.authorization_url(REDIRECT, "st4te", "v")
    where, query = query_of(start.url)
    assert where == instagram.url(f"{V}/dialog/oauth")
    assert query["scope"] == (
        "instagram_basic,instagram_content_publish,instagram_manage_comments,"
        "pages_show_list,pages_read_engagement,business_management"
    )
    assert query["state"] == "st4te" and query["client_id"] == APP_ID
    callback = await approve(http, start.url, REDIRECT)
    account = await provider.exchange_code(callback["code"], REDIRECT, "v")
    assert account.internal_id == f"instagram-user-{USER_ID}"
    assert account.in_between_steps
    user = credentials_of(account)

    choices = await provider.list_choices(user)
    assert instagram.last("GET", f"{V}/me/accounts").query["fields"] == (
        "id,name,access_token,instagram_business_account{id,username,name,profile_picture_url}"
    )
    # Only page 101 has a linked Instagram account.
    assert [(c.id, c.name, c.username, c.picture) for c in choices] == [
        (IG_ID, "Tidings Cafe IG", "tidings.cafe", "https://cdninstagram.test/cafe.jpg")
    ]
    picked = await provider.select_choice(user, IG_ID)
    assert picked.internal_id == IG_ID
    assert picked.username == "tidings.cafe"
    assert not picked.in_between_steps
    assert picked.tokens.access_token == instagram.page_tokens["101"]
    assert picked.custom_instance_details == {"page_id": "101"}
    with pytest.raises(ConnectError, match="not linked"):
        await provider.select_choice(user, "102")


# ---- publishing -------------------------------------------------------------------------------


async def test_publish_image(
    provider: InstagramProvider, instagram: FakeInstagram, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    settings = provider.parse_settings(
        {"__type": "instagram", "collaborators": [{"label": "friend1"}, "friend2"]}
    )
    result = await provider.publish(
        creds, PostPart(content="Hello IG #cafe", media=[jpeg(alt="latte")]), settings
    )
    create = instagram.last("POST", MEDIA)
    assert create.form == {
        "image_url": "https://media.example/a.jpg",
        "alt_text": "latte",
        "caption": "Hello IG #cafe",
        "collaborators": '["friend1","friend2"]',
        "access_token": creds.access_token,
    }
    container = next(iter(instagram.ig.containers))
    assert instagram.last("GET", f"{V}/{container}").query == {
        "fields": "status_code,status",
        "access_token": creds.access_token,
    }
    assert instagram.last("POST", PUBLISH).form == {
        "creation_id": container,
        "access_token": creds.access_token,
    }
    assert result.id in instagram.ig.media
    assert result.url == f"https://www.instagram.com/p/P{result.id}/"
    assert instagram.ig.media[result.id]["collaborators"] == ["friend1", "friend2"]


async def test_publish_reel_waits_for_processing(http: httpx.AsyncClient) -> None:
    async with FakeInstagram(video_polls=3) as server:
        provider = make_provider(http, server)
        creds = await connect(provider, http)
        await provider.publish(creds, PostPart(content="reel", media=[video()]), DEFAULT)
        create = server.last("POST", MEDIA)
        assert create.form == {
            "media_type": "REELS",
            "video_url": "https://media.example/v.mp4",
            "cover_url": "https://media.example/thumb.jpg",
            "share_to_feed": "true",
            "caption": "reel",
            "access_token": creds.access_token,
        }
        container = next(iter(server.ig.containers))
        assert len(server.calls("GET", f"{V}/{container}")) == 4
        assert server.last("POST", PUBLISH).form["creation_id"] == container


async def test_publish_carousel(
    provider: InstagramProvider, instagram: FakeInstagram, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    part = PostPart(content="carousel", media=[jpeg(), jpeg("b.jpg"), video()])
    result = await provider.publish(creds, part, DEFAULT)
    creates = instagram.calls("POST", MEDIA)
    token = creds.access_token
    assert [c.form for c in creates[:3]] == [
        {
            "image_url": "https://media.example/a.jpg",
            "is_carousel_item": "true",
            "access_token": token,
        },
        {
            "image_url": "https://media.example/b.jpg",
            "is_carousel_item": "true",
            "access_token": token,
        },
        {
            "media_type": "VIDEO",
            "video_url": "https://media.example/v.mp4",
            "is_carousel_item": "true",
            "access_token": token,
        },
    ]
    children = list(instagram.ig.containers)[:3]
    assert creates[3].form == {
        "media_type": "CAROUSEL",
        "children": ",".join(children),
        "caption": "carousel",
        "access_token": token,
    }
    assert len(instagram.ig.media[result.id]["children"]) == 3


async def test_publish_story(
    provider: InstagramProvider, instagram: FakeInstagram, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    story = provider.parse_settings({"post_type": "story"})
    await provider.publish(creds, PostPart(content="ignored", media=[jpeg()]), story)
    assert instagram.last("POST", MEDIA).form == {
        "media_type": "STORIES",
        "image_url": "https://media.example/a.jpg",
        "access_token": creds.access_token,
    }


async def test_publish_without_media_is_bad_body(
    provider: InstagramProvider, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    with pytest.raises(BadBodyError, match="at least one photo or video"):
        await provider.publish(creds, PostPart(content="text"), DEFAULT)


async def test_reply_chain_of_comments(
    provider: InstagramProvider, instagram: FakeInstagram, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    first = await provider.publish(creds, PostPart(content="1/4", media=[jpeg()]), DEFAULT)
    second = await provider.reply(creds, first, PostPart(content="2/4"), DEFAULT)
    third = await provider.reply(creds, second, PostPart(content="3/4"), DEFAULT)
    assert instagram.last("POST", f"{V}/{first.id}/comments").form == {
        "message": "2/4",
        "access_token": creds.access_token,
    }
    assert instagram.last("POST", f"{V}/{second.id}/replies").form == {
        "message": "3/4",
        "access_token": creds.access_token,
    }
    comments = instagram.ig.comments
    assert comments[second.id] == {"media": first.id, "parent_id": None, "text": "2/4"}
    assert comments[third.id] == {"media": first.id, "parent_id": second.id, "text": "3/4"}
    # Instagram nests one level: a fourth part joins the same comment thread.
    fourth = await provider.reply(creds, third, PostPart(content="4/4"), DEFAULT)
    assert comments[fourth.id]["parent_id"] == second.id
    # With nothing stored but ids, the provider asks what the parent is.
    fifth = await provider.reply(creds, PublishResult(id=third.id), PostPart(content="5"), DEFAULT)
    assert comments[fifth.id]["parent_id"] == second.id
    sixth = await provider.reply(creds, PublishResult(id=first.id), PostPart(content="6"), DEFAULT)
    assert comments[sixth.id]["parent_id"] is None


# ---- errors -----------------------------------------------------------------------------------


async def test_invalid_token_is_refresh_error(provider: InstagramProvider) -> None:
    creds = ChannelCredentials(access_token="garbage", internal_id=IG_ID)
    with pytest.raises(RefreshTokenError, match="Cannot parse access token") as info:
        await provider.publish(creds, PostPart(content="x", media=[jpeg()]), DEFAULT)
    assert info.value.status_code == 401


async def test_revoked_is_disconnect(
    provider: InstagramProvider, instagram: FakeInstagram, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    instagram.book.revoke_all()
    with pytest.raises(DisconnectedError, match="has not authorized application"):
        await provider.publish(creds, PostPart(content="x", media=[jpeg()]), DEFAULT)


async def test_rate_limits_are_retryable(
    provider: InstagramProvider, instagram: FakeInstagram, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    instagram.fail(
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
        headers={"Retry-After": "120"},
    )
    with pytest.raises(RetryableError, match="request limit reached") as info:
        await provider.publish(creds, PostPart(content="x", media=[jpeg()]), DEFAULT)
    assert info.value.retry_after == 120
    # The 25-posts-a-day publishing quota.
    instagram.fail(
        "POST",
        PUBLISH,
        400,
        {
            "error": {
                "message": "The user has reached the daily posting limit",
                "code": 9,
                "error_subcode": 2207042,
            }
        },
    )
    with pytest.raises(RetryableError, match="daily posting limit") as info:
        await provider.publish(creds, PostPart(content="x", media=[jpeg()]), DEFAULT)
    assert info.value.retry_after == 3600


async def test_server_error_is_retryable(
    provider: InstagramProvider, instagram: FakeInstagram, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    instagram.fail("POST", PUBLISH, 502, text="Bad Gateway")
    with pytest.raises(RetryableError) as info:
        await provider.publish(creds, PostPart(content="x", media=[jpeg()]), DEFAULT)
    assert info.value.status_code == 502


async def test_rejected_content_is_bad_body(
    provider: InstagramProvider, instagram: FakeInstagram, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    with pytest.raises(BadBodyError, match="caption is too long") as info:
        await provider.publish(creds, PostPart(content="y" * 2201, media=[jpeg()]), DEFAULT)
    assert info.value.status_code == 400
    with pytest.raises(BadBodyError, match="Only photo or video"):
        await provider.publish(creds, PostPart(content="png", media=[image()]), DEFAULT)
    instagram.ig.processing_error = "Error: the video's aspect ratio is not supported"
    with pytest.raises(BadBodyError, match="aspect ratio"):
        await provider.publish(creds, PostPart(content="v", media=[video()]), DEFAULT)


async def test_hang_is_unknown_outcome(
    provider: InstagramProvider, instagram: FakeInstagram, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    instagram.hang("POST", MEDIA)
    with pytest.raises(RetryableError):  # a lost container is harmless: retry
        await provider.publish(creds, PostPart(content="x", media=[jpeg()]), DEFAULT)
    instagram.hang("POST", PUBLISH)
    started = time.monotonic()
    with pytest.raises(UnknownOutcomeError):
        await provider.publish(creds, PostPart(content="maybe", media=[jpeg()]), DEFAULT)
    assert time.monotonic() - started < 3


async def test_find_published_after_a_lost_answer(
    provider: InstagramProvider, instagram: FakeInstagram, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, http)
    since = datetime.now(UTC)
    instagram.hang("POST", PUBLISH, process=True)
    with pytest.raises(UnknownOutcomeError):
        await provider.publish(creds, PostPart(content="lost", media=[jpeg()]), DEFAULT)
    [sent] = list(instagram.ig.media)
    part = PostPart(content="lost", media=[jpeg()])
    found = await provider.find_published(creds, part, DEFAULT, parent=None, since=since)
    assert instagram.last("GET", f"{V}/{IG_ID}/media").query == {
        "fields": "id,caption,timestamp,permalink",
        "limit": "25",
        "access_token": creds.access_token,
    }
    assert found is not None and found.id == sent
    assert found.url == f"https://www.instagram.com/p/P{sent}/"
    other = PostPart(content="other", media=[jpeg()])
    assert await provider.find_published(creds, other, DEFAULT, parent=None, since=since) is None
    story = provider.parse_settings({"post_type": "story"})
    with pytest.raises(ProviderError, match="cannot check"):
        await provider.find_published(creds, part, story, parent=None, since=since)
    # Comments: the account's own, in the right place of the thread.
    post = PublishResult(id=sent, data={"kind": "media"})
    instagram.ig.add_comment(sent, "hi", username="a.fan")
    assert (
        await provider.find_published(
            creds, PostPart(content="hi"), DEFAULT, parent=post, since=since
        )
        is None
    )
    mine = instagram.ig.add_comment(sent, "hi", username="tidings.cafe")
    comment = await provider.find_published(
        creds, PostPart(content="hi"), DEFAULT, parent=post, since=since
    )
    assert comment is not None and comment.id == mine
    assert comment.data == {"kind": "comment", "root": mine}
    reply = instagram.ig.add_comment(sent, "again", username="tidings.cafe", parent=mine)
    found_reply = await provider.find_published(
        creds, PostPart(content="again"), DEFAULT, parent=comment, since=since
    )
    assert (
        instagram.last("GET", f"{V}/{mine}/replies").query["fields"] == "id,text,timestamp,username"
    )
    assert found_reply is not None and found_reply.id == reply


# ---- validation -------------------------------------------------------------------------------


def test_length_boundary(provider: InstagramProvider) -> None:
    assert provider.validate([PostPart(content="x" * 2200, media=[jpeg()])]) == []
    too_long = provider.validate([PostPart(content="x" * 2201, media=[jpeg()])])
    assert [v.code for v in too_long] == ["too_long"]
    tags = " ".join(f"#t{i}" for i in range(30))
    assert provider.validate([PostPart(content=tags, media=[jpeg()])]) == []
    assert [
        v.code for v in provider.validate([PostPart(content=tags + " #one", media=[jpeg()])])
    ] == ["too_many_hashtags"]
    mentions = " ".join(f"@u{i}" for i in range(21))
    assert [v.code for v in provider.validate([PostPart(content=mentions, media=[jpeg()])])] == [
        "too_many_mentions"
    ]


def test_media_rules(provider: InstagramProvider) -> None:
    def codes(parts: list[PostPart], settings: dict | None = None) -> list[str]:  # type: ignore[type-arg]
        return [v.code for v in provider.validate(parts, settings)]

    def part(media: list[MediaItem]) -> PostPart:
        return PostPart(content="x", media=media)

    assert codes([part([])]) == ["media_required"]
    assert codes([part([jpeg()])]) == []
    assert codes([part([jpeg()] * 5 + [video()] * 5)]) == []
    assert codes([part([jpeg()] * 6 + [video()] * 5)]) == ["too_many_media"]
    assert codes([part([image()])]) == ["media_type"]  # PNG
    assert codes([part([jpeg()]), PostPart(content="comment")]) == []
    assert codes([part([jpeg()]), part([jpeg()])]) == ["reply_media"]
    assert codes([part([jpeg()])], {"post_type": "story"}) == []
    assert codes([part([jpeg(), jpeg()])], {"post_type": "story"}) == ["story_media"]
    assert codes([part([jpeg()])], {"collaborators": ["a", "b", "c", "d"]}) == ["settings"]


# ---- instagram-standalone (Instagram Login) ---------------------------------------------------


@pytest.fixture
async def ig_login() -> AsyncIterator[FakeInstagramLogin]:
    async with FakeInstagramLogin() as server:
        yield server


def standalone(http: httpx.AsyncClient, server: FakeInstagramLogin) -> InstagramStandaloneProvider:
    p = InstagramStandaloneProvider(
        http,
        ProviderConfig(
            client_id=IG_APP_ID,
            client_secret=IG_APP_SECRET,
            urls={"graph": server.base_url, "api": server.base_url, "web": server.base_url},
        ),
    )
    p.container_poll_interval = 0.01
    return p


async def test_standalone_connect_refresh_publish(
    http: httpx.AsyncClient, ig_login: FakeInstagramLogin
) -> None:
    provider = standalone(http, ig_login)
    start = await provider.authorization_url(REDIRECT, "st4te", "v")
    where, query = query_of(start.url)
    assert where == ig_login.url("/oauth/authorize")
    assert query == {
        "client_id": IG_APP_ID,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "instagram_business_basic,instagram_business_content_publish,"
        "instagram_business_manage_comments",
        "state": "st4te",
    }
    callback = await approve(http, start.url, REDIRECT)
    account = await provider.exchange_code(callback["code"], REDIRECT, "v")
    assert ig_login.last("POST", "/oauth/access_token").form == {
        "client_id": IG_APP_ID,
        "client_secret": IG_APP_SECRET,
        "grant_type": "authorization_code",
        "redirect_uri": REDIRECT,
        "code": callback["code"],
    }
    exchange = ig_login.last("GET", "/access_token")
    assert exchange.query["grant_type"] == "ig_exchange_token"
    assert exchange.query["client_secret"] == IG_APP_SECRET
    assert ig_login.last("GET", f"{V21}/me").query == {
        "fields": "user_id,username,name,profile_picture_url",
        "access_token": account.tokens.access_token,
    }
    assert account.internal_id == IG_ID
    assert account.username == "tidings.cafe"
    assert not account.in_between_steps
    assert account.tokens.access_token.startswith("long-")
    assert account.tokens.expires_at is not None

    creds = credentials_of(account)
    tokens = await provider.refresh(creds)
    assert ig_login.last("GET", "/refresh_access_token").query == {
        "grant_type": "ig_refresh_token",
        "access_token": creds.access_token,
    }
    assert tokens.refresh_token is None and tokens.access_token != creds.access_token
    creds.access_token = tokens.access_token

    first = await provider.publish(creds, PostPart(content="solo", media=[jpeg()]), DEFAULT)
    assert ig_login.last("POST", f"{V21}/{IG_ID}/media").form == {
        "image_url": "https://media.example/a.jpg",
        "caption": "solo",
        "access_token": creds.access_token,
    }
    assert first.url == f"https://www.instagram.com/p/P{first.id}/"
    second = await provider.reply(creds, first, PostPart(content="c"), DEFAULT)
    third = await provider.reply(creds, second, PostPart(content="r"), DEFAULT)
    assert ig_login.ig.comments[third.id]["parent_id"] == second.id
    since = datetime.now(UTC) - timedelta(minutes=1)
    again = await provider.find_published(
        creds, PostPart(content="solo", media=[jpeg()]), DEFAULT, parent=None, since=since
    )
    assert ig_login.last("GET", f"{V21}/{IG_ID}/media").query["access_token"] == creds.access_token
    assert again is not None and again.id == first.id

    ig_login.book.revoke_all()
    with pytest.raises(DisconnectedError, match="not authorized application"):
        await provider.refresh(creds)


async def test_standalone_flat_token_answer_and_bad_code(http: httpx.AsyncClient) -> None:
    async with FakeInstagramLogin(flat_token_answer=True) as server:
        provider = standalone(http, server)
        start = await provider.authorization_url(REDIRECT, "s", "v")
        callback = await approve(http, start.url, REDIRECT)
        account = await provider.exchange_code(callback["code"], REDIRECT, "v")
        assert account.internal_id == IG_ID
        with pytest.raises(ConnectError, match="Invalid authorization code"):
            await provider.exchange_code("nope", REDIRECT, "v")

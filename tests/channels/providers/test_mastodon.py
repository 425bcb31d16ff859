from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.channels.providers.helpers import JPEG, MP4, PNG, image, video
from tests.channels.providers.servers.mastodon import FakeMastodon
from tidings.channels.providers import (
    BadBodyError,
    ChannelCredentials,
    ConnectError,
    DisconnectedError,
    PostPart,
    ProviderConfig,
    RefreshTokenError,
    RetryableError,
    UnknownOutcomeError,
    code_challenge,
    get_provider,
    new_code_verifier,
)
from tidings.channels.providers.mastodon import (
    MastodonProvider,
    MastodonSettings,
    mastodon_length,
)

STATUSES = "/api/v1/statuses"
REDIRECT = "https://tidings.example/integrations/social/mastodon"
DEFAULT = MastodonSettings()


@pytest.fixture
async def instance() -> AsyncIterator[FakeMastodon]:
    async with FakeMastodon() as server:
        yield server


@pytest.fixture
def provider(http: httpx.AsyncClient) -> MastodonProvider:
    p = MastodonProvider(http)
    p.media_poll_interval = 0.01
    return p


async def approve(http: httpx.AsyncClient, url: str) -> dict[str, str]:
    """Play the user's browser: open the authorize URL and read the redirect."""
    response = await http.get(url)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT)
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def connect(
    provider: MastodonProvider, instance: FakeMastodon, http: httpx.AsyncClient
) -> ChannelCredentials:
    verifier = new_code_verifier()
    start = await provider.authorization_url(
        REDIRECT, "st4te", verifier, custom_instance={"instance_url": instance.base_url}
    )
    callback = await approve(http, start.url)
    account = await provider.exchange_code(
        callback["code"], REDIRECT, verifier, start.custom_instance_details
    )
    return ChannelCredentials(
        access_token=account.tokens.access_token,
        refresh_token=account.tokens.refresh_token,
        internal_id=account.internal_id,
        custom_instance_details=account.custom_instance_details,
        profile=account.username,
        additional_settings=account.additional_settings,
    )


def test_registered() -> None:
    assert get_provider("mastodon") is MastodonProvider
    assert MastodonProvider.connect_kind == "oauth"
    assert [f.name for f in MastodonProvider.fields] == ["instance_url"]


# ---- connect --------------------------------------------------------------------------------


async def test_oauth_connect(
    provider: MastodonProvider, instance: FakeMastodon, http: httpx.AsyncClient
) -> None:
    verifier = new_code_verifier()
    start = await provider.authorization_url(
        REDIRECT, "st4te", verifier, custom_instance={"instance_url": instance.base_url + "/"}
    )
    register = instance.last("POST", "/api/v1/apps")
    assert register.json == {
        "client_name": "Tidings",
        "redirect_uris": REDIRECT,
        "scopes": "read:accounts write:statuses write:media",
        "website": "https://github.com/tidings",
    }
    details = start.custom_instance_details
    assert details is not None
    client = instance.oauth.clients[details["client_id"]]
    assert details == {
        "instance_url": instance.base_url,
        "client_id": client.client_id,
        "client_secret": client.client_secret,
    }
    url = urlsplit(start.url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == instance.url("/oauth/authorize")
    assert parse_qs(url.query) == {
        "response_type": ["code"],
        "client_id": [client.client_id],
        "redirect_uri": [REDIRECT],
        "scope": ["read:accounts write:statuses write:media"],
        "state": ["st4te"],
        "code_challenge": [code_challenge(verifier)],
        "code_challenge_method": ["S256"],
    }

    callback = await approve(http, start.url)
    assert callback["state"] == "st4te"
    account = await provider.exchange_code(callback["code"], REDIRECT, verifier, details)

    token_call = instance.last("POST", "/oauth/token")
    assert token_call.form == {
        "grant_type": "authorization_code",
        "code": callback["code"],
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
        "scope": "read:accounts write:statuses write:media",
    }
    me = instance.last("GET", "/api/v1/accounts/verify_credentials")
    assert me.auth == f"Bearer {account.tokens.access_token}"
    host = urlsplit(instance.base_url).netloc
    assert account.internal_id == f"109@{host}"
    assert account.name == "Alice M"
    assert account.username == f"alice@{host}"
    assert account.picture == instance.url("/avatars/alice.png")
    assert account.tokens.refresh_token is None
    assert account.tokens.expires_at is None
    assert account.custom_instance_details == details
    assert account.additional_settings == {
        "max_characters": 500,
        "max_media_attachments": 4,
        "characters_reserved_per_url": 23,
    }


async def test_configured_app_skips_registration(
    http: httpx.AsyncClient, instance: FakeMastodon
) -> None:
    instance.oauth.add_client("preset-id", "preset-secret", [REDIRECT])
    provider = MastodonProvider(
        http,
        ProviderConfig(
            client_id="preset-id",
            client_secret="preset-secret",
            urls={"instance": instance.base_url},
        ),
    )
    start = await provider.authorization_url(REDIRECT, "s", new_code_verifier())
    assert instance.calls("POST", "/api/v1/apps") == []
    assert parse_qs(urlsplit(start.url).query)["client_id"] == ["preset-id"]


async def test_exchange_with_wrong_verifier(
    provider: MastodonProvider, instance: FakeMastodon, http: httpx.AsyncClient
) -> None:
    start = await provider.authorization_url(
        REDIRECT, "s", new_code_verifier(), custom_instance={"instance_url": instance.base_url}
    )
    callback = await approve(http, start.url)
    with pytest.raises(ConnectError, match="PKCE verification failed"):
        await provider.exchange_code(
            callback["code"], REDIRECT, new_code_verifier(), start.custom_instance_details
        )


async def test_bad_instance_url(provider: MastodonProvider) -> None:
    with pytest.raises(ConnectError, match="instance URL"):
        await provider.authorization_url(
            REDIRECT, "s", new_code_verifier(), custom_instance={"instance_url": "ftp://x"}
        )


# ---- refresh --------------------------------------------------------------------------------


async def test_refresh_without_refresh_token_is_disconnect(
    provider: MastodonProvider, instance: FakeMastodon, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, instance, http)
    with pytest.raises(DisconnectedError, match="reconnect"):
        await provider.refresh(creds)
    assert instance.calls("POST", "/oauth/token") == [instance.last("POST", "/oauth/token")]


async def test_refresh_when_the_server_issued_one(
    provider: MastodonProvider, http: httpx.AsyncClient
) -> None:
    # Servers that do issue refresh tokens here do not rotate them: no new refresh token.
    async with FakeMastodon(issue_refresh=True) as server:
        server.oauth.rotate_refresh = False
        creds = await connect(provider, server, http)
        assert creds.refresh_token
        tokens = await provider.refresh(creds)
        call = server.last("POST", "/oauth/token")
        details = creds.custom_instance_details or {}
        assert call.form == {
            "grant_type": "refresh_token",
            "refresh_token": creds.refresh_token,
            "client_id": details["client_id"],
            "client_secret": details["client_secret"],
        }
        assert tokens.access_token != creds.access_token
        assert tokens.refresh_token is None  # keep the stored one
        creds.access_token = tokens.access_token
        await provider.publish(creds, PostPart(content="after refresh"), DEFAULT)


# ---- publishing -----------------------------------------------------------------------------


async def test_publish_text(
    provider: MastodonProvider, instance: FakeMastodon, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, instance, http)
    result = await provider.publish(
        creds,
        PostPart(content="Hello fediverse", idempotency_key="post-42"),
        provider.parse_settings(
            {"__type": "mastodon", "visibility": "unlisted", "spoiler_text": "cw", "language": "en"}
        ),
    )
    call = instance.last("POST", STATUSES)
    assert call.auth == f"Bearer {creds.access_token}"
    assert call.headers["idempotency-key"] == "post-42"
    assert call.json == {
        "status": "Hello fediverse",
        "visibility": "unlisted",
        "spoiler_text": "cw",
        "language": "en",
    }
    assert result.id in instance.statuses
    assert result.url == instance.url(f"/@alice/{result.id}")


async def test_retry_with_same_key_does_not_duplicate(
    provider: MastodonProvider, instance: FakeMastodon, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, instance, http)
    first = await provider.publish(creds, PostPart(content="once"), DEFAULT)
    again = await provider.publish(creds, PostPart(content="once"), DEFAULT)
    assert first.id == again.id
    assert len(instance.statuses) == 1
    keys = {c.headers["idempotency-key"] for c in instance.calls("POST", STATUSES)}
    assert len(keys) == 1


async def test_publish_with_images(
    provider: MastodonProvider, instance: FakeMastodon, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, instance, http)
    part = PostPart(
        content="pics", media=[image(PNG, alt="a cat"), image(JPEG, "image/jpeg", name="b.jpg")]
    )
    await provider.publish(creds, part, DEFAULT)
    uploads = instance.calls("POST", "/api/v2/media")
    assert [u.files["file"].data for u in uploads] == [PNG, JPEG]
    assert [u.files["file"].content_type for u in uploads] == ["image/png", "image/jpeg"]
    assert [u.files["file"].filename for u in uploads] == ["a.png", "b.jpg"]
    assert uploads[0].form == {"description": "a cat"}
    assert uploads[1].form == {}
    assert all(u.auth == f"Bearer {creds.access_token}" for u in uploads)
    ids = list(instance.media)
    assert instance.last("POST", STATUSES).json["media_ids"] == ids
    assert instance.calls("GET", "/api/v1/media/{id}") == []  # images were ready at once


async def test_publish_video_waits_for_processing(
    provider: MastodonProvider, http: httpx.AsyncClient
) -> None:
    async with FakeMastodon(media_processing_polls=2) as server:
        creds = await connect(provider, server, http)
        await provider.publish(creds, PostPart(content="clip", media=[video()]), DEFAULT)
        upload = server.last("POST", "/api/v2/media")
        assert upload.files["file"].data == MP4
        assert upload.files["thumbnail"].data == JPEG
        media_id = next(iter(server.media))
        polls = server.calls("GET", "/api/v1/media/{id}")
        assert [p.path for p in polls] == [f"/api/v1/media/{media_id}"] * 3
        assert server.last("POST", STATUSES).json["media_ids"] == [media_id]


async def test_reply_chain(
    provider: MastodonProvider, instance: FakeMastodon, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, instance, http)
    first = await provider.publish(creds, PostPart(content="1/3"), DEFAULT)
    second = await provider.reply(creds, first, PostPart(content="2/3"), DEFAULT)
    third = await provider.reply(creds, second, PostPart(content="3/3"), DEFAULT)
    bodies = [c.json for c in instance.calls("POST", STATUSES)]
    assert [b.get("in_reply_to_id") for b in bodies] == [None, first.id, second.id]
    assert instance.statuses[third.id]["in_reply_to_id"] == second.id


# ---- errors ---------------------------------------------------------------------------------


async def test_invalid_token_is_refresh_error(
    provider: MastodonProvider, instance: FakeMastodon, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, instance, http)
    instance.oauth.expire_all()
    with pytest.raises(RefreshTokenError, match="access token is invalid") as info:
        await provider.publish(creds, PostPart(content="x"), DEFAULT)
    assert info.value.status_code == 401


async def test_revoked_token_is_disconnect(
    provider: MastodonProvider, instance: FakeMastodon, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, instance, http)
    instance.oauth.revoke_all()
    with pytest.raises(DisconnectedError, match="revoked"):
        await provider.publish(creds, PostPart(content="x"), DEFAULT)


async def test_suspended_is_disconnect(
    provider: MastodonProvider, instance: FakeMastodon, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, instance, http)
    instance.suspended = True
    with pytest.raises(DisconnectedError, match="login is currently disabled"):
        await provider.publish(creds, PostPart(content="x"), DEFAULT)


async def test_rate_limited(
    provider: MastodonProvider, instance: FakeMastodon, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, instance, http)
    instance.fail(
        "POST", STATUSES, 429, {"error": "Too many requests"}, headers={"Retry-After": "7"}
    )
    with pytest.raises(RetryableError) as info:
        await provider.publish(creds, PostPart(content="x"), DEFAULT)
    assert info.value.retry_after == 7
    reset = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 120))
    instance.fail(
        "POST", STATUSES, 429, {"error": "Too many requests"}, headers={"X-RateLimit-Reset": reset}
    )
    with pytest.raises(RetryableError) as info:
        await provider.publish(creds, PostPart(content="x"), DEFAULT)
    assert info.value.retry_after is not None and 110 < info.value.retry_after <= 121


async def test_server_error_is_retryable(
    provider: MastodonProvider, instance: FakeMastodon, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, instance, http)
    instance.fail("POST", STATUSES, 503, text="<html>maintenance</html>")
    with pytest.raises(RetryableError) as info:
        await provider.publish(creds, PostPart(content="x"), DEFAULT)
    assert info.value.status_code == 503
    assert info.value.excerpt == "<html>maintenance</html>"


async def test_rejected_content_is_bad_body(
    provider: MastodonProvider, instance: FakeMastodon, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, instance, http)
    with pytest.raises(BadBodyError, match="Text character limit of 500 exceeded") as info:
        await provider.publish(creds, PostPart(content="y" * 501), DEFAULT)
    assert info.value.status_code == 422


async def test_hang_is_unknown_outcome(
    provider: MastodonProvider, instance: FakeMastodon, http: httpx.AsyncClient
) -> None:
    creds = await connect(provider, instance, http)
    instance.hang("POST", STATUSES)
    started = time.monotonic()
    with pytest.raises(UnknownOutcomeError):
        await provider.publish(creds, PostPart(content="maybe"), DEFAULT)
    assert time.monotonic() - started < 3
    assert instance.last("POST", STATUSES).json["status"] == "maybe"


async def test_find_published(
    provider: MastodonProvider, instance: FakeMastodon, http: httpx.AsyncClient
) -> None:
    assert provider.can_check_published
    creds = await connect(provider, instance, http)
    since = datetime.now(UTC)
    part = PostPart(content="<b>not html</b> & more")
    assert await provider.find_published(creds, part, DEFAULT, parent=None, since=since) is None
    instance.hang("POST", STATUSES, process=True)
    with pytest.raises(UnknownOutcomeError):
        await provider.publish(creds, part, DEFAULT)
    found = await provider.find_published(creds, part, DEFAULT, parent=None, since=since)
    assert found is not None and found.id in instance.statuses
    assert found.url == instance.url(f"/@alice/{found.id}")
    listing = instance.last("GET", "/api/v1/accounts/{id}/statuses")
    assert listing.path == "/api/v1/accounts/109/statuses"
    assert listing.auth == f"Bearer {creds.access_token}"
    assert instance.last("GET", "/api/v1/statuses/{id}/source").path.endswith(f"/{found.id}/source")
    reply = PostPart(content="reply")
    instance.hang("POST", STATUSES, process=True)
    with pytest.raises(UnknownOutcomeError):
        await provider.reply(creds, found, reply, DEFAULT)
    assert await provider.find_published(creds, reply, DEFAULT, parent=found, since=since)
    assert await provider.find_published(creds, reply, DEFAULT, parent=None, since=since) is None
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert await provider.find_published(creds, part, DEFAULT, parent=None, since=later) is None


# ---- validation -----------------------------------------------------------------------------


def test_length_counting() -> None:
    assert mastodon_length("see https://example.com/" + "a" * 100) == 4 + 23
    assert mastodon_length("hi @alice@mastodon.social") == len("hi @alice")
    assert mastodon_length("👨‍👩‍👧‍👦 e\u0301") == 3


def test_length_boundary(provider: MastodonProvider) -> None:
    ok = "x" * 476 + " https://example.com/" + "p" * 300  # 476 + 1 + 23 = 500
    assert provider.validate([PostPart(content=ok)]) == []
    violations = provider.validate([PostPart(content="x" + ok)])
    assert [(v.code, v.part_index) for v in violations] == [("too_long", 0)]
    # The instance's own limit, learnt at connect, wins.
    creds = ChannelCredentials(
        access_token="t", internal_id="1@x", additional_settings={"max_characters": 1000}
    )
    assert provider.validate([PostPart(content="x" * 1000)], credentials=creds) == []
    assert len(provider.validate([PostPart(content="x" * 1001)], credentials=creds)) == 1
    # The content warning counts too.
    cw = {"spoiler_text": "spoiler"}
    assert provider.validate([PostPart(content="x" * 493)], cw) == []
    assert [v.code for v in provider.validate([PostPart(content="x" * 494)], cw)] == ["too_long"]


def test_media_rules(provider: MastodonProvider) -> None:
    def codes(media: list) -> list[str]:  # type: ignore[type-arg]
        return [v.code for v in provider.validate([PostPart(content="x", media=media)])]

    assert codes([image()] * 4) == []
    assert codes([image()] * 5) == ["too_many_images"]
    assert codes([video()]) == []
    assert codes([video(), image()]) == ["media_mixed"]
    assert codes([video(), video()]) == ["too_many_videos"]
    assert [v.code for v in provider.validate([PostPart(content="x")], {"visibility": "x"})] == [
        "settings"
    ]

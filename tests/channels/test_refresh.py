"""provider_for / credentials_of / refresh_channel / mark_refresh_needed / channel_problem."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.channels.factories import make_channel
from tests.channels.providers.servers.bluesky import FakeBluesky
from tests.channels.providers.servers.mastodon import FakeMastodon
from tests.conftest import Tenant, make_tenant
from tidings.channels.models import Integration
from tidings.channels.providers import (
    ConnectError,
    DisconnectedError,
    PostPart,
    RetryableError,
)
from tidings.channels.providers.bluesky import BlueskyProvider
from tidings.channels.providers.mastodon import MastodonProvider
from tidings.channels.service import (
    channel_problem,
    credentials_of,
    provider_for,
    refresh_channel,
)
from tidings.config import get_settings
from tidings.db import Database
from tidings.notifications.models import Notifications
from tidings.posts.models import Errors


@pytest.fixture
async def mastodon(allow_private: None) -> AsyncIterator[FakeMastodon]:
    # The instance is a user-given host on 127.0.0.1: private addresses must be allowed.
    async with FakeMastodon(issue_refresh=True) as server:
        server.oauth.add_client("cid-1", "csecret-1", [])
        yield server


async def mastodon_channel(
    session: AsyncSession, org_id: str, server: FakeMastodon, **kw: object
) -> Integration:
    """A Mastodon channel holding real tokens of the fake instance."""
    issued = server.oauth.issue("109", "", refresh=True)
    return await make_channel(
        session,
        org_id,
        provider="mastodon",
        internal_id="109@fake",
        name="Alice M",
        token=issued["access_token"],
        refresh_token=issued["refresh_token"],
        expires_at=datetime.now(UTC) + timedelta(minutes=5),
        custom={
            "instance_url": server.base_url,
            "client_id": "cid-1",
            "client_secret": "csecret-1",
        },
        **kw,
    )


# ---- provider_for / credentials_of -----------------------------------------------------------


async def test_provider_for_reads_env_and_guards_urls(
    db: AsyncSession, tenant: Tenant, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIDINGS_BLUESKY_SERVICE_URL", "http://127.0.0.1:9/pds")
    channel = await make_channel(db, tenant.org_id, provider="bluesky")
    provider = provider_for(channel, http)
    assert isinstance(provider, BlueskyProvider)
    assert provider.http is http
    assert provider.config.url("service") == "http://127.0.0.1:9/pds"
    # The core guard refuses loopback addresses unless TIDINGS_ALLOW_PRIVATE_URLS is set.
    with pytest.raises(ConnectError, match="cannot be used"):
        await provider.check_user_url("http://127.0.0.1:9/pds")
    await provider.check_user_url("http://93.184.215.14/")


async def test_provider_for_guard_allows_private_when_configured(
    db: AsyncSession, tenant: Tenant, allow_private: None
) -> None:
    channel = await make_channel(db, tenant.org_id, provider="mastodon")
    provider = provider_for(channel)
    assert isinstance(provider, MastodonProvider)
    await provider.check_user_url("http://127.0.0.1:9/")


async def test_credentials_of_decrypts_and_parses(db: AsyncSession, tenant: Tenant) -> None:
    channel = await make_channel(
        db,
        tenant.org_id,
        provider="mastodon",
        internal_id="42@example",
        token="secret-access",
        refresh_token="secret-refresh",
        expires_at=datetime(2030, 1, 1, tzinfo=UTC),
        custom={"instance_url": "https://example.social", "client_id": "c"},
        profile="alice@example.social",
        additional_settings=[
            {"key": "max_characters", "title": "max_characters", "value": 1000},
            {"title": "Post as thread", "type": "checkbox", "value": True},
        ],
    )
    creds = credentials_of(channel)
    assert creds.access_token == "secret-access"
    assert creds.refresh_token == "secret-refresh"
    assert creds.internal_id == "42@example"
    assert creds.token_expires_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert creds.custom_instance_details == {
        "instance_url": "https://example.social",
        "client_id": "c",
    }
    assert creds.profile == "alice@example.social"
    assert creds.additional_settings == {"max_characters": 1000, "Post as thread": True}
    # At rest, tokens and instance details are not readable.
    raw = (
        await db.execute(
            text(
                "SELECT token, refresh_token, custom_instance_details FROM integration "
                "WHERE id = :id"
            ),
            {"id": channel.id},
        )
    ).one()
    assert "secret-access" not in raw[0]
    assert "secret-refresh" not in raw[1]
    assert "example.social" not in raw[2]


def test_channel_problem() -> None:
    channel = Integration(name="Alice", disabled=False, refresh_needed=False)
    channel.in_between_steps = False
    assert channel_problem(channel) is None
    channel.in_between_steps = True
    assert "pick" in (channel_problem(channel) or "")
    channel.refresh_needed = True
    assert "reconnect" in (channel_problem(channel) or "")
    channel.disabled = True
    assert "disabled" in (channel_problem(channel) or "")
    channel.deleted_at = datetime.now(UTC)
    assert "deleted" in (channel_problem(channel) or "")


# ---- refresh -----------------------------------------------------------------------------------


async def test_refresh_stores_new_tokens(
    db: AsyncSession, tenant: Tenant, mastodon: FakeMastodon, http: httpx.AsyncClient
) -> None:
    channel = await mastodon_channel(db, tenant.org_id, mastodon)
    old_refresh = channel.refresh_token
    mastodon.oauth.expires_in = 3600
    creds = await refresh_channel(db, channel, http=http)
    call = mastodon.last("POST", "/oauth/token")
    assert call.form == {
        "grant_type": "refresh_token",
        "refresh_token": old_refresh,
        "client_id": "cid-1",
        "client_secret": "csecret-1",
    }
    assert creds.access_token in mastodon.oauth.access
    assert creds.refresh_token != old_refresh and creds.refresh_token in mastodon.oauth.refresh
    stored = (
        await db.execute(
            select(Integration)
            .where(Integration.id == channel.id)
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    assert stored.token == creds.access_token
    assert stored.refresh_token == creds.refresh_token
    assert stored.token_expiration is not None
    remaining = stored.token_expiration - datetime.now(UTC)
    assert timedelta(minutes=59) < remaining <= timedelta(hours=1)
    assert stored.updated_at is not None  # loaded, readable without I/O


async def test_refresh_keeps_old_refresh_token_when_none_sent(
    db: AsyncSession, tenant: Tenant, mastodon: FakeMastodon, http: httpx.AsyncClient
) -> None:
    channel = await mastodon_channel(db, tenant.org_id, mastodon)
    old_refresh = channel.refresh_token
    old_access = channel.token
    mastodon.oauth.rotate_refresh = False  # answers with an access token only
    creds = await refresh_channel(db, channel, http=http)
    assert old_refresh in mastodon.oauth.refresh  # the platform kept it valid and sent none
    assert creds.access_token != old_access
    assert creds.refresh_token == old_refresh
    assert channel.refresh_token == old_refresh
    assert channel.token == creds.access_token
    assert not channel.refresh_needed


async def test_a_user_given_instance_is_guarded_at_every_request(
    db: AsyncSession,
    tenant: Tenant,
    mastodon: FakeMastodon,
    http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    channel = await mastodon_channel(db, tenant.org_id, mastodon)
    # Months after connecting, the instance's name resolves to a private address (its DNS
    # changed, or was made to): refreshing and publishing must not reach it.
    monkeypatch.setenv("TIDINGS_ALLOW_PRIVATE_URLS", "false")
    get_settings.cache_clear()
    seen = len(mastodon.requests)
    with pytest.raises(ConnectError, match="cannot be used"):
        await refresh_channel(db, channel, http=http)
    provider = provider_for(channel, http)
    with pytest.raises(ConnectError, match="cannot be used"):
        await provider.publish(
            credentials_of(channel), PostPart(content="hello"), provider.parse_settings({})
        )
    assert len(mastodon.requests) == seen
    # A name that does not resolve right now is a transient failure, not a disconnection.
    lost = await make_channel(
        db,
        tenant.org_id,
        provider="mastodon",
        token="t",
        refresh_token="r",
        custom={"instance_url": "https://mastodon.invalid", "client_id": "c"},
    )
    with pytest.raises(RetryableError):
        await refresh_channel(db, lost, http=http)
    assert not lost.refresh_needed
    # Hosts the server itself is configured with are not user-given: never refused.
    assert not provider.on_user_host(provider.config.url("instance") + "/api/v1/statuses")
    assert provider.on_user_host(f"{mastodon.base_url}/api/v1/statuses")


async def test_refused_refresh_marks_refresh_needed(
    db: AsyncSession, tenant: Tenant, mastodon: FakeMastodon, http: httpx.AsyncClient
) -> None:
    channel = await mastodon_channel(db, tenant.org_id, mastodon)
    token_before = channel.token
    mastodon.oauth.revoke_all()
    with pytest.raises(DisconnectedError):
        await refresh_channel(db, channel, http=http)
    assert channel.refresh_needed is True
    assert channel.token == token_before
    notes = (
        (
            await db.execute(
                select(Notifications).where(Notifications.organization_id == tenant.org_id)
            )
        )
        .scalars()
        .all()
    )
    assert len(notes) == 1
    assert "Alice M" in notes[0].content and "Reconnect" in notes[0].content
    errors = (
        (await db.execute(select(Errors).where(Errors.integration_id == channel.id)))
        .scalars()
        .all()
    )
    assert len(errors) == 1 and "Invalid refresh token" in errors[0].error
    assert channel_problem(channel) is not None
    # A second failure records the error but does not notify again.
    with pytest.raises(DisconnectedError):
        await refresh_channel(db, channel, http=http)
    count = (
        await db.execute(
            text("SELECT count(*) FROM notifications WHERE organization_id = :o"),
            {"o": tenant.org_id},
        )
    ).scalar_one()
    assert count == 1


async def test_retryable_refresh_failure_marks_nothing(
    db: AsyncSession, tenant: Tenant, mastodon: FakeMastodon, http: httpx.AsyncClient
) -> None:
    channel = await mastodon_channel(db, tenant.org_id, mastodon)
    mastodon.fail("POST", "/oauth/token", 503, {"error": "down for maintenance"})
    with pytest.raises(RetryableError):
        await refresh_channel(db, channel, http=http)
    assert channel.refresh_needed is False
    count = (
        await db.execute(
            text("SELECT count(*) FROM errors WHERE integration_id = :i"), {"i": channel.id}
        )
    ).scalar_one()
    assert count == 0


async def test_bluesky_refresh(
    db: AsyncSession, tenant: Tenant, http: httpx.AsyncClient, allow_private: None
) -> None:
    async with FakeBluesky() as pds:
        session = pds._new_session(pds.accounts[0])
        channel = await make_channel(
            db,
            tenant.org_id,
            provider="bluesky",
            internal_id="did:plc:alice123",
            token=session["accessJwt"],
            refresh_token=session["refreshJwt"],
            custom={"service": pds.base_url, "identifier": "alice.test", "password": "x"},
        )
        creds = await refresh_channel(db, channel, http=http)
        call = pds.last("POST", "/xrpc/com.atproto.server.refreshSession")
        assert call.auth == f"Bearer {session['refreshJwt']}"
        assert creds.access_token in pds.sessions
        assert channel.refresh_token == creds.refresh_token != session["refreshJwt"]
        assert channel.token_expiration is not None


# ---- concurrency (real commits, two connections) ------------------------------------------------


async def test_concurrent_refreshes_spend_the_refresh_token_once(
    fresh_database: Database, mastodon: FakeMastodon, http: httpx.AsyncClient
) -> None:
    tenant = await make_tenant(fresh_database)
    async with fresh_database.session() as session:
        channel_id = (await mastodon_channel(session, tenant.org_id, mastodon)).id
    # Single-use refresh tokens, and a slow token endpoint so the two refreshes overlap.
    mastodon.oauth.rotate_refresh = True
    mastodon.delay("POST", "/oauth/token", 0.3, times=2)

    async def worker() -> str:
        async with fresh_database.session() as session:
            channel = await session.get(Integration, channel_id)
            assert channel is not None
            creds = await refresh_channel(session, channel, http=http)
            return creds.access_token

    first, second = await asyncio.gather(worker(), worker())
    assert first == second
    assert len(mastodon.calls("POST", "/oauth/token")) == 1
    async with fresh_database.session() as session:
        channel = await session.get(Integration, channel_id)
        assert channel is not None
        assert channel.token == first
        assert channel.refresh_needed is False
        assert channel.refresh_token in mastodon.oauth.refresh

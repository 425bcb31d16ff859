"""The periodic token refresh, called directly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.channels.factories import make_channel
from tests.channels.providers.servers.mastodon import FakeMastodon
from tests.conftest import Tenant
from tidings.channels.models import Integration
from tidings.channels.tasks import refresh_expiring
from tidings.core.jobs import job_app, load_tasks
from tidings.notifications.models import Notifications


@pytest.fixture
async def mastodon(allow_private: None) -> AsyncIterator[FakeMastodon]:
    # The instance is a user-given host on 127.0.0.1: private addresses must be allowed.
    async with FakeMastodon(issue_refresh=True) as server:
        server.oauth.add_client("cid-1", "csecret-1", [])
        server.oauth.expires_in = 7200
        yield server


async def channel_of(
    db: AsyncSession, tenant: Tenant, server: FakeMastodon, name: str, expires_in: timedelta
) -> Integration:
    issued = server.oauth.issue("109", "", refresh=True)
    return await make_channel(
        db,
        tenant.org_id,
        provider="mastodon",
        name=name,
        token=issued["access_token"],
        refresh_token=issued["refresh_token"],
        expires_at=datetime.now(UTC) + expires_in,
        custom={
            "instance_url": server.base_url,
            "client_id": "cid-1",
            "client_secret": "csecret-1",
        },
    )


async def reload(db: AsyncSession, channel_id: str) -> Integration:
    return (
        await db.execute(
            select(Integration)
            .where(Integration.id == channel_id)
            .execution_options(populate_existing=True)
        )
    ).scalar_one()


async def test_refresh_expiring_channels(
    db: AsyncSession, tenant: Tenant, mastodon: FakeMastodon, http: httpx.AsyncClient
) -> None:
    soon = await channel_of(db, tenant, mastodon, "Soon", timedelta(minutes=20))
    expired = await channel_of(db, tenant, mastodon, "Expired", timedelta(minutes=-5))
    later = await channel_of(db, tenant, mastodon, "Later", timedelta(hours=5))
    revoked = await channel_of(db, tenant, mastodon, "Revoked", timedelta(minutes=30))
    mastodon.oauth.revoked.add(revoked.refresh_token or "")
    flagged = await channel_of(db, tenant, mastodon, "Flagged", timedelta(minutes=10))
    flagged.refresh_needed = True
    no_expiry = await make_channel(db, tenant.org_id, provider="bluesky", expires_at=None)
    await db.flush()
    before = {c.id: c.token for c in (soon, expired, later, revoked, flagged, no_expiry)}

    counts = await refresh_expiring(http=http)
    assert counts == {"refreshed": 2, "disconnected": 1, "failed": 0, "skipped": 0}
    for channel in (soon, expired):
        row = await reload(db, channel.id)
        assert row.token != before[channel.id] and row.token in mastodon.oauth.access
        assert row.token_expiration is not None
        assert row.token_expiration > datetime.now(UTC) + timedelta(hours=1)
    for channel in (later, flagged, no_expiry):
        assert (await reload(db, channel.id)).token == before[channel.id]
    lost = await reload(db, revoked.id)
    assert lost.refresh_needed is True
    notes = (
        (
            await db.execute(
                select(Notifications).where(Notifications.organization_id == tenant.org_id)
            )
        )
        .scalars()
        .all()
    )
    assert len(notes) == 1 and "Revoked" in notes[0].content
    assert len(mastodon.calls("POST", "/oauth/token")) == 3

    # Nothing left to do on the next run.
    assert await refresh_expiring(http=http) == {
        "refreshed": 0,
        "disconnected": 0,
        "failed": 0,
        "skipped": 0,
    }


async def test_transient_failure_is_retried_next_run(
    db: AsyncSession, tenant: Tenant, mastodon: FakeMastodon, http: httpx.AsyncClient
) -> None:
    channel = await channel_of(db, tenant, mastodon, "Flaky", timedelta(minutes=5))
    mastodon.fail("POST", "/oauth/token", 502, {"error": "bad gateway"})
    assert (await refresh_expiring(http=http))["failed"] == 1
    assert (await reload(db, channel.id)).refresh_needed is False
    assert (await refresh_expiring(http=http))["refreshed"] == 1


def test_periodic_task_is_registered() -> None:
    load_tasks()
    task = job_app.tasks["channels.refresh_tokens"]
    assert task.queueing_lock == "channels.refresh_tokens"
    periodic = [p for p in job_app.periodic_registry.periodic_tasks.values() if p.task is task]
    assert periodic and periodic[0].cron == "*/10 * * * *"

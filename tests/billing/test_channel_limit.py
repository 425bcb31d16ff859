"""The subscription's total_channels caps active channels when billing is on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.channels.factories import make_channel
from tests.channels.helpers import point
from tests.channels.providers.servers.bluesky import FakeBluesky
from tests.conftest import Tenant, asgi_client, build_app, make_tenant
from tidings.billing.models import Subscription
from tidings.billing.service import active_channel_count, channel_limit, check_channel_limit
from tidings.core.enums import Period, SubscriptionTier
from tidings.core.errors import PaymentRequired
from tidings.core.tenancy import OrgId
from tidings.db import Database

pytestmark = pytest.mark.usefixtures("allow_private")

ALICE = {"identifier": "alice.test", "password": "app-pass-1234"}
BOB = {"identifier": "bob.test", "password": "bob-pass"}


@pytest.fixture
async def pds(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeBluesky]:
    async with FakeBluesky() as server:
        point(monkeypatch, "bluesky", server)
        yield server


async def subscribe(
    db: AsyncSession, org_id: str, channels: int, *, cancel_at: datetime | None = None
) -> None:
    db.add(
        Subscription(
            organization_id=org_id,
            subscription_tier=SubscriptionTier.STANDARD,
            period=Period.MONTHLY,
            total_channels=channels,
            cancel_at=cancel_at,
        )
    )
    await db.flush()


async def connect(
    client: httpx.AsyncClient, tenant: Tenant, fields: dict[str, str]
) -> httpx.Response:
    return await client.post(
        "/api/channels/bluesky/connect", json={"fields": fields}, headers=tenant.headers
    )


async def test_without_billing_there_is_no_limit(
    client: httpx.AsyncClient, tenant: Tenant, pds: FakeBluesky, db: AsyncSession
) -> None:
    for _ in range(5):
        await make_channel(db, tenant.org_id)
    await subscribe(db, tenant.org_id, 1)  # ignored while billing is off
    assert await channel_limit(db, OrgId(tenant.org_id)) is None
    response = await connect(client, tenant, ALICE)
    assert response.status_code == 201, response.text


async def test_no_subscription_means_no_channel(
    client: httpx.AsyncClient, tenant: Tenant, pds: FakeBluesky, billing: None
) -> None:
    response = await connect(client, tenant, ALICE)
    assert response.status_code == 402
    body = response.json()
    assert body["error"] == "channel_limit" and body["field"] == "channels"
    assert "subscription" in body["message"]
    assert body["limit"] == 0 and body["used"] == 0


async def test_limit_counts_active_channels(
    client: httpx.AsyncClient,
    tenant: Tenant,
    pds: FakeBluesky,
    db: AsyncSession,
    billing: None,
) -> None:
    await subscribe(db, tenant.org_id, 2)
    existing = await make_channel(db, tenant.org_id, name="Existing")
    # Disabled and deleted channels do not count.
    await make_channel(db, tenant.org_id, disabled=True)
    await make_channel(db, tenant.org_id, deleted_at=datetime.now(UTC))

    alice = await connect(client, tenant, ALICE)
    assert alice.status_code == 201, alice.text
    bob = await connect(client, tenant, BOB)
    assert bob.status_code == 402
    assert "2 active channels" in bob.json()["message"]
    assert bob.json()["used"] == 2

    # Reconnecting an existing channel at the limit is fine.
    again = await connect(client, tenant, ALICE)
    assert again.status_code == 201 and again.json()["created"] is False

    # Disabling one frees a place; enabling it again is refused once the place is taken.
    off = await client.patch(
        f"/api/channels/{existing.id}", json={"disabled": True}, headers=tenant.headers
    )
    assert off.status_code == 200
    bob = await connect(client, tenant, BOB)
    assert bob.status_code == 201, bob.text
    on = await client.patch(
        f"/api/channels/{existing.id}", json={"disabled": False}, headers=tenant.headers
    )
    assert on.status_code == 402
    assert on.json()["field"] == "channels"

    # Deleting one frees a place; reviving the deleted one then fits, a third does not.
    alice_id = alice.json()["channel"]["id"]
    assert (
        await client.delete(f"/api/channels/{alice_id}", headers=tenant.headers)
    ).status_code == 204
    on = await client.patch(
        f"/api/channels/{existing.id}", json={"disabled": False}, headers=tenant.headers
    )
    assert on.status_code == 200
    revived = await connect(client, tenant, ALICE)
    assert revived.status_code == 402
    assert await active_channel_count(db, OrgId(tenant.org_id)) == 2


async def test_two_connections_at_once_cannot_both_take_the_last_place(
    fresh_database: Database, pds: FakeBluesky, billing: None
) -> None:
    tenant = await make_tenant(fresh_database)
    async with fresh_database.session() as session:
        await subscribe(session, tenant.org_id, 1)
    async with asgi_client(build_app(fresh_database)) as client:
        answers = await asyncio.gather(connect(client, tenant, ALICE), connect(client, tenant, BOB))
    assert sorted(a.status_code for a in answers) == [201, 402], [a.text for a in answers]
    async with fresh_database.session() as session:
        assert await active_channel_count(session, OrgId(tenant.org_id)) == 1


async def test_ended_subscription_allows_nothing(
    db: AsyncSession, tenant: Tenant, billing: None
) -> None:
    await subscribe(db, tenant.org_id, 10, cancel_at=datetime.now(UTC) - timedelta(days=1))
    assert await channel_limit(db, OrgId(tenant.org_id)) == 0
    with pytest.raises(PaymentRequired):
        await check_channel_limit(db, OrgId(tenant.org_id))


async def test_cancelled_in_future_still_counts(
    db: AsyncSession, tenant: Tenant, billing: None
) -> None:
    await subscribe(db, tenant.org_id, 1, cancel_at=datetime.now(UTC) + timedelta(days=3))
    await check_channel_limit(db, OrgId(tenant.org_id))
    channel = await make_channel(db, tenant.org_id)
    with pytest.raises(PaymentRequired):
        await check_channel_limit(db, OrgId(tenant.org_id))
    # The channel about to be (re)activated is not counted twice.
    await check_channel_limit(db, OrgId(tenant.org_id), excluding=channel.id)

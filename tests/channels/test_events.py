"""integration.connected / integration.disconnected reach the organization's webhooks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.channels.helpers import point
from tests.channels.providers.servers.bluesky import FakeBluesky
from tests.conftest import Tenant
from tidings.automation.models import WebhookEvent, Webhooks
from tidings.channels.models import Integration
from tidings.channels.providers import DisconnectedError
from tidings.channels.service import refresh_channel


@pytest.fixture
async def pds(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeBluesky]:
    async with FakeBluesky() as server:
        point(monkeypatch, "bluesky", server)
        yield server


async def test_connect_and_disconnect_events(
    client: httpx.AsyncClient,
    tenant: Tenant,
    pds: FakeBluesky,
    db: AsyncSession,
    http: httpx.AsyncClient,
    allow_private: None,
) -> None:
    hook = Webhooks(
        organization_id=tenant.org_id,
        name="all",
        url="https://hooks.example/in",
        events=["integration.connected", "integration.disconnected"],
    )
    db.add(hook)
    await db.flush()
    response = await client.post(
        "/api/channels/bluesky/connect",
        json={"fields": {"identifier": "alice.test", "password": "app-pass-1234"}},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    channel_id = response.json()["channel"]["id"]

    channel = (
        await db.execute(select(Integration).where(Integration.id == channel_id))
    ).scalar_one()
    pds.expire_sessions()
    pds.refresh_tokens.clear()
    pds.accounts[0].password = "changed"  # the app password was revoked
    with pytest.raises(DisconnectedError):
        await refresh_channel(db, channel, http=http)

    events = (
        (
            await db.execute(
                select(WebhookEvent)
                .where(WebhookEvent.webhook_id == hook.id)
                .order_by(WebhookEvent.created_at, WebhookEvent.type)
            )
        )
        .scalars()
        .all()
    )
    assert [e.type for e in events] == ["integration.connected", "integration.disconnected"]
    connected = events[0].payload
    assert connected == {**connected, "id": channel_id, "identifier": "bluesky"}
    assert "token" not in str(connected)
    assert "app password" in str(events[1].payload)


async def test_deleting_a_channel_fires_integration_disconnected(
    client: httpx.AsyncClient,
    tenant: Tenant,
    pds: FakeBluesky,
    db: AsyncSession,
    allow_private: None,
) -> None:
    hook = Webhooks(
        organization_id=tenant.org_id,
        url="https://hooks.example/in",
        events=["integration.disconnected"],
    )
    db.add(hook)
    await db.flush()
    response = await client.post(
        "/api/channels/bluesky/connect",
        json={"fields": {"identifier": "alice.test", "password": "app-pass-1234"}},
        headers=tenant.headers,
    )
    channel_id = response.json()["channel"]["id"]
    deleted = await client.delete(f"/api/channels/{channel_id}", headers=tenant.headers)
    assert deleted.status_code == 204
    events = (
        (await db.execute(select(WebhookEvent).where(WebhookEvent.webhook_id == hook.id)))
        .scalars()
        .all()
    )
    assert [(e.type, e.payload["id"], e.payload["reason"]) for e in events] == [
        ("integration.disconnected", channel_id, "deleted")
    ]

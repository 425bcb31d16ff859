"""emit(): which endpoints get an event, and nothing survives the caller's rollback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.automation.factories import make_channel
from tests.conftest import Tenant, make_tenant
from tidings.automation.events import emit
from tidings.automation.models import IntegrationsWebhooks, WebhookEvent, Webhooks
from tidings.automation.webhooks import generate_secret
from tidings.db import Database


async def _endpoint(
    session: AsyncSession, org_id: str, events: list[str], *, enabled: bool = True
) -> Webhooks:
    row = Webhooks(
        organization_id=org_id,
        url="https://hooks.example.com/x",
        events=events,
        secret=generate_secret(),
        enabled=enabled,
    )
    session.add(row)
    await session.flush()
    return row


async def _jobs(session: AsyncSession, lock: str) -> int:
    return int(
        (
            await session.execute(
                text("SELECT count(*) FROM procrastinate_jobs WHERE lock = :lock"), {"lock": lock}
            )
        ).scalar_one()
    )


async def test_emit_stores_one_event_per_interested_endpoint(
    db: AsyncSession, tenant: Tenant, other_tenant: Tenant
) -> None:
    subscribed = await _endpoint(db, tenant.org_id, ["post.published", "post.failed"])
    other_type = await _endpoint(db, tenant.org_id, ["post.failed"])
    disabled = await _endpoint(db, tenant.org_id, ["post.published"], enabled=False)
    foreign = await _endpoint(db, other_tenant.org_id, ["post.published"])

    ids = await emit(db, tenant.org_id, "post.published", {"post": {"id": "p1"}})

    assert len(ids) == 1
    event = await db.get(WebhookEvent, ids[0])
    assert event is not None
    assert event.webhook_id == subscribed.id
    assert event.payload == {"post": {"id": "p1"}}
    assert event.status == "pending"
    assert await _jobs(db, f"webhook:{subscribed.id}") == 1
    for row in (other_type, disabled, foreign):
        assert await _jobs(db, f"webhook:{row.id}") == 0


async def test_emit_respects_channel_limits(db: AsyncSession, tenant: Tenant) -> None:
    from tidings.channels.models import Integration

    channel_ids = []
    for name in ("a", "b"):
        integration = Integration(
            organization_id=tenant.org_id,
            internal_id=f"internal-{name}",
            name=name,
            provider_identifier="mastodon",
            type="social",
            token="t",
        )
        db.add(integration)
        await db.flush()
        channel_ids.append(integration.id)
    limited = await _endpoint(db, tenant.org_id, ["post.published", "subscription.updated"])
    db.add(IntegrationsWebhooks(integration_id=channel_ids[0], webhook_id=limited.id))
    everything = await _endpoint(db, tenant.org_id, ["post.published"])
    await db.flush()

    to_a = await emit(db, tenant.org_id, "post.published", {}, integration_id=channel_ids[0])
    to_b = await emit(db, tenant.org_id, "post.published", {}, integration_id=channel_ids[1])
    org_level = await emit(db, tenant.org_id, "subscription.updated", {})

    hooks = {
        (await db.get(WebhookEvent, i)).webhook_id  # type: ignore[union-attr]
        for i in to_a
    }
    assert hooks == {limited.id, everything.id}
    assert [(await db.get(WebhookEvent, i)).webhook_id for i in to_b] == [  # type: ignore[union-attr]
        everything.id
    ]
    assert [(await db.get(WebhookEvent, i)).webhook_id for i in org_level] == [  # type: ignore[union-attr]
        limited.id
    ]


async def test_unknown_event_type_is_refused(db: AsyncSession, tenant: Tenant) -> None:
    with pytest.raises(ValueError, match="unknown event type"):
        await emit(db, tenant.org_id, "post.exploded", {})


async def test_rollback_of_the_caller_emits_nothing(fresh_database: Database) -> None:
    owner = await make_tenant(fresh_database)
    async with fresh_database.session() as session:
        endpoint = await _endpoint(session, owner.org_id, ["post.published"])

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with fresh_database.session() as session:
            ids = await emit(session, owner.org_id, "post.published", {"n": 1})
            assert len(ids) == 1
            raise Boom

    async with fresh_database.session() as session:
        events = (await session.execute(select(func.count()).select_from(WebhookEvent))).scalar()
        assert events == 0
        assert await _jobs(session, f"webhook:{endpoint.id}") == 0


async def test_old_finished_events_are_purged(
    db: AsyncSession, tenant: Tenant, test_database: Database
) -> None:
    from tidings.automation.tasks import purge_old_events

    endpoint = await _endpoint(db, tenant.org_id, ["post.published"])
    old_done, old_pending, recent_done = [
        await emit(db, tenant.org_id, "post.published", {"n": n}) for n in range(3)
    ]
    await db.execute(
        text(
            "UPDATE webhook_event SET status = :status, created_at = now() - make_interval("
            "days => :days) WHERE id = :id"
        ),
        [
            {"status": "delivered", "days": 40, "id": old_done[0]},
            {"status": "pending", "days": 40, "id": old_pending[0]},
            {"status": "failed", "days": 2, "id": recent_done[0]},
        ],
    )
    assert await purge_old_events() == 1
    left = await db.execute(select(WebhookEvent.id).where(WebhookEvent.webhook_id == endpoint.id))
    assert set(left.scalars()) == {old_pending[0], recent_done[0]}


async def test_post_events_carry_the_post_with_its_channel(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncSession
) -> None:
    """Creating, rescheduling and deleting posts through the app API stores one event each
    for a subscribed endpoint, with the post, its channel, state, release URL and error."""
    channel = await make_channel(db, tenant.org_id, identifier="mastodon", name="Team toots")
    endpoint = await _endpoint(db, tenant.org_id, ["post.created", "post.updated", "post.deleted"])
    body = {
        "type": "schedule",
        "date": (datetime.now(UTC) + timedelta(days=2)).isoformat(),
        "posts": [{"integration": {"id": channel.id}, "value": [{"content": "Hello"}]}],
    }
    created = await client.post("/api/posts", json=body, headers=tenant.headers)
    assert created.status_code == 201, created.text
    group, post_id = created.json()["group"], created.json()["posts"][0]["postId"]
    later = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    moved = await client.put(
        f"/api/posts/group/{group}/date", json={"date": later}, headers=tenant.headers
    )
    assert moved.status_code == 200, moved.text
    deleted = await client.delete(f"/api/posts/{post_id}", headers=tenant.headers)
    assert deleted.status_code == 200, deleted.text

    events = list(
        (
            await db.execute(
                select(WebhookEvent)
                .where(WebhookEvent.webhook_id == endpoint.id)
                .order_by(WebhookEvent.created_at)
            )
        ).scalars()
    )
    assert [e.type for e in events] == ["post.created", "post.updated", "post.deleted"]
    for event in events:
        post = event.payload
        assert post["id"] == post_id and post["group"] == group
        assert post["content"] == "Hello"
        assert post["integration"] == {
            "id": channel.id,
            "name": "Team toots",
            "providerIdentifier": "mastodon",
        }
        assert {"state", "publishDate", "releaseURL", "error"} <= post.keys()
    assert events[0].payload["state"] == "QUEUE"
    assert events[1].payload["publishDate"][:16] == later[:16]
    assert await _jobs(db, f"webhook:{endpoint.id}") == 3

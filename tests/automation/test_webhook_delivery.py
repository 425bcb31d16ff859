"""Webhook delivery with a real worker and a real receiver on 127.0.0.1.

The receiver checks every signature with the ``standardwebhooks`` package, so a bug in our
signing (or a header the standard does not expect) fails these tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import standardwebhooks
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.automation.helpers import Receiver, eventually, running_worker
from tests.conftest import Tenant, TransactionalDatabase, asgi_client, build_app, make_tenant
from tidings.automation.events import emit
from tidings.automation.models import WebhookDelivery, WebhookEvent, Webhooks
from tidings.automation.tasks import sweep_pending
from tidings.automation.webhooks import deliver_endpoint, generate_secret
from tidings.db import Database
from tidings.notifications.models import Notifications


async def _endpoint(
    database: Database, org_id: str, url: str, events: list[str] | None = None
) -> tuple[str, str]:
    secret = generate_secret()
    async with database.session() as session:
        row = Webhooks(
            organization_id=org_id,
            url=url,
            events=events or ["post.published", "post.failed"],
            secret=secret,
        )
        session.add(row)
        await session.flush()
        return row.id, secret


async def _emit(database: Database, org_id: str, event_type: str, data: dict[str, Any]) -> str:
    async with database.session() as session:
        ids = await emit(session, org_id, event_type, data)
    return ids[0]


async def _deliveries(database: Database, event_id: str) -> list[WebhookDelivery]:
    async with database.session() as session:
        rows = await session.execute(
            select(WebhookDelivery)
            .where(WebhookDelivery.event_id == event_id)
            .order_by(WebhookDelivery.attempt)
        )
        return list(rows.scalars())


async def test_signed_retried_and_in_order(
    fresh_database: Database, receiver: Receiver, configure: Callable[..., None]
) -> None:
    configure(webhook_backoff_base_seconds=0.1, webhook_max_attempts=5)
    owner = await make_tenant(fresh_database)
    hook_id, secret = await _endpoint(fresh_database, owner.org_id, receiver.url("a"))
    # The first event fails twice on purpose; the two later ones must wait behind it.
    receiver.configure("a", secret=secret, script=[500, 503])

    async with running_worker(fresh_database):
        first = await _emit(fresh_database, owner.org_id, "post.published", {"n": 1})
        second = await _emit(fresh_database, owner.org_id, "post.failed", {"n": 2})
        third = await _emit(fresh_database, owner.org_id, "post.published", {"n": 3})
        await eventually(lambda: len(receiver.of("a")) >= 5)

    got = receiver.of("a")
    assert len(got) == 5
    assert all(r.error is None for r in got), [r.error for r in got]
    # Three attempts of the first event, the same webhook-id each time, then the others in order.
    assert [r.headers["webhook-id"] for r in got] == [first, first, first, second, third]
    assert [r.status for r in got] == [500, 503, 200, 200, 200]
    assert [r.verified["data"]["n"] for r in got] == [1, 1, 1, 2, 3]
    assert [r.verified["type"] for r in got] == [
        "post.published",
        "post.published",
        "post.published",
        "post.failed",
        "post.published",
    ]
    # Exponential backoff: the second retry waited longer than the first.
    gap1, gap2 = got[1].at - got[0].at, got[2].at - got[1].at
    assert gap1 >= 0.09 and gap2 >= 0.39, (gap1, gap2)

    attempts = await _deliveries(fresh_database, first)
    assert [(d.attempt, d.succeeded, d.status_code) for d in attempts] == [
        (1, False, 500),
        (2, False, 503),
        (3, True, 200),
    ]
    assert attempts[0].error == "the endpoint answered HTTP 500"
    assert attempts[0].response_excerpt == "answered 500"
    assert all(d.duration_ms >= 0 for d in attempts)
    async with fresh_database.session() as session:
        events = (
            await session.execute(select(WebhookEvent).where(WebhookEvent.webhook_id == hook_id))
        ).scalars()
        assert {e.id: (e.status, e.attempts) for e in events} == {
            first: ("delivered", 3),
            second: ("delivered", 1),
            third: ("delivered", 1),
        }


async def test_a_silent_endpoint_does_not_hold_back_others(
    fresh_database: Database, receiver: Receiver, configure: Callable[..., None]
) -> None:
    configure(webhook_timeout_seconds=2, webhook_max_attempts=1)
    owner = await make_tenant(fresh_database)
    silent_id, _ = await _endpoint(fresh_database, owner.org_id, receiver.url("silent"))
    _, secret = await _endpoint(fresh_database, owner.org_id, receiver.url("ok"))
    receiver.configure("silent", hang=True)
    receiver.configure("ok", secret=secret)

    async with running_worker(fresh_database):
        started = time.monotonic()
        async with fresh_database.session() as session:
            # The silent endpoint was created first, so its job is queued first.
            ids = await emit(session, owner.org_id, "post.published", {"n": 1})
        assert len(ids) == 2
        await eventually(lambda: len(receiver.of("ok")) == 1, timeout=5)
        assert time.monotonic() - started < 1.5
        assert receiver.of("ok")[0].verified["data"] == {"n": 1}
        # The silent endpoint's attempt ends at the timeout, recorded as such.
        silent_event = next(i for i in ids if i != receiver.of("ok")[0].headers["webhook-id"])
        await eventually(lambda: _deliveries(fresh_database, silent_event), timeout=6)

    attempt = (await _deliveries(fresh_database, silent_event))[0]
    assert not attempt.succeeded
    assert attempt.status_code is None
    assert attempt.error == "no answer within 2 seconds"
    assert attempt.duration_ms >= 1900
    async with fresh_database.session() as session:
        event = await session.get(WebhookEvent, silent_event)
        assert event is not None and event.status == "failed"
        endpoint = await session.get(Webhooks, silent_id)
        assert endpoint is not None and endpoint.consecutive_failures == 1


async def test_endpoint_disabled_after_consecutive_failed_events(
    fresh_database: Database, receiver: Receiver, configure: Callable[..., None]
) -> None:
    configure(webhook_backoff_base_seconds=0.05, webhook_max_attempts=2, webhook_disable_after=2)
    owner = await make_tenant(fresh_database)
    hook_id, secret = await _endpoint(fresh_database, owner.org_id, receiver.url("down"))
    receiver.configure("down", secret=secret, default=500)

    async with running_worker(fresh_database):
        ids = [
            await _emit(fresh_database, owner.org_id, "post.published", {"n": n}) for n in range(3)
        ]

        async def disabled() -> bool:
            async with fresh_database.session() as session:
                row = await session.get(Webhooks, hook_id)
                return row is not None and not row.enabled

        await eventually(disabled)
        await eventually(lambda: len(receiver.of("down")) >= 4)

        # Nothing more is sent while disabled.
        await asyncio.sleep(0.3)
        assert len(receiver.of("down")) == 4
        # The receiver is fixed; enabling the endpoint sends the held event at once, and a
        # given-up event can be redelivered with its original webhook-id.
        receiver.configure("down", default=200)
        async with asgi_client(build_app(fresh_database)) as client:
            url = f"/api/webhooks/{hook_id}"
            response = await client.patch(url, json={"enabled": True}, headers=owner.headers)
            assert response.status_code == 200 and response.json()["consecutive_failures"] == 0
            await eventually(lambda: len(receiver.of("down")) == 5)
            redo = await client.post(f"{url}/events/{ids[0]}/redeliver", headers=owner.headers)
            assert redo.status_code == 202
            await eventually(lambda: len(receiver.of("down")) == 6)

    # Two events, two attempts each, then (enabled again) the held third, then the redelivery.
    assert [r.headers["webhook-id"] for r in receiver.of("down")] == [
        ids[0],
        ids[0],
        ids[1],
        ids[1],
        ids[2],
        ids[0],
    ]
    assert all(r.error is None for r in receiver.of("down"))
    async with fresh_database.session() as session:
        statuses = [(await session.get(WebhookEvent, i)).status for i in ids]  # type: ignore[union-attr]
        assert statuses == ["delivered", "failed", "delivered"]
        notes = list(
            (
                await session.execute(
                    select(Notifications).where(Notifications.organization_id == owner.org_id)
                )
            ).scalars()
        )
        assert len(notes) == 1
        assert "disabled" in notes[0].content and receiver.url("down") in notes[0].content
    attempts = await _deliveries(fresh_database, ids[0])
    assert [(d.attempt, d.succeeded) for d in attempts] == [(1, False), (2, False), (3, True)]


async def test_any_answer_is_logged_bounded(
    db: AsyncSession,
    tenant: Tenant,
    test_database: TransactionalDatabase,
    receiver: Receiver,
    configure: Callable[..., None],
) -> None:
    """A binary answer (NUL bytes, invalid UTF-8, megabytes) is logged as a bounded text excerpt
    instead of making the log write fail (which left the event pending and retried forever)."""
    configure()
    hook_id, secret = await _endpoint(test_database, tenant.org_id, receiver.url("bin"))
    receiver.configure("bin", secret=secret, body=b"\x00ok\xff\x00" + b"y" * 1_000_000)
    [event_id] = await emit(db, tenant.org_id, "post.published", {"n": 1})

    assert await deliver_endpoint(test_database, hook_id) == 1
    [attempt] = await _deliveries(test_database, event_id)
    assert attempt.succeeded and attempt.status_code == 200
    excerpt = attempt.response_excerpt or ""
    assert excerpt.startswith("ok\ufffd") and "\x00" not in excerpt
    assert len(excerpt) <= 2048
    event = await db.get(WebhookEvent, event_id)
    assert event is not None and event.status == "delivered"

    # The test action logs such an answer too (it used to fail with a 400).
    async with asgi_client(build_app(test_database)) as client:
        tested = await client.post(f"/api/webhooks/{hook_id}/test", headers=tenant.headers)
    assert tested.status_code == 200, tested.text
    assert "\x00" not in tested.json()["delivery"]["response_excerpt"]


async def test_redirects_are_not_followed(
    db: AsyncSession,
    tenant: Tenant,
    test_database: TransactionalDatabase,
    receiver: Receiver,
    configure: Callable[..., None],
) -> None:
    """A 3xx is a failed attempt (Standard Webhooks): following a 302 turned the POST into a
    bodiless GET that the target could answer 200, and the event counted as delivered."""
    configure(webhook_max_attempts=1)
    hook_id, secret = await _endpoint(test_database, tenant.org_id, receiver.url("moved"))
    for status in (302, 307):
        receiver.configure("moved", secret=secret, default=status, location=receiver.url("new"))
        [event_id] = await emit(db, tenant.org_id, "post.published", {"status": status})
        assert await deliver_endpoint(test_database, hook_id) == 0
        [attempt] = await _deliveries(test_database, event_id)
        assert not attempt.succeeded
        assert attempt.error is not None and "redirect" in attempt.error
        event = await db.get(WebhookEvent, event_id)
        assert event is not None
        await db.refresh(event)
        assert event.status == "failed"
    assert len(receiver.of("moved")) == 2
    assert receiver.of("new") == []


async def test_the_url_guard_applies_at_delivery_time(
    db: AsyncSession,
    tenant: Tenant,
    test_database: TransactionalDatabase,
    receiver: Receiver,
    configure: Callable[..., None],
) -> None:
    """A URL that passed when saved is checked again at each attempt (the setting may have
    changed, a name may resolve elsewhere now): nothing reaches a private address."""
    configure()  # private addresses allowed while the endpoint is saved
    async with asgi_client(build_app(test_database)) as client:
        body = {"url": receiver.url("lan"), "events": ["post.published"]}
        created = await client.post("/api/webhooks", json=body, headers=tenant.headers)
        assert created.status_code == 201, created.text
        hook_id = created.json()["id"]
        [event_id] = await emit(db, tenant.org_id, "post.published", {"n": 1})

        configure(allow_private_urls="false")
        assert await deliver_endpoint(test_database, hook_id) == 0
        [attempt] = await _deliveries(test_database, event_id)
        assert not attempt.succeeded and attempt.status_code is None
        assert attempt.error is not None
        assert attempt.error.startswith("refused by the URL guard") and "loopback" in attempt.error

        tested = await client.post(f"/api/webhooks/{hook_id}/test", headers=tenant.headers)
        assert tested.status_code == 200
        assert tested.json()["delivery"]["error"].startswith("refused by the URL guard")
    assert receiver.received == []


async def test_a_rotated_secret_keeps_signing_for_a_while(
    db: AsyncSession,
    tenant: Tenant,
    test_database: TransactionalDatabase,
    receiver: Receiver,
    configure: Callable[..., None],
) -> None:
    """Zero-downtime rotation (Standard Webhooks): after a rotation every message carries a
    signature with the new secret and one with the old, space-separated, until the grace
    period ends; a receiver still on the old secret keeps verifying them meanwhile."""
    configure(webhook_max_attempts=1)
    async with asgi_client(build_app(test_database)) as client:
        body = {"url": receiver.url("rot"), "events": ["post.published"]}
        created = (await client.post("/api/webhooks", json=body, headers=tenant.headers)).json()
        hook_id, old = created["id"], created["secret"]
        rotated = await client.patch(
            f"/api/webhooks/{hook_id}", json={"rotate_secret": True}, headers=tenant.headers
        )
        new = rotated.json()["secret"]
        assert new != old
        receiver.configure("rot", secret=old)  # the receiver has not switched yet

        await emit(db, tenant.org_id, "post.published", {"n": 1})
        assert await deliver_endpoint(test_database, hook_id) == 1
        tested = await client.post(f"/api/webhooks/{hook_id}/test", headers=tenant.headers)
        assert tested.json()["delivery"]["succeeded"] is True
        for got in receiver.of("rot"):
            assert got.error is None
            assert len(got.headers["webhook-signature"].split(" ")) == 2
            assert standardwebhooks.Webhook(new).verify(got.body, got.headers) == got.verified

        # Once the grace period is over only the new secret signs.
        row = await db.get(Webhooks, hook_id)
        assert row is not None and row.previous_secret == old
        assert row.previous_secret_until is not None
        assert row.previous_secret_until - datetime.now(UTC) > timedelta(hours=23)
        row.previous_secret_until = datetime.now(UTC) - timedelta(seconds=1)
        await db.flush()
        [late] = await emit(db, tenant.org_id, "post.published", {"n": 2})
        assert await deliver_endpoint(test_database, hook_id) == 0
        last = receiver.of("rot")[-1]
        assert last.headers["webhook-id"] == late
        assert last.error is not None and len(last.headers["webhook-signature"].split(" ")) == 1
        assert standardwebhooks.Webhook(new).verify(last.body, last.headers)["data"] == {"n": 2}


async def test_the_sweep_frees_an_endpoint_whose_worker_died(
    fresh_database: Database, receiver: Receiver, configure: Callable[..., None]
) -> None:
    """A worker killed mid-delivery leaves its job 'doing', holding the endpoint's lock: every
    later delivery job of the endpoint would wait behind it for good. The sweep puts such a
    job back in the queue and the endpoint's events go out, in order."""
    configure()
    owner = await make_tenant(fresh_database)
    hook_id, secret = await _endpoint(fresh_database, owner.org_id, receiver.url("orphan"))
    receiver.configure("orphan", secret=secret)
    first = await _emit(fresh_database, owner.org_id, "post.published", {"n": 1})
    async with fresh_database.session() as session:
        # Taken by a worker that died since (its row pruned, so no worker id).
        await session.execute(
            text("UPDATE procrastinate_jobs SET status = 'doing' WHERE lock = :lock"),
            {"lock": f"webhook:{hook_id}"},
        )

    async with running_worker(fresh_database):
        second = await _emit(fresh_database, owner.org_id, "post.published", {"n": 2})
        # The worker may already run the periodic sweep at start; running it again is harmless.
        await sweep_pending()
        await eventually(lambda: len(receiver.of("orphan")) == 2)

    got = receiver.of("orphan")
    assert [r.headers["webhook-id"] for r in got] == [first, second]
    assert all(r.error is None for r in got)


async def test_order_per_endpoint_with_two_workers(
    fresh_database: Database, receiver: Receiver, configure: Callable[..., None]
) -> None:
    """Two workers (as two processes would), several endpoints, retries in the middle: each
    endpoint gets its events one at a time, in order, each delivered once."""
    configure(webhook_backoff_base_seconds=0.05)
    owner = await make_tenant(fresh_database)
    names = ["w0", "w1", "w2"]
    for name in names:
        _, secret = await _endpoint(fresh_database, owner.org_id, receiver.url(name))
        receiver.configure(name, secret=secret, delay=0.01)
    receiver.configure("w0", script=[500, 503])  # the first event of w0 needs three attempts

    async with running_worker(fresh_database, concurrency=3, workers=2):
        for n in range(12):
            async with fresh_database.session() as session:
                assert len(await emit(session, owner.org_id, "post.published", {"n": n})) == 3

        def done() -> bool:
            return all(len([r for r in receiver.of(h) if r.status == 200]) == 12 for h in names)

        await eventually(done, timeout=20)
        async with fresh_database.session() as session:
            workers = await session.scalar(
                text(
                    "SELECT count(DISTINCT worker_id) FROM procrastinate_jobs "
                    "WHERE task_name = 'automation.deliver_webhook'"
                )
            )
        assert workers == 2  # both workers took part

    for name in names:
        got = [r for r in receiver.of(name) if r.status == 200]
        assert [r.verified["data"]["n"] for r in got] == list(range(12)), name
        assert len({r.headers["webhook-id"] for r in got}) == 12, name
        assert receiver.peak[name] == 1, name  # never two deliveries to one endpoint at once
    assert len(receiver.of("w0")) == 14

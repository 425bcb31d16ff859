"""/api/webhooks: CRUD, validation, roles, tenant isolation, test event, redelivery."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.automation.factories import make_channel, make_member
from tests.automation.helpers import Receiver
from tests.conftest import Tenant, TransactionalDatabase
from tidings.automation.events import emit
from tidings.automation.webhooks import secret_key

PUBLIC_URL = "https://1.1.1.1/hooks/tidings"  # a literal public address: no DNS needed


async def _create(client: httpx.AsyncClient, tenant: Tenant, **body: object) -> dict[str, object]:
    payload = {"url": PUBLIC_URL, "events": ["post.published"], **body}
    response = await client.post("/api/webhooks", json=payload, headers=tenant.headers)
    assert response.status_code == 201, response.text
    data: dict[str, object] = response.json()
    return data


async def test_crud(client: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await _create(client, tenant, name="CRM", events=["post.published", "post.failed"])
    secret = str(created["secret"])
    assert secret.startswith("whsec_") and len(secret_key(secret)) == 32
    assert created["enabled"] is True and created["integrations"] == []

    listed = (await client.get("/api/webhooks", headers=tenant.headers)).json()
    assert [w["id"] for w in listed] == [created["id"]]

    url = f"/api/webhooks/{created['id']}"
    detail = (await client.get(url, headers=tenant.headers)).json()
    assert detail["name"] == "CRM" and detail["recent_deliveries"] == []

    changed = await client.patch(
        url, json={"events": ["post.deleted"], "name": "Renamed"}, headers=tenant.headers
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["events"] == ["post.deleted"]
    assert changed.json()["secret"] == secret

    rotated = await client.patch(url, json={"rotate_secret": True}, headers=tenant.headers)
    assert rotated.json()["secret"] != secret

    assert (await client.delete(url, headers=tenant.headers)).status_code == 204
    assert (await client.get(url, headers=tenant.headers)).status_code == 404
    assert (await client.get("/api/webhooks", headers=tenant.headers)).json() == []

    types = (await client.get("/api/webhooks/event-types", headers=tenant.headers)).json()
    assert "post.published" in types["event_types"] and len(types["event_types"]) == 8


async def test_bad_input_is_a_clear_4xx(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, db: AsyncSession
) -> None:
    cases: list[tuple[dict[str, object], int, str]] = [
        ({"url": "http://127.0.0.1:9/hook"}, 400, "url"),
        ({"url": "http://10.0.0.7/hook"}, 400, "url"),
        ({"url": "ftp://1.1.1.1/hook"}, 400, "url"),
        ({"url": "not a url"}, 400, "url"),
        ({"events": ["post.exploded"]}, 422, "events.0"),
        ({"events": []}, 422, "events"),
        ({"secret": "plain-text"}, 400, "secret"),
        ({"secret": "whsec_c2hvcnQ="}, 400, "secret"),
        ({"integrations": ["no-such-channel"]}, 400, "integrations"),
        ({"surprise": 1}, 422, "surprise"),
    ]
    foreign = await make_channel(db, other_tenant.org_id)
    cases.append(({"integrations": [foreign.id]}, 400, "integrations"))
    for override, status, field in cases:
        body = {"url": PUBLIC_URL, "events": ["post.published"], **override}
        response = await client.post("/api/webhooks", json=body, headers=tenant.headers)
        assert response.status_code == status, (override, response.text)
        assert response.json()["field"] == field, (override, response.json())
    created = await _create(client, tenant)
    response = await client.patch(
        f"/api/webhooks/{created['id']}", json={"url": "http://localhost/x"}, headers=tenant.headers
    )
    assert response.status_code == 400 and response.json()["field"] == "url"


async def test_channel_limits_are_saved(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncSession
) -> None:
    a = await make_channel(db, tenant.org_id)
    b = await make_channel(db, tenant.org_id)
    created = await _create(client, tenant, integrations=[a.id, a.id])
    assert created["integrations"] == [a.id]
    response = await client.patch(
        f"/api/webhooks/{created['id']}", json={"integrations": [b.id]}, headers=tenant.headers
    )
    assert response.json()["integrations"] == [b.id]
    ids = await emit(db, tenant.org_id, "post.published", {}, integration_id=a.id)
    assert ids == []
    ids = await emit(db, tenant.org_id, "post.published", {}, integration_id=b.id)
    assert len(ids) == 1


async def test_members_read_without_secrets_and_cannot_write(
    client: httpx.AsyncClient, tenant: Tenant, test_database: TransactionalDatabase
) -> None:
    created = await _create(client, tenant)
    member = await make_member(test_database, tenant.org_id)
    listed = await client.get("/api/webhooks", headers=member)
    assert listed.status_code == 200
    assert listed.json()[0]["secret"] is None
    detail = await client.get(f"/api/webhooks/{created['id']}", headers=member)
    assert detail.status_code == 200 and detail.json()["secret"] is None
    assert str(created["secret"]) not in listed.text + detail.text
    body = {"url": PUBLIC_URL, "events": ["post.published"]}
    assert (await client.post("/api/webhooks", json=body, headers=member)).status_code == 403
    url = f"/api/webhooks/{created['id']}"
    assert (await client.patch(url, json={"name": "x"}, headers=member)).status_code == 403
    assert (await client.delete(url, headers=member)).status_code == 403
    assert (await client.post(f"{url}/test", headers=member)).status_code == 403


async def test_other_organizations_get_404(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, db: AsyncSession
) -> None:
    created = await _create(client, tenant)
    [event_id] = await emit(db, tenant.org_id, "post.published", {"n": 1})
    url = f"/api/webhooks/{created['id']}"
    theirs = other_tenant.headers
    assert (await client.get(url, headers=theirs)).status_code == 404
    assert (await client.patch(url, json={"name": "x"}, headers=theirs)).status_code == 404
    assert (await client.delete(url, headers=theirs)).status_code == 404
    assert (await client.post(f"{url}/test", headers=theirs)).status_code == 404
    assert (await client.get(f"{url}/deliveries", headers=theirs)).status_code == 404
    assert (await client.get(f"{url}/events", headers=theirs)).status_code == 404
    redeliver = f"{url}/events/{event_id}/redeliver"
    assert (await client.post(redeliver, headers=theirs)).status_code == 404
    assert (await client.get("/api/webhooks", headers=theirs)).json() == []
    # Still there for its owner.
    assert (await client.get(url, headers=tenant.headers)).status_code == 200


async def test_send_test_event(
    client: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    configure: Callable[..., None],
) -> None:
    configure()  # loopback receiver allowed
    created = await _create(client, tenant, url=receiver.url("t"))
    receiver.configure("t", secret=str(created["secret"]))
    url = f"/api/webhooks/{created['id']}"

    response = await client.post(f"{url}/test", headers=tenant.headers)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["delivery"]["succeeded"] is True
    assert result["delivery"]["status_code"] == 200
    [got] = receiver.of("t")
    assert got.error is None
    assert got.verified["type"] == "webhook.test"
    assert got.headers["webhook-id"] == result["event_id"]

    receiver.configure("t", script=[418])
    failed = (await client.post(f"{url}/test", headers=tenant.headers)).json()
    assert failed["delivery"]["succeeded"] is False
    assert failed["delivery"]["status_code"] == 418
    assert failed["delivery"]["error"] == "the endpoint answered HTTP 418"

    log = (await client.get(f"{url}/deliveries", headers=tenant.headers)).json()
    assert [d["status_code"] for d in log] == [418, 200]  # newest first
    detail = (await client.get(url, headers=tenant.headers)).json()
    assert len(detail["recent_deliveries"]) == 2
    # A test event never enters the ordered stream.
    events = (await client.get(f"{url}/events?status=pending", headers=tenant.headers)).json()
    assert events == []


async def test_redeliver_queues_the_event_again(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncSession
) -> None:
    created = await _create(client, tenant)
    [event_id] = await emit(db, tenant.org_id, "post.published", {"n": 1})
    await db.execute(
        text("UPDATE webhook_event SET status = 'failed', attempts = 6 WHERE id = :id"),
        {"id": event_id},
    )
    url = f"/api/webhooks/{created['id']}"
    response = await client.post(f"{url}/events/{event_id}/redeliver", headers=tenant.headers)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "pending" and response.json()["attempts"] == 0
    jobs = await db.execute(
        text("SELECT count(*) FROM procrastinate_jobs WHERE lock = :lock AND status = 'todo'"),
        {"lock": f"webhook:{created['id']}"},
    )
    assert jobs.scalar_one() == 2  # the one of emit() and the redelivery's
    missing = await client.post(f"{url}/events/nope/redeliver", headers=tenant.headers)
    assert missing.status_code == 404 and missing.json()["field"] == "event_id"

    await client.patch(url, json={"enabled": False}, headers=tenant.headers)
    disabled = await client.post(f"{url}/events/{event_id}/redeliver", headers=tenant.headers)
    assert disabled.status_code == 409 and disabled.json()["field"] == "enabled"

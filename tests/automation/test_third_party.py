"""/api/third-party: connectors stored with an encrypted key, receiving events like webhooks."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.automation.factories import make_member
from tests.automation.helpers import Receiver, eventually, running_worker
from tests.conftest import Tenant, TransactionalDatabase, asgi_client, build_app, make_tenant
from tidings.automation.events import EVENT_TYPES, emit
from tidings.db import Database

PUBLIC_URL = "https://1.1.1.1/webhook/n8n"


async def test_crud_and_encrypted_key(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncSession
) -> None:
    body = {"provider": "n8n", "api_key": "n8n-key-0123456789", "config": {"workflow": "w1"}}
    response = await client.post("/api/third-party", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["api_key_hint"] == "…6789"
    assert "api_key" not in created
    assert created["receiving_events"] is False and created["signing_secret"] is None
    assert created["events"] == list(EVENT_TYPES)

    stored = await db.execute(
        text("SELECT api_key FROM third_party WHERE id = :id"), {"id": created["id"]}
    )
    raw = stored.scalar_one()
    assert raw.startswith("enc:v1:") and "n8n-key" not in raw

    url = f"/api/third-party/{created['id']}"
    changed = await client.patch(
        url,
        json={"webhook_url": PUBLIC_URL, "events": ["post.published"]},
        headers=tenant.headers,
    )
    assert changed.status_code == 200, changed.text
    data = changed.json()
    assert data["receiving_events"] is True
    assert data["events"] == ["post.published"]
    assert data["signing_secret"].startswith("whsec_")

    # The connector's endpoint receives emitted events but is not listed as a webhook.
    ids = await emit(db, tenant.org_id, "post.published", {"n": 1})
    assert len(ids) == 1
    assert (await client.get("/api/webhooks", headers=tenant.headers)).json() == []

    listed = (await client.get("/api/third-party", headers=tenant.headers)).json()
    assert [c["id"] for c in listed] == [created["id"]]

    off = await client.patch(url, json={"enabled": False}, headers=tenant.headers)
    assert off.json()["receiving_events"] is False
    assert await emit(db, tenant.org_id, "post.published", {"n": 2}) == []
    on = await client.patch(url, json={"enabled": True}, headers=tenant.headers)
    assert on.json()["receiving_events"] is True

    # A new key is taken, and never shown back either (only its last four characters).
    rekeyed = await client.patch(url, json={"api_key": "n8n-key-new-98765"}, headers=tenant.headers)
    assert rekeyed.json()["api_key_hint"] == "…8765"
    for answer in (rekeyed, await client.get(url, headers=tenant.headers)):
        assert "n8n-key" not in answer.text
    assert "n8n-key" not in (await client.get("/api/third-party", headers=tenant.headers)).text

    removed = await client.patch(url, json={"webhook_url": None}, headers=tenant.headers)
    assert removed.json()["receiving_events"] is False
    assert await emit(db, tenant.org_id, "post.published", {"n": 3}) == []

    assert (await client.delete(url, headers=tenant.headers)).status_code == 204
    assert (await client.get(url, headers=tenant.headers)).status_code == 404
    assert await emit(db, tenant.org_id, "post.published", {"n": 4}) == []


async def test_bad_input(client: httpx.AsyncClient, tenant: Tenant) -> None:
    base = {"provider": "make", "api_key": "k" * 12}
    cases: list[tuple[dict[str, object], int, str]] = [
        ({"provider": "ifttt"}, 422, "provider"),
        ({"api_key": ""}, 422, "api_key"),
        ({"webhook_url": "http://127.0.0.1/x"}, 400, "webhook_url"),
        ({"webhook_url": "file:///etc/passwd"}, 400, "webhook_url"),
        ({"events": ["post.published"]}, 400, "events"),  # no webhook_url to send them to
        ({"config": {"auth_header": "bad header"}}, 400, "config.auth_header"),
        ({"config": {"auth_header": "webhook-signature"}}, 400, "config.auth_header"),
        ({"config": "nope"}, 422, "config"),
    ]
    for override, status, field in cases:
        response = await client.post(
            "/api/third-party", json={**base, **override}, headers=tenant.headers
        )
        assert response.status_code == status, (override, response.text)
        assert response.json()["field"] == field, (override, response.json())


async def test_roles_and_isolation(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    test_database: TransactionalDatabase,
) -> None:
    body = {"provider": "zapier", "api_key": "zap-key-123456", "webhook_url": PUBLIC_URL}
    created = (await client.post("/api/third-party", json=body, headers=tenant.headers)).json()
    url = f"/api/third-party/{created['id']}"
    member = await make_member(test_database, tenant.org_id)
    seen = await client.get(url, headers=member)
    assert seen.status_code == 200 and seen.json()["signing_secret"] is None
    listed = await client.get("/api/third-party", headers=member)
    assert [c["signing_secret"] for c in listed.json()] == [None]
    assert created["signing_secret"] not in listed.text + seen.text
    assert "zap-key" not in listed.text + seen.text
    assert (await client.post("/api/third-party", json=body, headers=member)).status_code == 403
    assert (await client.patch(url, json={"enabled": False}, headers=member)).status_code == 403
    assert (await client.delete(url, headers=member)).status_code == 403
    theirs = other_tenant.headers
    assert (await client.get(url, headers=theirs)).status_code == 404
    assert (await client.patch(url, json={"enabled": False}, headers=theirs)).status_code == 404
    assert (await client.delete(url, headers=theirs)).status_code == 404
    assert (await client.post(f"{url}/test", headers=theirs)).status_code == 404
    assert (await client.get(f"{url}/deliveries", headers=theirs)).status_code == 404
    assert (await client.get("/api/third-party", headers=theirs)).json() == []


async def test_connector_receives_signed_events_with_its_key(
    fresh_database: Database, receiver: Receiver, configure: Callable[..., None]
) -> None:
    configure()
    owner = await make_tenant(fresh_database)
    app = build_app(fresh_database)
    async with asgi_client(app) as client:
        body = {
            "provider": "make",
            "api_key": "make-secret-key-42",
            "webhook_url": receiver.url("make"),
        }
        response = await client.post("/api/third-party", json=body, headers=owner.headers)
        assert response.status_code == 201, response.text
        connector = response.json()
        assert connector["auth_header"] == "x-make-apikey"
        receiver.configure("make", secret=connector["signing_secret"])

        async with running_worker(fresh_database):
            async with fresh_database.session() as session:
                [event_id] = await emit(session, owner.org_id, "post.failed", {"post": "p1"})
            await eventually(lambda: len(receiver.of("make")) == 1)

        [got] = receiver.of("make")
        assert got.error is None
        assert got.headers["webhook-id"] == event_id
        assert got.headers["x-make-apikey"] == "make-secret-key-42"
        assert got.verified == {
            "type": "post.failed",
            "timestamp": got.verified["timestamp"],
            "data": {"post": "p1"},
        }

        tested = await client.post(
            f"/api/third-party/{connector['id']}/test", headers=owner.headers
        )
        assert tested.status_code == 200 and tested.json()["delivery"]["succeeded"] is True
        log = await client.get(
            f"/api/third-party/{connector['id']}/deliveries", headers=owner.headers
        )
        assert [d["event_type"] for d in log.json()] == ["webhook.test", "post.failed"]

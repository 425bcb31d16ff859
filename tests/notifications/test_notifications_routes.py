"""The notifications list, unread count and mark-read of the app API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import Tenant
from tidings.accounts.models import User
from tidings.core.tenancy import OrgId
from tidings.notifications.models import Notifications
from tidings.notifications.service import notify


async def _backdate_reads(db: AsyncSession, tenant: Tenant) -> None:
    await db.execute(
        update(User)
        .where(User.id == tenant.user_id)
        .values(last_read_notifications=datetime.now(UTC) - timedelta(hours=1))
    )


async def test_list_unread_and_mark_read(
    client: httpx.AsyncClient, db: AsyncSession, tenant: Tenant, other_tenant: Tenant
) -> None:
    await _backdate_reads(db, tenant)
    await notify(db, OrgId(tenant.org_id), "Post failed on X", link="/posts/1")
    await notify(db, OrgId(tenant.org_id), "Channel needs reconnecting")
    await notify(db, OrgId(other_tenant.org_id), "Secret of org B")
    await db.flush()

    listed = await client.get("/api/notifications", headers=tenant.headers)
    assert listed.status_code == 200
    body = listed.json()
    assert {n["content"] for n in body["items"]} == {
        "Post failed on X",
        "Channel needs reconnecting",
    }
    assert all(n["read"] is False for n in body["items"])
    assert body["unread_count"] == 2
    assert (await client.get("/api/notifications/unread-count", headers=tenant.headers)).json() == {
        "unread_count": 2
    }

    marked = await client.post("/api/notifications/mark-read", headers=tenant.headers)
    assert marked.json() == {"unread_count": 0}
    after = (await client.get("/api/notifications", headers=tenant.headers)).json()
    assert all(n["read"] for n in after["items"]) and after["unread_count"] == 0

    # Org B sees only its own.
    theirs = (await client.get("/api/notifications", headers=other_tenant.headers)).json()
    assert [n["content"] for n in theirs["items"]] == ["Secret of org B"]


async def test_soft_deleted_notifications_are_hidden(
    client: httpx.AsyncClient, db: AsyncSession, tenant: Tenant
) -> None:
    await _backdate_reads(db, tenant)
    row = await notify(db, OrgId(tenant.org_id), "gone")
    row.deleted_at = datetime.now(UTC)
    await db.flush()
    body = (await client.get("/api/notifications", headers=tenant.headers)).json()
    assert body == {"items": [], "unread_count": 0, "next_before": None}


async def test_pagination(client: httpx.AsyncClient, db: AsyncSession, tenant: Tenant) -> None:
    start = datetime.now(UTC) - timedelta(minutes=10)
    for i in range(5):
        db.add(
            Notifications(
                organization_id=tenant.org_id,
                content=f"n{i}",
                created_at=start + timedelta(minutes=i),
            )
        )
    await db.flush()
    first = (await client.get("/api/notifications?limit=2", headers=tenant.headers)).json()
    assert [n["content"] for n in first["items"]] == ["n4", "n3"]
    second = (
        await client.get(
            "/api/notifications",
            params={"limit": 2, "before": first["next_before"]},
            headers=tenant.headers,
        )
    ).json()
    assert [n["content"] for n in second["items"]] == ["n2", "n1"]
    bad = await client.get("/api/notifications?limit=1000", headers=tenant.headers)
    assert bad.status_code == 422 and bad.json()["field"] == "limit"
    assert (await client.get("/api/notifications?before=yesterday", headers=tenant.headers)).json()[
        "field"
    ] == "before"


async def test_notifications_of_one_transaction_page_in_order(
    client: httpx.AsyncClient, db: AsyncSession, tenant: Tenant
) -> None:
    # One unit of work (the test's transaction) writes three: none may be skipped or reordered
    # by the "before" cursor.
    for i in range(3):
        await notify(db, OrgId(tenant.org_id), f"same-run-{i}")
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 1}
    for _ in range(4):
        page = (
            await client.get("/api/notifications", params=params, headers=tenant.headers)
        ).json()
        seen += [n["content"] for n in page["items"]]
        if page["next_before"] is None:
            break
        params = {"limit": 1, "before": page["next_before"]}
    assert seen == ["same-run-2", "same-run-1", "same-run-0"]


async def test_notifications_need_a_member(client: httpx.AsyncClient, tenant: Tenant) -> None:
    assert (await client.get("/api/notifications")).status_code == 401
    spoofed = {**tenant.headers, "X-Tidings-Org": "not-my-org"}
    assert (await client.get("/api/notifications", headers=spoofed)).status_code == 404

"""Global super admins: list every organization, impersonate a user (visible and logged)."""

from __future__ import annotations

import logging

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.accounts.helpers import bearer
from tests.conftest import Tenant
from tidings.accounts.models import User, UserSession


async def _make_super_admin(db: AsyncSession, tenant: Tenant) -> None:
    user = await db.get(User, tenant.user_id)
    assert user is not None
    user.is_super_admin = True
    await db.flush()


async def test_only_super_admins_list_all_orgs(
    client: httpx.AsyncClient, db: AsyncSession, tenant: Tenant, other_tenant: Tenant
) -> None:
    assert (await client.get("/api/admin/orgs", headers=tenant.headers)).status_code == 403
    await _make_super_admin(db, tenant)
    listed = await client.get("/api/admin/orgs", headers=tenant.headers)
    assert listed.status_code == 200
    body = listed.json()
    assert body["total"] == 2
    assert {(o["id"], o["members"]) for o in body["items"]} == {
        (tenant.org_id, 1),
        (other_tenant.org_id, 1),
    }
    filtered = (
        await client.get("/api/admin/orgs", params={"q": "org b"}, headers=tenant.headers)
    ).json()
    assert [o["id"] for o in filtered["items"]] == [other_tenant.org_id]
    literal = (
        await client.get("/api/admin/orgs", params={"q": "%"}, headers=tenant.headers)
    ).json()
    assert literal["total"] == 0
    paged = (
        await client.get(
            "/api/admin/orgs", params={"limit": 1, "offset": 1}, headers=tenant.headers
        )
    ).json()
    assert len(paged["items"]) == 1 and paged["total"] == 2
    bad = await client.get("/api/admin/orgs", params={"limit": 0}, headers=tenant.headers)
    assert bad.status_code == 422 and bad.json()["field"] == "limit"


async def test_impersonation_is_visible_logged_and_reversible(
    client: httpx.AsyncClient,
    db: AsyncSession,
    tenant: Tenant,
    other_tenant: Tenant,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="tidings.accounts")
    await _make_super_admin(db, tenant)
    response = await client.post(
        "/api/admin/impersonate", json={"user_id": other_tenant.user_id}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"]["id"] == other_tenant.user_id
    assert body["impersonator"] == {"id": tenant.user_id, "email": tenant.email}
    assert body["organization_id"] == other_tenant.org_id
    assert any(
        "impersonation" in r.getMessage() and other_tenant.user_id in r.getMessage()
        for r in caplog.records
    )
    token = body["token"]
    session = (
        await db.execute(
            UserSession.__table__.select().where(UserSession.impersonator_id == tenant.user_id)
        )
    ).one()
    assert session.user_id == other_tenant.user_id

    me = (await client.get("/api/me", headers=bearer(token))).json()
    assert me["user"]["id"] == other_tenant.user_id
    assert me["impersonator"]["id"] == tenant.user_id
    # The impersonated user's data is reachable, the super admin's powers are not.
    assert (await client.get("/api/orgs/current", headers=bearer(token))).json()[
        "id"
    ] == other_tenant.org_id
    assert (await client.get("/api/admin/orgs", headers=bearer(token))).status_code == 403
    # An impersonation is not the user being online.
    user = await db.get(User, other_tenant.user_id)
    assert user is not None and user.ip is None

    back = await client.request("DELETE", "/api/admin/impersonate", headers=bearer(token))
    assert back.status_code == 200
    assert back.json()["user"]["id"] == tenant.user_id and back.json()["impersonator"] is None
    assert (await client.get("/api/me", headers=bearer(token))).status_code == 401
    assert (
        await client.get("/api/admin/orgs", headers=bearer(back.json()["token"]))
    ).status_code == 200


async def test_impersonation_rules(
    client: httpx.AsyncClient, db: AsyncSession, tenant: Tenant, other_tenant: Tenant
) -> None:
    forbidden = await client.post(
        "/api/admin/impersonate", json={"user_id": tenant.user_id}, headers=other_tenant.headers
    )
    assert forbidden.status_code == 403
    await _make_super_admin(db, tenant)
    unknown = await client.post(
        "/api/admin/impersonate", json={"user_id": "nope"}, headers=tenant.headers
    )
    assert unknown.status_code == 404 and unknown.json()["field"] == "user_id"
    myself = await client.post(
        "/api/admin/impersonate", json={"user_id": tenant.user_id}, headers=tenant.headers
    )
    assert myself.status_code == 400
    empty = await client.post(
        "/api/admin/impersonate", json={"user_id": ""}, headers=tenant.headers
    )
    assert empty.status_code == 422 and empty.json()["field"] == "user_id"
    # Stopping an impersonation needs one.
    not_one = await client.request("DELETE", "/api/admin/impersonate", headers=tenant.headers)
    assert not_one.status_code == 400

"""Members and roles: list, change role, disable, remove; who may do what."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.accounts.helpers import bearer, login, register
from tests.conftest import Tenant
from tidings.core.enums import Role
from tidings.orgs.models import UserOrganization


async def add_member(client: httpx.AsyncClient, tenant: Tenant, email: str, role: str) -> str:
    """Invite ``email`` into the tenant's organization with ``role`` and accept; returns the
    new member's session token (current organization: the tenant's)."""
    invite = await client.post(
        "/api/orgs/current/invites", json={"email": email, "role": role}, headers=tenant.headers
    )
    assert invite.status_code == 201, invite.text
    token = invite.json()["url"].split("token=")[1]
    registered = await register(client, email, invite=token)
    assert registered.status_code == 201, registered.text
    client.cookies.clear()
    return str(registered.json()["token"])


async def _user_id(client: httpx.AsyncClient, token: str) -> str:
    return str((await client.get("/api/me", headers=bearer(token))).json()["user"]["id"])


async def test_list_members(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await add_member(client, tenant, "uma@example.com", "USER")
    members = (await client.get("/api/orgs/current/members", headers=tenant.headers)).json()
    # (One test is one transaction, so both joined "at the same time": compare as sets.)
    assert {(m["email"], m["role"], m["disabled"]) for m in members} == {
        (tenant.email, "ADMIN", False),
        ("uma@example.com", "USER", False),
    }


async def test_admin_changes_role_disables_and_removes(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncSession
) -> None:
    token = await add_member(client, tenant, "vic@example.com", "USER")
    user_id = await _user_id(client, token)
    url = f"/api/orgs/current/members/{user_id}"

    promoted = await client.patch(url, json={"role": "ADMIN"}, headers=tenant.headers)
    assert promoted.status_code == 200 and promoted.json()["role"] == "ADMIN"
    # As an ADMIN, vic may now manage members.
    assert (await client.get("/api/orgs/current/invites", headers=bearer(token))).status_code == 200

    disabled = await client.patch(url, json={"disabled": True}, headers=tenant.headers)
    assert disabled.json()["disabled"] is True
    # A disabled member no longer reaches the organization.
    assert (
        await client.get("/api/orgs/current", headers=bearer(token, tenant.org_id))
    ).status_code == 404
    enabled = await client.patch(url, json={"disabled": False}, headers=tenant.headers)
    assert enabled.json()["disabled"] is False
    assert (await client.get("/api/orgs/current", headers=bearer(token))).status_code == 200

    removed = await client.delete(url, headers=tenant.headers)
    assert removed.status_code == 204
    assert (
        await db.execute(
            select(UserOrganization).where(
                UserOrganization.user_id == user_id,
                UserOrganization.organization_id == tenant.org_id,
            )
        )
    ).scalar_one_or_none() is None
    assert (await client.get("/api/orgs/current", headers=bearer(token))).status_code == 403
    # The account itself remains.
    assert (await login(client, "vic@example.com")).status_code == 200
    assert (await client.delete(url, headers=tenant.headers)).status_code == 404


async def test_user_role_cannot_manage_members(client: httpx.AsyncClient, tenant: Tenant) -> None:
    token = await add_member(client, tenant, "wes@example.com", "USER")
    headers = bearer(token)
    target = f"/api/orgs/current/members/{tenant.user_id}"
    assert (await client.get("/api/orgs/current/members", headers=headers)).status_code == 200
    for method, path, payload in [
        ("PATCH", target, {"role": "USER"}),
        ("DELETE", target, None),
        ("GET", "/api/orgs/current/invites", None),
        ("POST", "/api/orgs/current/invites", {"email": "x@example.com", "role": "ADMIN"}),
        ("POST", "/api/orgs/current/api-key", None),
    ]:
        response = await client.request(method, path, json=payload, headers=headers)
        assert response.status_code == 403, (method, path, response.text)


async def test_nobody_changes_their_own_membership(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    url = f"/api/orgs/current/members/{tenant.user_id}"
    for payload in ({"role": "USER"}, {"disabled": True}):
        response = await client.patch(url, json=payload, headers=tenant.headers)
        assert response.status_code == 400 and response.json()["field"] == "user_id"
    assert (await client.delete(url, headers=tenant.headers)).status_code == 400


async def test_superadmin_rules(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncSession
) -> None:
    admin_token = await add_member(client, tenant, "xena@example.com", "ADMIN")
    admin_id = await _user_id(client, admin_token)
    # An ADMIN may not create SUPERADMINs, nor touch one.
    grant = await client.patch(
        f"/api/orgs/current/members/{admin_id}", json={"role": "SUPERADMIN"}, headers=tenant.headers
    )
    assert grant.status_code == 403 and grant.json()["field"] == "role"
    invite = await client.post(
        "/api/orgs/current/invites",
        json={"email": "boss@example.com", "role": "SUPERADMIN"},
        headers=tenant.headers,
    )
    assert invite.status_code == 403

    owner = (
        await db.execute(select(UserOrganization).where(UserOrganization.user_id == tenant.user_id))
    ).scalar_one()
    owner.role = Role.SUPERADMIN
    await db.flush()
    demote_owner = await client.patch(
        f"/api/orgs/current/members/{tenant.user_id}",
        json={"role": "USER"},
        headers=bearer(admin_token),
    )
    assert demote_owner.status_code == 403
    # A SUPERADMIN may.
    grant = await client.patch(
        f"/api/orgs/current/members/{admin_id}", json={"role": "SUPERADMIN"}, headers=tenant.headers
    )
    assert grant.status_code == 200 and grant.json()["role"] == "SUPERADMIN"


@pytest.mark.parametrize(
    ("payload", "field"),
    [({"role": "OWNER"}, "role"), ({"disabled": "maybe"}, "disabled"), ({"extra": 1}, "extra")],
)
async def test_member_update_validation(
    client: httpx.AsyncClient, tenant: Tenant, payload: dict[str, object], field: str
) -> None:
    token = await add_member(client, tenant, "yan@example.com", "USER")
    user_id = await _user_id(client, token)
    response = await client.patch(
        f"/api/orgs/current/members/{user_id}", json=payload, headers=tenant.headers
    )
    assert response.status_code == 422 and response.json()["field"] == field


async def test_admin_of_one_org_cannot_touch_another(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, db: AsyncSession
) -> None:
    token = await add_member(client, tenant, "zoe@example.com", "USER")
    user_id = await _user_id(client, token)
    url = f"/api/orgs/current/members/{user_id}"
    assert (
        await client.patch(url, json={"role": "ADMIN"}, headers=other_tenant.headers)
    ).status_code == 404
    assert (await client.delete(url, headers=other_tenant.headers)).status_code == 404
    # Pointing the header at org A does not help either.
    spoofed = {**other_tenant.headers, "X-Tidings-Org": tenant.org_id}
    assert (await client.patch(url, json={"role": "ADMIN"}, headers=spoofed)).status_code == 404
    member = (
        await db.execute(select(UserOrganization).where(UserOrganization.user_id == user_id))
    ).scalar_one()
    assert member.role == Role.USER and member.disabled is False

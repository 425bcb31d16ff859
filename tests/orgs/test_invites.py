"""Invites: a signed, expiring, single-use, revocable link that adds a member with a role."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.accounts.helpers import bearer, capture_mail, login, mailed_tokens, register
from tests.conftest import Tenant, TransactionalDatabase, asgi_client, build_app
from tidings.accounts.models import User
from tidings.config import Settings
from tidings.core.enums import Role
from tidings.orgs.models import OrganizationInvite, UserOrganization


async def _invite(
    client: httpx.AsyncClient, tenant: Tenant, email: str, role: str = "USER"
) -> httpx.Response:
    return await client.post(
        "/api/orgs/current/invites", json={"email": email, "role": role}, headers=tenant.headers
    )


def _token(response: httpx.Response) -> str:
    return str(response.json()["url"].split("token=")[1])


async def test_invite_is_mailed_listed_and_previewed(
    client: httpx.AsyncClient, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    capture_mail(caplog)
    response = await _invite(client, tenant, "  New.Person@Example.com ", "ADMIN")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["email"] == "new.person@example.com" and body["role"] == "ADMIN"
    assert body["email_sent"] is True
    assert body["url"].startswith("http://testserver/invite?token=")
    assert mailed_tokens(caplog, "http://testserver/invite") == [_token(response)]

    listed = (await client.get("/api/orgs/current/invites", headers=tenant.headers)).json()
    assert [i["id"] for i in listed] == [body["id"]]

    client.cookies.clear()
    preview = await client.get("/api/invites/preview", params={"token": _token(response)})
    assert preview.status_code == 200
    assert preview.json()["organization_name"] == "Org A"
    assert preview.json()["role"] == "ADMIN"


async def test_register_with_invite_joins_the_inviting_org(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncSession
) -> None:
    token = _token(await _invite(client, tenant, "ann@example.com", "ADMIN"))
    registered = await register(client, "ANN@example.com", invite=token)
    assert registered.status_code == 201, registered.text
    body = registered.json()
    assert body["organization_id"] == tenant.org_id
    me = (await client.get("/api/me", headers=bearer(body["token"]))).json()
    assert me["organizations"] == [{"id": tenant.org_id, "name": "Org A", "role": "ADMIN"}]
    user = await db.get(User, body["user"]["id"])
    invite = (await db.execute(select(OrganizationInvite))).scalar_one()
    assert user is not None and user.invite_id == invite.id
    assert invite.accepted_by_id == user.id and invite.accepted_at is not None
    # Used: gone from the pending list, and the link is dead.
    assert (await client.get("/api/orgs/current/invites", headers=tenant.headers)).json() == []
    again = await register(client, "ann2@example.com", invite=token)
    assert again.status_code == 400 and again.json()["field"] == "token"


async def test_existing_user_accepts_while_signed_in(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    token = _token(await _invite(client, tenant, other_tenant.email))
    accepted = await client.post(
        "/api/invites/accept", json={"token": token}, headers=bearer(other_tenant.token)
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["id"] == tenant.org_id and accepted.json()["role"] == "USER"
    # The accepted organization became current; the own one is still there.
    me = (await client.get("/api/me", headers=bearer(other_tenant.token))).json()
    assert me["current_organization_id"] == tenant.org_id
    assert {o["id"] for o in me["organizations"]} == {tenant.org_id, other_tenant.org_id}
    replay = await client.post(
        "/api/invites/accept", json={"token": token}, headers=bearer(other_tenant.token)
    )
    assert replay.status_code == 400


async def test_invite_for_someone_else_cannot_be_used(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, db: AsyncSession
) -> None:
    token = _token(await _invite(client, tenant, "intended@example.com"))
    stolen = await client.post(
        "/api/invites/accept", json={"token": token}, headers=bearer(other_tenant.token)
    )
    assert stolen.status_code == 400
    hijack = await register(client, "thief@example.com", invite=token)
    assert hijack.status_code == 400 and hijack.json()["field"] == "email"
    assert (
        await db.execute(select(User).where(User.email == "thief@example.com"))
    ).scalar_one_or_none() is None


async def test_forged_expired_revoked_and_replaced_invites(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncSession
) -> None:
    forged = await client.get("/api/invites/preview", params={"token": "abc.def.ghi"})
    assert forged.status_code == 400 and forged.json()["error"] == "invalid_token"

    first = await _invite(client, tenant, "pat@example.com")
    second = await _invite(client, tenant, "pat@example.com", "ADMIN")
    # The newer invite replaces the older one.
    assert (
        await client.get("/api/invites/preview", params={"token": _token(first)})
    ).status_code == 400
    assert (await client.get("/api/invites/preview", params={"token": _token(second)})).json()[
        "role"
    ] == "ADMIN"

    revoked = await client.delete(
        f"/api/orgs/current/invites/{second.json()['id']}", headers=tenant.headers
    )
    assert revoked.status_code == 204
    assert (await register(client, "pat@example.com", invite=_token(second))).status_code == 400
    assert (
        await client.delete(
            f"/api/orgs/current/invites/{second.json()['id']}", headers=tenant.headers
        )
    ).status_code == 404

    third = await _invite(client, tenant, "pat@example.com")
    row = await db.get(OrganizationInvite, third.json()["id"])
    assert row is not None
    row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    await db.flush()
    expired = await register(client, "pat@example.com", invite=_token(third))
    assert expired.status_code == 400 and expired.json()["field"] == "token"
    assert (await client.get("/api/orgs/current/invites", headers=tenant.headers)).json() == []


async def test_invite_validation(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for payload, field in [
        ({"email": "nope", "role": "USER"}, "email"),
        ({"email": "a@example.com", "role": "OWNER"}, "role"),
        ({"email": "a" * 300 + "@example.com"}, "email"),
        ({"role": "USER"}, "email"),
    ]:
        response = await client.post(
            "/api/orgs/current/invites", json=payload, headers=tenant.headers
        )
        assert response.status_code == 422, payload
        assert response.json()["field"] == field
    member = await _invite(client, tenant, tenant.email)
    assert member.status_code == 409 and member.json()["field"] == "email"


async def test_reinvite_brings_back_a_disabled_member(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncSession
) -> None:
    token = _token(await _invite(client, tenant, "ray@example.com"))
    ray = (await register(client, "ray@example.com", invite=token)).json()
    await client.patch(
        f"/api/orgs/current/members/{ray['user']['id']}",
        json={"disabled": True},
        headers=tenant.headers,
    )
    again = _token(await _invite(client, tenant, "ray@example.com", "ADMIN"))
    client.cookies.clear()
    session = (await login(client, "ray@example.com")).json()["token"]
    accepted = await client.post(
        "/api/invites/accept", json={"token": again}, headers=bearer(session)
    )
    assert accepted.status_code == 200, accepted.text
    membership = (
        await db.execute(
            select(UserOrganization).where(UserOrganization.user_id == ray["user"]["id"])
        )
    ).scalar_one()
    assert membership.disabled is False and membership.role == Role.ADMIN


async def test_other_org_cannot_revoke_or_list(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    invite = (await _invite(client, tenant, "sam@example.com")).json()
    assert (
        await client.delete(
            f"/api/orgs/current/invites/{invite['id']}", headers=other_tenant.headers
        )
    ).status_code == 404
    assert (
        await client.get("/api/orgs/current/invites", headers=other_tenant.headers)
    ).json() == []
    assert (await client.get("/api/orgs/current/invites", headers=tenant.headers)).json()


async def test_invites_work_when_registration_is_disabled(
    test_database: TransactionalDatabase, tenant: Tenant
) -> None:
    app = build_app(test_database, settings=Settings(disable_registration=True))
    async with asgi_client(app) as client:
        assert (await register(client, "walk-in@example.com")).status_code == 403
        token = _token(await _invite(client, tenant, "guest@example.com"))
        assert (await register(client, "guest@example.com", invite=token)).status_code == 201

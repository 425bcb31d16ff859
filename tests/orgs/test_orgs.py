"""Organizations: create, list, read, rename, switch; the Public API key."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.accounts.helpers import bearer
from tests.conftest import Tenant, TransactionalDatabase, asgi_client
from tidings.accounts.auth import ApiKeyOrg
from tidings.accounts.models import User
from tidings.accounts.service import open_session
from tidings.accounts.sessions import create_session
from tidings.core.enums import Provider, Role
from tidings.core.errors import install_error_handlers
from tidings.orgs.models import Organization, UserOrganization


async def test_create_list_get_and_rename(client: httpx.AsyncClient, tenant: Tenant) -> None:
    auth = bearer(tenant.token)
    created = await client.post(
        "/api/orgs", json={"name": "  Second  ", "description": "the other one"}, headers=auth
    )
    assert created.status_code == 201, created.text
    second = created.json()
    assert second["name"] == "Second" and second["role"] == "ADMIN"
    assert second["description"] == "the other one" and second["api_key_set"] is False

    listed = (await client.get("/api/orgs", headers=auth)).json()
    assert {o["id"] for o in listed} == {tenant.org_id, second["id"]}

    got = await client.get(f"/api/orgs/{second['id']}", headers=auth)
    assert got.status_code == 200 and got.json()["name"] == "Second"

    renamed = await client.patch(
        f"/api/orgs/{second['id']}", json={"name": "Renamed"}, headers=auth
    )
    assert renamed.status_code == 200 and renamed.json()["name"] == "Renamed"
    assert renamed.json()["description"] == "the other one"


async def test_org_input_is_validated(client: httpx.AsyncClient, tenant: Tenant) -> None:
    auth = bearer(tenant.token)
    for payload, field in [
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "ok", "description": "d" * 2001}, "description"),
        ({}, "name"),
    ]:
        response = await client.post("/api/orgs", json=payload, headers=auth)
        assert response.status_code == 422, payload
        assert response.json()["field"] == field
    bad = await client.patch(f"/api/orgs/{tenant.org_id}", json={"name": "   "}, headers=auth)
    assert bad.status_code == 422 and bad.json()["field"] == "name"
    long_id = await client.get("/api/orgs/" + "x" * 101, headers=auth)
    assert long_id.status_code == 422
    nul_id = await client.get("/api/orgs/a%00b", headers=auth)
    assert nul_id.status_code == 422 and nul_id.json()["field"] == "org_id"
    nul_name = await client.post("/api/orgs", json={"name": "a\u0000"}, headers=auth)
    assert nul_name.status_code == 422 and nul_name.json()["field"] == "name"


async def test_only_admins_rename_and_others_cannot_see(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, db: AsyncSession
) -> None:
    from tests.orgs.test_members import add_member

    user_token = await add_member(client, tenant, "writer@example.com", "USER")
    forbidden = await client.patch(
        f"/api/orgs/{tenant.org_id}", json={"name": "Mine now"}, headers=bearer(user_token)
    )
    assert forbidden.status_code == 403
    assert (await client.get(f"/api/orgs/{tenant.org_id}", headers=bearer(user_token))).json()[
        "role"
    ] == "USER"

    for method in ("GET", "PATCH"):
        response = await client.request(
            method,
            f"/api/orgs/{tenant.org_id}",
            json={"name": "stolen"} if method == "PATCH" else None,
            headers=bearer(other_tenant.token),
        )
        assert response.status_code == 404
    org = await db.get(Organization, tenant.org_id)
    assert org is not None and org.name == "Org A"


async def test_switch_current_organization(client: httpx.AsyncClient, tenant: Tenant) -> None:
    auth = bearer(tenant.token)
    second = (await client.post("/api/orgs", json={"name": "Second"}, headers=auth)).json()
    assert (await client.get("/api/orgs/current", headers=auth)).json()["id"] == tenant.org_id

    switched = await client.post(
        "/api/orgs/switch", json={"organization_id": second["id"]}, headers=auth
    )
    assert switched.status_code == 200 and switched.json()["id"] == second["id"]
    cookie = next(
        c for c in switched.headers.get_list("set-cookie") if c.startswith("tidings_org=")
    )
    assert second["id"] in cookie
    # The session remembers it (no cookie, no header) ...
    client.cookies.clear()
    assert (await client.get("/api/orgs/current", headers=auth)).json()["id"] == second["id"]
    assert (await client.get("/api/me", headers=auth)).json()["current_organization_id"] == second[
        "id"
    ]
    # ... the header wins for one request, and the cookie works too.
    header = {**auth, "X-Tidings-Org": tenant.org_id}
    assert (await client.get("/api/orgs/current", headers=header)).json()["id"] == tenant.org_id
    client.cookies.set("tidings_org", tenant.org_id)
    assert (await client.get("/api/orgs/current", headers=auth)).json()["id"] == tenant.org_id


async def test_without_a_chosen_organization_me_and_requests_agree(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    # Two memberships made in one transaction share created_at; the organization a request
    # acts in, the one a new session starts in and the one /api/me calls current must be
    # the same one all the same.
    user = User(email="two.orgs@example.com", provider_name=Provider.LOCAL)
    db.add(user)
    await db.flush()
    for org_id, membership_id in (("org-zz", "membership-1"), ("org-aa", "membership-2")):
        db.add(Organization(id=org_id, name=org_id))
        await db.flush()
        db.add(
            UserOrganization(
                id=membership_id, user_id=user.id, organization_id=org_id, role=Role.ADMIN
            )
        )
        await db.flush()
    token, _ = await create_session(db, user.id, organization_id=None)
    signed = await open_session(db, user, ip=None, agent=None)
    assert signed.session.organization_id == "org-aa"
    for auth in (bearer(token), bearer(signed.token)):
        me = (await client.get("/api/me", headers=auth)).json()
        acting = (await client.get("/api/orgs/current", headers=auth)).json()
        assert me["current_organization_id"] == acting["id"] == "org-aa"


async def test_cannot_switch_to_or_act_in_a_foreign_organization(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    auth = bearer(other_tenant.token)
    response = await client.post(
        "/api/orgs/switch", json={"organization_id": tenant.org_id}, headers=auth
    )
    assert response.status_code == 404
    assert (
        await client.get("/api/orgs/current", headers={**auth, "X-Tidings-Org": tenant.org_id})
    ).status_code == 404
    bad = await client.post("/api/orgs/switch", json={"organization_id": ""}, headers=auth)
    assert bad.status_code == 422 and bad.json()["field"] == "organization_id"


def _public_app(test_database: TransactionalDatabase) -> FastAPI:
    """A minimal app whose one route is guarded by the Public API key dependency."""
    app = FastAPI()
    app.state.database = test_database
    install_error_handlers(app)

    @app.get("/whoami")
    async def whoami(caller: ApiKeyOrg) -> dict[str, Any]:
        return {"org": caller.organization_id, "via": caller.via, "admin": caller.is_admin}

    return app


async def test_api_key_rotation_and_authentication(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    db: AsyncSession,
    test_database: TransactionalDatabase,
) -> None:
    rotated = await client.post("/api/orgs/current/api-key", headers=tenant.headers)
    assert rotated.status_code == 201
    key = rotated.json()["api_key"]
    assert key.startswith("tdg_") and len(key) > 40
    org = (
        await db.execute(
            select(Organization)
            .where(Organization.id == tenant.org_id)
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    assert org.api_key is not None and key not in org.api_key
    assert (await client.get("/api/orgs/current", headers=tenant.headers)).json()["api_key_set"]

    async with asgi_client(_public_app(test_database)) as public:
        ok = await public.get("/whoami", headers={"Authorization": key})
        assert ok.json() == {"org": tenant.org_id, "via": "api_key", "admin": True}
        assert (
            await public.get("/whoami", headers={"Authorization": f"Bearer {key}"})
        ).status_code == 200
        assert (
            await public.get("/whoami", headers={"Authorization": "tdg_wrong"})
        ).status_code == 401
        assert (await public.get("/whoami")).status_code == 401

        # Rotating again: the old key stops working at once.
        newer = (await client.post("/api/orgs/current/api-key", headers=tenant.headers)).json()
        assert (await public.get("/whoami", headers={"Authorization": key})).status_code == 401
        assert (await public.get("/whoami", headers={"Authorization": newer["api_key"]})).json()[
            "org"
        ] == tenant.org_id

        # Another organization's key names that organization only.
        theirs = (
            await client.post("/api/orgs/current/api-key", headers=other_tenant.headers)
        ).json()["api_key"]
        assert (await public.get("/whoami", headers={"Authorization": theirs})).json()[
            "org"
        ] == other_tenant.org_id

"""Tenant isolation of the whole app API, route by route, found by walking the app's routes.

Organization A (``tenant``) owns one row of every kind; organization B (``other_tenant``, a
signed-in ADMIN with its own Public API key) then calls every route under ``/api/``:

- a route with path parameters is called with A's ids and must answer 404 (403 for routes only
  global super admins may call), whatever the method;
- a route without path parameters that acts in an organization (``Member`` / ``Admin``) is called
  with B's session pointed at A (``X-Tidings-Org: <A>``) and must answer 403 or 404;
- every authenticated ``GET`` without path parameters, called as B, must not mention any of A's
  ids.

Routes added later join automatically. A path parameter nobody registered FAILS the test with a
message saying how to register it — nothing is skipped silently. To register the rows of your
domain, add ``tests/<domain>/isolation_factories.py`` (see :mod:`tests.isolation_fixtures` for
the decorators ``isolation_factory``, ``isolation_body`` and ``not_tenant_scoped``). JSON bodies
and required query parameters are generated from the OpenAPI schema; when a generated body does
not validate (the route answers 422 instead of 404), register one with ``isolation_body``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import Tenant, asgi_client, build_app
from tests.isolation_fixtures import (
    BODIES,
    FACTORIES,
    NOT_TENANT_SCOPED,
    OwnerContext,
    factory_for,
    load_domain_registrations,
)
from tidings.accounts import auth
from tidings.accounts.auth import DbSession, Member
from tidings.core.tenancy import OrgId
from tidings.orgs.service import rotate_api_key

_SKIP_METHODS = {"HEAD", "OPTIONS"}

_AUTH_KINDS: list[tuple[str, Callable[..., Any]]] = [
    ("api_key", auth.resolve_api_key_org),
    ("super_admin", auth._super_admin),
    ("member", auth.resolve_member),
    ("user", auth.session_of_request),
]


@dataclass(frozen=True)
class ApiRoute:
    method: str
    path: str
    params: tuple[str, ...]
    auth: str  # "api_key" | "super_admin" | "member" | "user" | "public"

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _calls(dependant: Any) -> set[Any]:
    found = {dependant.call}
    for sub in dependant.dependencies:
        found |= _calls(sub)
    return found


def _route_objects(app: FastAPI) -> list[Any]:
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before included routers became contexts
        return list(app.routes)
    return list(iter_route_contexts(app.routes))


def api_routes(app: FastAPI) -> list[ApiRoute]:
    """Every (method, path) of the app under /api/ served by a FastAPI endpoint."""
    routes = []
    for route in _route_objects(app):
        path = getattr(route, "path", None) or ""
        dependant = getattr(route, "dependant", None)
        if not path.startswith("/api/") or dependant is None:
            continue
        calls = _calls(dependant)
        kind = next((name for name, fn in _AUTH_KINDS if fn in calls), "public")
        params = tuple(p.name for p in dependant.path_params)
        for method in sorted((route.methods or set()) - _SKIP_METHODS):
            routes.append(ApiRoute(method, path, params, kind))
    return routes


# --- request bodies from the OpenAPI schema ------------------------------------------------


def _resolve(schema: Mapping[str, Any], spec: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in schema:
        node: Any = spec
        for part in str(schema["$ref"]).lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def sample(schema: Mapping[str, Any], spec: Mapping[str, Any], depth: int = 0) -> Any:
    """A minimal value that satisfies ``schema`` (required fields only)."""
    schema = _resolve(schema, spec)
    if depth > 8:
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    if schema.get("examples"):
        return schema["examples"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [o for o in schema[key] if _resolve(o, spec).get("type") != "null"]
            return sample(options[0] if options else schema[key][0], spec, depth + 1)
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(_resolve(part, spec))
        return sample(merged, spec, depth + 1)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {
            name: sample(props.get(name, {}), spec, depth + 1)
            for name in schema.get("required", [])
        }
    if kind == "array":
        return [sample(schema.get("items", {}), spec, depth + 1)] * int(schema.get("minItems", 0))
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "email":
            return "isolation@example.com"
        if fmt == "date-time":
            return (datetime.now(UTC) + timedelta(days=1)).isoformat()
        if fmt == "date":
            return (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
        if fmt in ("uri", "url"):
            return "https://example.com/"
        return "x" * max(1, int(schema.get("minLength", 1)))
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1))
    if kind == "boolean":
        return False
    return None


# --- the checker -------------------------------------------------------------------------


class IsolationChecker:
    """Runs the three checks of this module against one app; returns readable failures."""

    def __init__(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        db: AsyncSession,
        owner: Tenant,
        intruder: Tenant,
    ) -> None:
        self.app = app
        self.client = client
        self.db = db
        self.owner = owner
        self.intruder = intruder
        self.routes = api_routes(app)
        self.spec: dict[str, Any] = app.openapi()
        self.ids: dict[str, dict[str, str]] = {}
        self.intruder_key = ""

    async def prepare(self) -> None:
        """Create A's rows (every registered factory, once) and B's API key."""
        load_domain_registrations()
        context = OwnerContext(self.db, self.owner)
        for registration in FACTORIES:
            if registration.name not in self.ids:
                self.ids[registration.name] = dict(await registration.factory(context))
        self.intruder_key = await rotate_api_key(self.db, OrgId(self.intruder.org_id))
        await self.db.flush()

    def owner_ids(self) -> set[str]:
        """A's row ids (values that are not ids, such as a tool name, are not secrets)."""
        values = {self.owner.org_id, self.owner.user_id}
        for ids in self.ids.values():
            values |= {v for v in ids.values() if len(v) >= 16}
        return values

    def _headers(self, route: ApiRoute) -> dict[str, str]:
        if route.auth == "api_key":
            return {"Authorization": self.intruder_key}
        return dict(self.intruder.headers)

    def _request_parts(self, route: ApiRoute, values: dict[str, str]) -> tuple[dict[str, Any], Any]:
        operation = self.spec.get("paths", {}).get(route.path, {}).get(route.method.lower(), {})
        query = {
            p["name"]: sample(p.get("schema", {}), self.spec)
            for p in operation.get("parameters", [])
            if p.get("in") == "query" and p.get("required")
        }
        registered = BODIES.get((route.method, route.path))
        if registered is not None:
            return query, registered(values)
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" in content:
            return query, sample(content["application/json"].get("schema", {}), self.spec)
        return query, None

    async def call(
        self, route: ApiRoute, url: str, values: dict[str, str], headers: dict[str, str]
    ) -> httpx.Response:
        query, body = self._request_parts(route, values)
        return await self.client.request(
            route.method,
            url,
            params=query,
            content=None if body is None else json.dumps(body),
            headers={**headers, "Content-Type": "application/json"}
            if body is not None
            else headers,
        )

    async def check_routes_with_ids(self) -> list[str]:
        failures = []
        for route in self.routes:
            if not route.params or route.path in NOT_TENANT_SCOPED:
                continue
            values: dict[str, str] = {}
            missing = []
            for param in route.params:
                registration = factory_for(param, route.path)
                if registration is None:
                    missing.append(param)
                else:
                    values[param] = self.ids[registration.name][param]
            if missing:
                failures.append(
                    f"{route}: no isolation factory for path parameter(s) {missing}. Register "
                    "one in tests/<domain>/isolation_factories.py with @isolation_factory(...), "
                    "or declare the route with not_tenant_scoped(path, reason) "
                    "(see tests/test_tenant_isolation.py)"
                )
                continue
            url = route.path.format(**values)
            response = await self.call(route, url, values, self._headers(route))
            expected = {403} if route.auth == "super_admin" else {404}
            if response.status_code not in expected:
                hint = ""
                if response.status_code in (400, 422):
                    hint = (
                        " (the request itself was refused before the row was looked up: "
                        "register a valid body with @isolation_body)"
                    )
                failures.append(
                    f"{route}: organization B got {response.status_code} for organization A's "
                    f"row, expected {sorted(expected)}{hint}: {response.text[:300]}"
                )
        return failures

    async def check_routes_without_ids(self) -> list[str]:
        failures = []
        spoofed = {**self.intruder.headers, "X-Tidings-Org": self.owner.org_id}
        for route in self.routes:
            if route.params or route.auth != "member":
                continue
            response = await self.call(route, route.path, {}, spoofed)
            if response.status_code not in (403, 404):
                failures.append(
                    f"{route}: a member of B pointing X-Tidings-Org at A got "
                    f"{response.status_code}, expected 403/404: {response.text[:300]}"
                )
        return failures

    async def check_lists_do_not_leak(self) -> list[str]:
        failures = []
        secrets = self.owner_ids()
        for route in self.routes:
            if route.params or route.method != "GET" or route.auth == "public":
                continue
            response = await self.call(route, route.path, {}, self._headers(route))
            leaked = sorted(s for s in secrets if s in response.text)
            if leaked:
                failures.append(f"{route}: organization B's answer contains A's ids {leaked}")
        return failures


async def tenant_digest(db: AsyncSession, org_id: str) -> dict[str, str]:
    """A digest of every row of organization ``org_id``, table by table (every table with an
    organization column, and the organization itself)."""
    from tidings.core.orm import Base

    digests: dict[str, str] = {}
    for table in Base.metadata.sorted_tables:
        if table.name == "organization":
            column = table.c.id
        else:
            column = table.c.get("organization_id")
            if column is None:
                column = table.c.get("org_id")
        if column is None:
            continue
        digests[table.name] = (
            await db.execute(
                text(
                    f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                    f'FROM "{table.name}" t WHERE "{column.name}" = :org'
                ),
                {"org": org_id},
            )
        ).scalar_one()
    return digests


async def test_every_route_hides_other_organizations(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncSession, tenant: Tenant, other_tenant: Tenant
) -> None:
    checker = IsolationChecker(app, client, db, tenant, other_tenant)
    await checker.prepare()
    assert any(r.params for r in checker.routes), "no route with an id found: is the walk broken?"
    before = await tenant_digest(db, tenant.org_id)
    failures = (
        await checker.check_routes_with_ids()
        + await checker.check_routes_without_ids()
        + await checker.check_lists_do_not_leak()
    )
    assert not failures, "tenant isolation failures:\n" + "\n".join(failures)
    # Refused is not enough: nothing of A may have changed on the way (a write before the
    # ownership check, a soft delete answered 404).
    after = await tenant_digest(db, tenant.org_id)
    changed = sorted(name for name in before if before[name] != after[name])
    assert not changed, f"organization B's calls changed organization A's rows in {changed}"


# --- the checker checks itself -----------------------------------------------------------


def _app_with(test_database: Any, router: APIRouter) -> FastAPI:
    app: FastAPI = build_app(test_database)
    app.include_router(router)
    return app


async def test_an_unregistered_path_parameter_fails(
    test_database: Any, db: AsyncSession, tenant: Tenant, other_tenant: Tenant
) -> None:
    router = APIRouter()

    @router.get("/api/isolation-probe/{gadget_id}")
    async def probe(gadget_id: str, caller: Member) -> dict[str, str]:
        return {"id": gadget_id}

    app = _app_with(test_database, router)
    async with asgi_client(app) as client:
        checker = IsolationChecker(app, client, db, tenant, other_tenant)
        await checker.prepare()
        failures = await checker.check_routes_with_ids()
    [failure] = [f for f in failures if "isolation-probe" in f]
    assert "gadget_id" in failure and "@isolation_factory" in failure


async def test_a_leaky_route_is_caught(
    test_database: Any, db: AsyncSession, tenant: Tenant, other_tenant: Tenant
) -> None:
    from sqlalchemy import select

    from tidings.orgs.models import Organization

    router = APIRouter()

    # Two classic mistakes: looking a row up by id without the organization, and listing
    # rows without the organization filter.
    @router.get("/api/orgs/{org_id}/leaky")
    async def leaky(org_id: str, caller: Member, session: DbSession) -> dict[str, str]:
        org = await session.get(Organization, org_id)
        return {"name": org.name if org else ""}

    @router.get("/api/leaky-list")
    async def leaky_list(caller: Member, session: DbSession) -> list[str]:
        return list((await session.execute(select(Organization.id))).scalars())

    app = _app_with(test_database, router)
    async with asgi_client(app) as client:
        checker = IsolationChecker(app, client, db, tenant, other_tenant)
        await checker.prepare()
        by_id = await checker.check_routes_with_ids()
        lists = await checker.check_lists_do_not_leak()
    assert any("/api/orgs/{org_id}/leaky" in f and "got 200" in f for f in by_id)
    assert any("/api/leaky-list" in f and tenant.org_id in f for f in lists)


async def test_a_write_answered_404_is_caught(
    test_database: Any, db: AsyncSession, tenant: Tenant, other_tenant: Tenant
) -> None:
    from tidings.orgs.models import Organization

    router = APIRouter()

    # Changes the row first and only then says it is not there.
    @router.post("/api/orgs/{org_id}/sneaky")
    async def sneaky(org_id: str, caller: Member, session: DbSession) -> JSONResponse:
        org = await session.get(Organization, org_id)
        if org is not None:
            org.description = "touched by someone else"
        return JSONResponse({"error": "not_found"}, status_code=404)

    app = _app_with(test_database, router)
    async with asgi_client(app) as client:
        checker = IsolationChecker(app, client, db, tenant, other_tenant)
        await checker.prepare()
        before = await tenant_digest(db, tenant.org_id)
        await checker.check_routes_with_ids()
        after = await tenant_digest(db, tenant.org_id)
    assert [name for name in before if before[name] != after[name]] == ["organization"]


def test_routes_are_found_with_their_authentication(app: FastAPI) -> None:
    routes = {str(r): r for r in api_routes(app)}
    assert routes["GET /api/orgs/{org_id}"].params == ("org_id",)
    assert routes["GET /api/orgs/current/members"].auth == "member"
    assert routes["POST /api/orgs/current/api-key"].auth == "member"  # Admin builds on Member
    assert routes["GET /api/admin/orgs"].auth == "super_admin"
    assert routes["GET /api/me"].auth == "user"
    assert routes["POST /api/auth/login"].auth == "public"

"""Registration, sign-in, sessions, logout and their limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.accounts.helpers import PASSWORD, bearer, login, register
from tests.conftest import TransactionalDatabase, asgi_client, build_app, make_tenant
from tidings.accounts import limits
from tidings.accounts.models import User, UserSession
from tidings.config import Settings
from tidings.core.enums import Provider, Role
from tidings.db import Database
from tidings.orgs.models import Organization, UserOrganization


async def _count(db: AsyncSession, model: type) -> int:
    return int((await db.execute(select(func.count()).select_from(model))).scalar_one())


async def test_register_creates_user_org_admin_membership_and_session(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    response = await register(
        client, "  Alice@Example.COM ", name="Alice", organization_name="Alice & Co"
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["user"]["email"] == "alice@example.com"
    assert body["user"]["provider_name"] == "LOCAL"
    assert body["user"]["name"] == "Alice"
    assert "password" not in body["user"]
    org_id = body["organization_id"]

    cookie = response.headers.get_list("set-cookie")
    session_cookie = next(c for c in cookie if c.startswith("tidings_session="))
    assert "HttpOnly" in session_cookie
    assert "SameSite=lax" in session_cookie or "samesite=lax" in session_cookie.lower()
    assert "Secure" not in session_cookie  # http public URL in tests
    assert body["token"] in session_cookie

    user = (await db.execute(select(User).where(User.id == body["user"]["id"]))).scalar_one()
    assert user.password is not None and user.password.startswith("$argon2id$")
    membership = (
        await db.execute(select(UserOrganization).where(UserOrganization.user_id == user.id))
    ).scalar_one()
    assert membership.organization_id == org_id and membership.role == Role.ADMIN
    org = await db.get(Organization, org_id)
    assert org is not None and org.name == "Alice & Co"

    # The token works as a Bearer header and as the cookie the client kept.
    me = await client.get("/api/me", headers=bearer(body["token"]))
    assert me.status_code == 200
    assert me.json()["current_organization_id"] == org_id
    assert me.json()["organizations"] == [{"id": org_id, "name": "Alice & Co", "role": "ADMIN"}]
    assert (await client.get("/api/me")).status_code == 200


async def test_register_default_org_name(client: httpx.AsyncClient) -> None:
    body = (await register(client, "bob@example.com", name="Bob")).json()
    orgs = await client.get("/api/orgs", headers=bearer(body["token"]))
    assert orgs.json()[0]["name"] == "Bob's organization"


async def test_register_email_is_unique_case_insensitively(client: httpx.AsyncClient) -> None:
    assert (await register(client, "carol@example.com")).status_code == 201
    again = await register(client, "CAROL@example.com")
    assert again.status_code == 409
    assert again.json()["field"] == "email"


async def test_register_bad_input_names_the_field_and_creates_nothing(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    users, orgs = await _count(db, User), await _count(db, Organization)
    cases = [
        ({"email": "not-an-email", "password": PASSWORD}, "email"),
        ({"email": "a@b", "password": PASSWORD}, "email"),
        ({"email": "x" * 300 + "@example.com", "password": PASSWORD}, "email"),
        ({"email": "d@example.com", "password": "short"}, "password"),
        ({"email": "d@example.com", "password": "p" * 300}, "password"),
        ({"email": "d@example.com", "password": PASSWORD, "name": "n" * 201}, "name"),
        (
            {"email": "d@example.com", "password": PASSWORD, "organization_name": "o" * 201},
            "organization_name",
        ),
        ({"email": "d@example.com", "password": PASSWORD, "organization_name": "   "}, None),
        ({"email": "d@example.com", "password": PASSWORD, "is_super_admin": True}, None),
        # PostgreSQL text cannot hold NUL: refused up front, not a 500.
        ({"email": "d@example.com", "password": PASSWORD, "name": "a\u0000b"}, "name"),
        ({"email": "d\u0000@example.com", "password": PASSWORD}, "email"),
        ({"password": PASSWORD}, "email"),
    ]
    for payload, field in cases:
        response = await client.post("/api/auth/register", json=payload)
        assert response.status_code == 422, (payload, response.text)
        if field:
            assert response.json()["field"] == field, response.json()
    assert await _count(db, User) == users
    assert await _count(db, Organization) == orgs


async def test_registration_disabled_allows_only_the_first_organization(
    test_database: TransactionalDatabase,
) -> None:
    app = build_app(test_database, settings=Settings(disable_registration=True))
    async with asgi_client(app) as client:
        first = await register(client, "first@example.com")
        assert first.status_code == 201
        second = await register(client, "second@example.com")
        assert second.status_code == 403
        assert "registration is disabled" in second.json()["message"]


async def test_login_records_the_sign_in(client: httpx.AsyncClient, db: AsyncSession) -> None:
    await register(client, "dave@example.com")
    before = datetime.now(UTC) - timedelta(seconds=1)
    response = await client.post(
        "/api/auth/login",
        json={"email": "DAVE@example.com", "password": PASSWORD},
        headers={"User-Agent": "pytest-agent/1.0"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    user = await db.get(User, body["user"]["id"], populate_existing=True)
    assert user is not None
    assert user.ip == "127.0.0.1"
    assert user.agent == "pytest-agent/1.0"
    assert user.last_online >= before
    session = (
        await db.execute(select(UserSession).where(UserSession.user_id == user.id))
    ).scalars()
    assert len(list(session)) == 2  # registration and this sign-in
    me = await client.get("/api/me", headers=bearer(body["token"]))
    assert me.json()["user"]["email"] == "dave@example.com"


async def test_login_failures_look_the_same(client: httpx.AsyncClient, db: AsyncSession) -> None:
    reg = (await register(client, "erin@example.com")).json()
    wrong = await login(client, "erin@example.com", "wrong password!")
    unknown = await login(client, "nobody@example.com")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["message"] == unknown.json()["message"] == "invalid email or password"

    user = await db.get(User, reg["user"]["id"])
    assert user is not None
    user.activated = False
    await db.flush()
    disabled = await login(client, "erin@example.com")
    assert disabled.status_code == 401
    # A deactivated user's existing session stops working too.
    assert (await client.get("/api/me", headers=bearer(reg["token"]))).status_code == 401


async def test_login_bad_input(client: httpx.AsyncClient) -> None:
    assert (await client.post("/api/auth/login", json={"email": "a@example.com"})).json()[
        "field"
    ] == "password"
    long = await client.post(
        "/api/auth/login", json={"email": "a@example.com", "password": "x" * 1000}
    )
    assert long.status_code == 422 and long.json()["field"] == "password"
    assert (await client.post("/api/auth/login", content=b"{not json")).status_code == 422


async def test_oauth_user_cannot_sign_in_with_a_password(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    db.add(User(email="gh@example.com", provider_name=Provider.GITHUB, provider_id="42"))
    await db.flush()
    assert (await login(client, "gh@example.com")).status_code == 401


async def test_login_is_rate_limited_per_account(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert limits.LOGIN_PER_ACCOUNT.limit <= 10  # the real limit; a small one keeps it fast
    monkeypatch.setattr(limits, "LOGIN_PER_ACCOUNT", limits.Limit(4, 900))
    await register(client, "frank@example.com")
    statuses = [
        (await login(client, "frank@example.com", "bad guess!")).status_code for _ in range(4)
    ]
    assert statuses == [401] * 4
    limited = await login(client, "frank@example.com")  # even the right password
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["error"] == "rate_limited"
    # Another account from the same address is not blocked by this one's limit.
    assert (await login(client, "other@example.com", "bad guess!")).status_code == 401


async def test_login_is_rate_limited_per_ip(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert limits.LOGIN_PER_IP.limit <= 50  # the real limit; a small one keeps the test fast
    monkeypatch.setattr(limits, "LOGIN_PER_IP", limits.Limit(5, 900))
    statuses = [
        (await login(client, f"u{i}@example.com", "bad guess!")).status_code for i in range(5)
    ]
    assert statuses == [401] * 5
    limited = await login(client, "u99@example.com")
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


async def test_registration_is_rate_limited_per_ip(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert limits.REGISTER_PER_IP.limit <= 20
    monkeypatch.setattr(limits, "REGISTER_PER_IP", limits.Limit(3, 3600))
    for i in range(3):
        assert (await register(client, f"r{i}@example.com")).status_code == 201
    limited = await register(client, "r10@example.com")
    assert limited.status_code == 429 and "Retry-After" in limited.headers


async def test_password_change_is_rate_limited_with_real_commits(
    fresh_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each wrong guess rolls its request back; the counter must survive that (it is committed
    # on its own), which only a database with real commits shows.
    monkeypatch.setattr(limits, "PASSWORD_CHANGE_PER_ACCOUNT", limits.Limit(3, 900))
    tenant = await make_tenant(fresh_database)
    async with asgi_client(build_app(fresh_database)) as client:
        guesses = [
            (
                await client.post(
                    "/api/auth/password",
                    json={"current_password": f"guess {i}", "new_password": "n" * 12},
                    headers=bearer(tenant.token),
                )
            ).status_code
            for i in range(4)
        ]
    assert guesses == [400, 400, 400, 429]


async def test_logout_revokes_the_session_and_clears_cookies(client: httpx.AsyncClient) -> None:
    token = (await register(client, "gina@example.com")).json()["token"]
    other = (await login(client, "gina@example.com")).json()["token"]
    response = await client.post("/api/auth/logout", headers=bearer(token))
    assert response.status_code == 204
    cleared = response.headers.get_list("set-cookie")
    assert any(c.startswith('tidings_session=""') or "Max-Age=0" in c for c in cleared)
    assert (await client.get("/api/me", headers=bearer(token))).status_code == 401
    # Only that session ended.
    assert (await client.get("/api/me", headers=bearer(other))).status_code == 200
    # Logging out again (or without a session) is harmless.
    assert (await client.post("/api/auth/logout", headers=bearer(token))).status_code == 204


async def test_unauthenticated_and_forged_sessions(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/me")).status_code == 401
    forged = await client.get("/api/me", headers=bearer("not-a-real-token"))
    assert forged.status_code == 401


async def test_expired_session_is_refused(client: httpx.AsyncClient, db: AsyncSession) -> None:
    body = (await register(client, "hank@example.com")).json()
    for row in (await db.execute(select(UserSession))).scalars():
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    await db.flush()
    assert (await client.get("/api/me", headers=bearer(body["token"]))).status_code == 401


async def test_cookie_is_secure_behind_https(test_database: TransactionalDatabase) -> None:
    app = build_app(test_database, settings=Settings(public_url="https://tidings.example.com"))
    async with asgi_client(app) as client:
        response = await register(client, "ivy@example.com")
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("tidings_session=")
    )
    assert "Secure" in cookie and "HttpOnly" in cookie


async def test_profile_update(client: httpx.AsyncClient) -> None:
    token = (await register(client, "jo@example.com", name="Jo")).json()["token"]
    response = await client.patch(
        "/api/me",
        json={"last_name": "March", "bio": "writes", "timezone_name": "Europe/Paris"},
        headers=bearer(token),
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Jo"  # untouched
    assert response.json()["timezone_name"] == "Europe/Paris"
    bad = await client.patch("/api/me", json={"timezone_name": "Mars/Base"}, headers=bearer(token))
    assert bad.status_code == 422 and bad.json()["field"] == "timezone_name"
    big = await client.patch("/api/me", json={"bio": "b" * 5000}, headers=bearer(token))
    assert big.status_code == 422 and big.json()["field"] == "bio"

"""Signing in with GitHub, Google and a generic OpenID Connect provider, against a real
OAuth/OIDC server on 127.0.0.1 (tests/accounts/identity_provider.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.accounts.helpers import bearer, register
from tests.accounts.identity_provider import CLIENT_ID, CLIENT_SECRET, IdentityProvider
from tests.conftest import TransactionalDatabase, asgi_client, build_app
from tidings.accounts.models import User
from tidings.channels.models import OAuthState
from tidings.config import Settings
from tidings.core.enums import Provider, Role
from tidings.orgs.models import Organization, UserOrganization


@pytest.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    async with IdentityProvider() as server:
        yield server


def _settings(idp: IdentityProvider, **extra: Any) -> Settings:
    base = idp.base_url
    values: dict[str, Any] = {
        "github_client_id": CLIENT_ID,
        "github_client_secret": CLIENT_SECRET,
        "github_oauth_url": base,
        "github_api_url": base,
        "google_client_id": CLIENT_ID,
        "google_client_secret": CLIENT_SECRET,
        "google_authorization_url": f"{base}/authorize",
        "google_token_url": f"{base}/token",
        "google_userinfo_url": f"{base}/userinfo",
        # Only the issuer: the endpoints come from its discovery document.
        "oidc_issuer": base,
        "oidc_client_id": CLIENT_ID,
        "oidc_client_secret": CLIENT_SECRET,
        "oidc_display_name": "Company SSO",
    }
    values.update(extra)
    return Settings(**values)


@pytest.fixture
async def sso_client(
    test_database: TransactionalDatabase, idp: IdentityProvider
) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(build_app(test_database, settings=_settings(idp))) as client:
        yield client


async def _authorize(client: httpx.AsyncClient, provider: str, **params: str) -> str:
    """Start a sign-in and let the provider approve it; returns the callback URL (relative)."""
    start = await client.get(f"/api/auth/oauth/{provider}/start", params=params)
    assert start.status_code == 303, start.text
    async with httpx.AsyncClient() as browser:
        consent = await browser.get(start.headers["location"])
    assert consent.status_code == 302, consent.text
    location = consent.headers["location"]
    assert location.startswith(f"http://testserver/api/auth/oauth/{provider}/callback?")
    return location.removeprefix("http://testserver")


async def _sign_in(client: httpx.AsyncClient, provider: str, **params: str) -> httpx.Response:
    return await client.get(await _authorize(client, provider, **params))


def _login_error(response: httpx.Response) -> str:
    """The error code of a failed sign-in: the browser lands on the sign-in page, not JSON."""
    assert response.status_code == 303, response.text
    location = urlsplit(response.headers["location"])
    assert location.path == "/login", response.headers["location"]
    assert not [c for c in response.headers.get_list("set-cookie") if "tidings_session=" in c]
    return parse_qs(location.query)["error"][0]


def _token_of(response: httpx.Response) -> str:
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("tidings_session=")
    )
    assert "HttpOnly" in cookie
    return cookie.split(";", 1)[0].split("=", 1)[1]


async def test_provider_list(sso_client: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    listed = (await sso_client.get("/api/auth/oauth/providers")).json()
    assert [p["name"] for p in listed] == ["github", "google", "oidc"]
    assert listed[2]["display_name"] == "Company SSO"
    # Nothing configured: nothing offered, and starting one is a 404.
    assert (await client.get("/api/auth/oauth/providers")).json() == []
    assert (await client.get("/api/auth/oauth/github/start")).status_code == 404


async def test_start_sends_pkce_and_stores_the_state(
    sso_client: httpx.AsyncClient, db: AsyncSession, idp: IdentityProvider
) -> None:
    start = await sso_client.get("/api/auth/oauth/google/start", params={"next": "/calendar"})
    url = urlsplit(start.headers["location"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{idp.base_url}/authorize"
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert query["client_id"] == CLIENT_ID
    assert query["code_challenge_method"] == "S256"
    assert query["redirect_uri"] == "http://testserver/api/auth/oauth/google/callback"
    row = (
        await db.execute(select(OAuthState).where(OAuthState.state == query["state"]))
    ).scalar_one()
    assert row.purpose == "login" and row.provider == "google"
    assert row.code_verifier and row.code_verifier not in start.headers["location"]


@pytest.mark.parametrize(
    ("provider", "kind", "profile"),
    [
        (
            "github",
            Provider.GITHUB,
            {
                "id": 583231,
                "login": "octocat",
                "name": "The Octocat",
                "email": "Octocat@Example.com",
            },
        ),
        (
            "google",
            Provider.GOOGLE,
            {"sub": "g-1077", "email": "ann@example.com", "email_verified": True, "name": "Ann"},
        ),
        ("oidc", Provider.GENERIC, {"sub": "oidc|9", "email": "sso@example.com", "name": "Sso"}),
    ],
)
async def test_first_sign_in_creates_the_user_then_signs_in(
    sso_client: httpx.AsyncClient,
    db: AsyncSession,
    idp: IdentityProvider,
    provider: str,
    kind: Provider,
    profile: dict[str, Any],
) -> None:
    idp.profile = profile
    first = await _sign_in(sso_client, provider, next="/posts?week=1")
    assert first.status_code == 303, first.text
    assert first.headers["location"] == "/posts?week=1"
    token = _token_of(first)

    me = (await sso_client.get("/api/me", headers=bearer(token))).json()
    user = await db.get(User, me["user"]["id"])
    assert user is not None
    assert user.provider_name == kind
    assert user.provider_id == str(profile.get("id", profile.get("sub")))
    assert user.password is None
    assert user.email == profile["email"].lower()
    assert user.ip == "127.0.0.1"
    [org] = me["organizations"]
    assert org["role"] == "ADMIN"

    users = (await db.execute(select(func.count(User.id)))).scalar_one()
    orgs = (await db.execute(select(func.count(Organization.id)))).scalar_one()
    again = await _sign_in(sso_client, provider)
    assert again.status_code == 303 and again.headers["location"] == "/"
    me_again = (await sso_client.get("/api/me", headers=bearer(_token_of(again)))).json()
    assert me_again["user"]["id"] == user.id
    assert (await db.execute(select(func.count(User.id)))).scalar_one() == users
    assert (await db.execute(select(func.count(Organization.id)))).scalar_one() == orgs


async def test_github_private_email_comes_from_the_emails_api(
    sso_client: httpx.AsyncClient, idp: IdentityProvider
) -> None:
    idp.profile = {"id": 7, "login": "quiet", "name": None, "email": None}
    idp.github_private_email = "Quiet@Example.com"
    response = await _sign_in(sso_client, "github")
    assert response.status_code == 303
    me = (await sso_client.get("/api/me", headers=bearer(_token_of(response)))).json()
    assert me["user"]["email"] == "quiet@example.com"
    assert me["user"]["name"] == "quiet"
    assert "github-emails" in idp.calls


async def test_state_is_single_use_and_must_be_known(
    sso_client: httpx.AsyncClient, db: AsyncSession
) -> None:
    callback = await _authorize(sso_client, "oidc")
    assert (await sso_client.get(callback)).status_code == 303
    replay = await sso_client.get(callback)
    assert _login_error(replay) == "invalid_state"

    forged = await sso_client.get(
        "/api/auth/oauth/oidc/callback", params={"code": "x", "state": "made-up"}
    )
    assert _login_error(forged) == "invalid_state"
    missing = await sso_client.get("/api/auth/oauth/oidc/callback", params={"code": "x"})
    assert _login_error(missing) == "invalid_state"

    # A state of another provider is not accepted here.
    callback = await _authorize(sso_client, "google")
    swapped = callback.replace("/google/", "/oidc/")
    assert _login_error(await sso_client.get(swapped)) == "invalid_state"


async def test_a_callback_only_works_in_the_browser_that_started_it(
    test_database: TransactionalDatabase,
    sso_client: httpx.AsyncClient,
    idp: IdentityProvider,
    db: AsyncSession,
) -> None:
    # The attacker starts a sign-in with their own account and sends the victim the link
    # the provider sends back: the victim's browser must not end up signed in as them.
    idp.profile = {"sub": "attacker-1", "email": "attacker@example.com"}
    start = await sso_client.get("/api/auth/oauth/oidc/start")
    cookie = next(
        c for c in start.headers.get_list("set-cookie") if c.startswith("tidings_sign_in=")
    )
    assert "HttpOnly" in cookie and "Path=/api/auth/oauth" in cookie
    callback = await _authorize(sso_client, "oidc")
    async with asgi_client(build_app(test_database, settings=_settings(idp))) as victim:
        response = await victim.get(callback)
        assert _login_error(response) == "invalid_state"
        # A forged sign-in cookie does not help either.
        victim.cookies.set("tidings_sign_in", "x" * 32, domain="testserver")
        assert _login_error(await victim.get(callback)) == "invalid_state"
    assert (
        await db.execute(select(User).where(User.email == "attacker@example.com"))
    ).scalar_one_or_none() is None
    # Sign-ins started in two tabs of one browser both work.
    first = await _authorize(sso_client, "oidc")
    second = await _authorize(sso_client, "oidc")
    assert (await sso_client.get(second)).status_code == 303
    assert _token_of(await sso_client.get(first))


async def test_expired_state_is_refused(sso_client: httpx.AsyncClient, db: AsyncSession) -> None:
    callback = await _authorize(sso_client, "google")
    for row in (await db.execute(select(OAuthState))).scalars():
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    await db.flush()
    response = await sso_client.get(callback)
    assert _login_error(response) == "invalid_state"


async def test_tampered_code_is_refused_by_the_provider(sso_client: httpx.AsyncClient) -> None:
    callback = await _authorize(sso_client, "github")
    tampered = callback.replace("code=", "code=x")
    response = await sso_client.get(tampered)
    assert _login_error(response) == "invalid_code"


async def test_denied_consent(sso_client: httpx.AsyncClient, idp: IdentityProvider) -> None:
    idp.deny = "access_denied"
    response = await sso_client.get(await _authorize(sso_client, "google"))
    assert _login_error(response) == "sign_in_refused"


async def test_provider_failure_lands_on_the_sign_in_page(
    sso_client: httpx.AsyncClient, idp: IdentityProvider
) -> None:
    idp.token_status = 503
    response = await sso_client.get(await _authorize(sso_client, "oidc"))
    assert _login_error(response) == "upstream_error"


async def test_unverified_email_is_refused(
    sso_client: httpx.AsyncClient, idp: IdentityProvider, db: AsyncSession
) -> None:
    idp.profile = {"sub": "u2", "email": "fake@example.com", "email_verified": False}
    response = await sso_client.get(await _authorize(sso_client, "google"))
    assert _login_error(response) == "email_not_verified"
    assert (
        await db.execute(select(User).where(User.email == "fake@example.com"))
    ).scalar_one_or_none() is None


async def test_next_must_stay_on_this_site(sso_client: httpx.AsyncClient) -> None:
    for bad in ["https://evil.example/", "//evil.example/x", "/\\evil.example"]:
        response = await _sign_in(sso_client, "oidc", next=bad)
        assert response.headers["location"] == "/"


async def test_registration_disabled_blocks_new_sso_users_but_not_invites(
    test_database: TransactionalDatabase, idp: IdentityProvider, db: AsyncSession
) -> None:
    app = build_app(test_database, settings=_settings(idp, disable_registration=True))
    async with asgi_client(app) as client:
        owner = await register(client, "owner@example.com")
        assert owner.status_code == 201
        idp.profile = {"sub": "new-1", "email": "newbie@example.com"}
        refused = await client.get(await _authorize(client, "oidc"))
        assert _login_error(refused) == "registration_disabled"

        invite = await client.post(
            "/api/orgs/current/invites",
            json={"email": "newbie@example.com", "role": "USER"},
            headers=bearer(owner.json()["token"]),
        )
        token = invite.json()["url"].split("token=")[1]
        client.cookies.clear()
        joined = await client.get(await _authorize(client, "oidc", invite=token))
        assert joined.status_code == 303, joined.text
        me = (await client.get("/api/me", headers=bearer(_token_of(joined)))).json()
        assert me["organizations"] == [
            {"id": owner.json()["organization_id"], "name": "owner's organization", "role": "USER"}
        ]
        membership = (
            await db.execute(
                select(UserOrganization).where(UserOrganization.user_id == me["user"]["id"])
            )
        ).scalar_one()
        assert membership.role == Role.USER


async def test_a_failed_sign_in_leaves_no_half_made_account(
    test_database: TransactionalDatabase, idp: IdentityProvider, db: AsyncSession
) -> None:
    app = build_app(test_database, settings=_settings(idp))
    async with asgi_client(app) as client:
        owner = await register(client, "boss@example.com")
        invite = await client.post(
            "/api/orgs/current/invites",
            json={"email": "invited@example.com", "role": "USER"},
            headers=bearer(owner.json()["token"]),
        )
        token = invite.json()["url"].split("token=")[1]
        client.cookies.clear()
        # The provider vouches for another address than the invited one: the account is
        # created, then the invite refuses it; the sign-in page shows why, nothing stays.
        idp.profile = {"sub": "other-1", "email": "someone.else@example.com"}
        response = await client.get(await _authorize(client, "oidc", invite=token))
        assert _login_error(response) == "bad_request"
    assert (
        await db.execute(select(User).where(User.email == "someone.else@example.com"))
    ).scalar_one_or_none() is None

"""Signing in with GitHub, Google or a generic OpenID Connect provider.

The authorization-code flow with PKCE (S256), written directly on httpx: Authlib's httpx
integration warns that it is deprecated in the installed version, and the flow is small enough
to own. The pending flow (state, code verifier, where to go next, an optional invite) is a row
of ``oauth_state`` with purpose "login"; it is consumed by the callback, so a state works once.

The identity is the provider's stable user id (GitHub's numeric id, the OIDC ``sub``), stored
in ``users.provider_id``; the email is informational and must be verified where the provider
says. A first sign-in creates the user (no password) and an organization, unless it comes with
an invite, which makes the user a member of the inviting organization instead.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User
from tidings.accounts.service import default_org_name, registration_open
from tidings.channels.models import OAuthState
from tidings.config import Settings
from tidings.core import crypto
from tidings.core.enums import Provider
from tidings.core.errors import BadRequest, Conflict, Forbidden, NotFound, TidingsError
from tidings.core.ids import new_token
from tidings.orgs.service import create_organization

logger = logging.getLogger("tidings.accounts.oauth")

STATE_TTL = timedelta(minutes=10)
#: The cookie binding a pending sign-in to the browser that started it.
BROWSER_COOKIE = "tidings_sign_in"
HTTP_TIMEOUT = httpx.Timeout(15.0, connect=10.0)
MAX_NEXT_LENGTH = 500


class UpstreamError(TidingsError):
    """The identity provider failed or answered something unusable."""

    status_code = 502
    code = "upstream_error"


@dataclass(frozen=True)
class OAuthProvider:
    """One configured sign-in provider."""

    name: str  # the URL segment: "github", "google", "oidc"
    provider: Provider
    display_name: str
    client_id: str
    client_secret: str | None
    authorization_url: str
    token_url: str
    userinfo_url: str
    scopes: str
    github_api_url: str | None = None  # GitHub: where /user and /user/emails live


@dataclass(frozen=True)
class Identity:
    """Who the provider says signed in."""

    provider_id: str
    email: str
    name: str | None


_discovered: dict[str, dict[str, Any]] = {}


async def _discover(client: httpx.AsyncClient, issuer: str) -> dict[str, Any]:
    if issuer not in _discovered:
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            response = await client.get(url, timeout=HTTP_TIMEOUT)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise UpstreamError(f"cannot read the OpenID configuration of {issuer}") from exc
        if not isinstance(document, dict):
            raise UpstreamError(f"the OpenID configuration of {issuer} is not an object")
        _discovered[issuer] = document
    return _discovered[issuer]


def configured_providers(settings: Settings) -> list[str]:
    """The names of the sign-in providers this instance has credentials for."""
    names = []
    if settings.github_client_id:
        names.append("github")
    if settings.google_client_id:
        names.append("google")
    if settings.oidc_client_id and (settings.oidc_issuer or settings.oidc_authorization_url):
        names.append("oidc")
    return names


def display_name(settings: Settings, name: str) -> str:
    """How the sign-in button names provider ``name``."""
    return {"github": "GitHub", "google": "Google"}.get(name, settings.oidc_display_name)


async def get_provider(settings: Settings, name: str, client: httpx.AsyncClient) -> OAuthProvider:
    """The configuration of provider ``name``; :class:`NotFound` when it is not configured."""
    if name not in configured_providers(settings):
        raise NotFound(f"sign-in with {name!r} is not configured", field="provider")
    if name == "github":
        base = settings.github_oauth_url.rstrip("/")
        return OAuthProvider(
            name="github",
            provider=Provider.GITHUB,
            display_name="GitHub",
            client_id=settings.github_client_id or "",
            client_secret=settings.github_client_secret,
            authorization_url=f"{base}/login/oauth/authorize",
            token_url=f"{base}/login/oauth/access_token",
            userinfo_url=settings.github_api_url.rstrip("/") + "/user",
            scopes="read:user user:email",
            github_api_url=settings.github_api_url.rstrip("/"),
        )
    if name == "google":
        return OAuthProvider(
            name="google",
            provider=Provider.GOOGLE,
            display_name="Google",
            client_id=settings.google_client_id or "",
            client_secret=settings.google_client_secret,
            authorization_url=settings.google_authorization_url,
            token_url=settings.google_token_url,
            userinfo_url=settings.google_userinfo_url,
            scopes="openid email profile",
        )
    document: dict[str, Any] = {}
    if settings.oidc_issuer and not (
        settings.oidc_authorization_url and settings.oidc_token_url and settings.oidc_userinfo_url
    ):
        document = await _discover(client, settings.oidc_issuer)
    endpoints = {
        "authorization_endpoint": settings.oidc_authorization_url,
        "token_endpoint": settings.oidc_token_url,
        "userinfo_endpoint": settings.oidc_userinfo_url,
    }
    for key, configured in endpoints.items():
        value = configured or document.get(key)
        if not isinstance(value, str) or not value:
            raise UpstreamError(f"the OpenID provider has no {key} (set it in the configuration)")
        endpoints[key] = value
    return OAuthProvider(
        name="oidc",
        provider=Provider.GENERIC,
        display_name=settings.oidc_display_name,
        client_id=settings.oidc_client_id or "",
        client_secret=settings.oidc_client_secret,
        authorization_url=str(endpoints["authorization_endpoint"]),
        token_url=str(endpoints["token_endpoint"]),
        userinfo_url=str(endpoints["userinfo_endpoint"]),
        scopes=settings.oidc_scopes,
    )


def safe_next(next_path: str | None) -> str:
    """A local path to land on after signing in (anything else becomes "/")."""
    if (
        not next_path
        or len(next_path) > MAX_NEXT_LENGTH
        or not next_path.startswith("/")
        or next_path.startswith("//")
        or "\\" in next_path
        or any(ord(c) < 32 for c in next_path)
    ):
        return "/"
    return next_path


def callback_url(settings: Settings, name: str) -> str:
    """Where the provider sends the browser back."""
    return f"{settings.public_url}/api/auth/oauth/{name}/callback"


async def start(
    session: AsyncSession,
    settings: Settings,
    client: httpx.AsyncClient,
    name: str,
    *,
    next_path: str | None,
    invite: str | None,
    browser: str,
) -> str:
    """Record a pending sign-in and return the provider's authorization URL.

    ``browser`` is the secret of the browser's sign-in cookie (:data:`BROWSER_COOKIE`): the
    callback is accepted only from the browser that started the sign-in, so nobody can sign
    a victim into the attacker's account by sending them the attacker's callback link.
    """
    provider = await get_provider(settings, name, client)
    state = new_token(24)
    verifier = new_token(48)
    redirect_uri = callback_url(settings, name)
    session.add(
        OAuthState(
            state=state,
            purpose="login",
            provider=name,
            code_verifier=verifier,
            redirect_uri=redirect_uri,
            data=json.dumps(
                {
                    "next": safe_next(next_path),
                    "invite": invite,
                    "browser": crypto.hash_token(browser),
                }
            ),
            expires_at=datetime.now(UTC) + STATE_TTL,
        )
    )
    await session.flush()
    params = {
        "response_type": "code",
        "client_id": provider.client_id,
        "redirect_uri": redirect_uri,
        "scope": provider.scopes,
        "state": state,
        "code_challenge": pkce_challenge(verifier),
        "code_challenge_method": "S256",
    }
    separator = "&" if "?" in provider.authorization_url else "?"
    return f"{provider.authorization_url}{separator}{urlencode(params)}"


def pkce_challenge(verifier: str) -> str:
    """The PKCE S256 challenge of ``verifier``."""
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class Completed:
    """The outcome of a callback: the signed-in user, where to go, an invite to accept."""

    user: User
    created: bool
    next_path: str
    invite: str | None


async def _consume_state(session: AsyncSession, name: str, state: str) -> OAuthState:
    row = (
        await session.execute(
            delete(OAuthState)
            .where(
                OAuthState.state == state,
                OAuthState.purpose == "login",
                OAuthState.provider == name,
            )
            .returning(OAuthState)
        )
    ).scalar_one_or_none()
    if row is None or row.expires_at <= datetime.now(UTC):
        raise BadRequest(
            "this sign-in attempt is unknown or expired; start again",
            field="state",
            code="invalid_state",
        )
    return row


async def _exchange_code(
    client: httpx.AsyncClient, provider: OAuthProvider, code: str, row: OAuthState
) -> str:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": row.redirect_uri or "",
        "client_id": provider.client_id,
        "code_verifier": row.code_verifier or "",
    }
    if provider.client_secret:
        form["client_secret"] = provider.client_secret
    try:
        response = await client.post(
            provider.token_url,
            data=form,
            headers={"Accept": "application/json"},
            timeout=HTTP_TIMEOUT,
        )
    except httpx.HTTPError as exc:
        raise UpstreamError(f"{provider.display_name} did not answer: {exc}") from exc
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise UpstreamError(f"{provider.display_name} answered the token request with no JSON")
    if response.status_code >= 400 or "error" in body or not body.get("access_token"):
        reason = body.get("error_description") or body.get("error") or response.status_code
        if response.status_code >= 500:
            raise UpstreamError(f"{provider.display_name} failed: {reason}")
        # invalid_grant and friends: the code was wrong, used or expired.
        raise BadRequest(
            f"{provider.display_name} refused the sign-in: {reason}",
            field="code",
            code="invalid_code",
        )
    return str(body["access_token"])


async def _get_json(
    client: httpx.AsyncClient, provider: OAuthProvider, url: str, access_token: str
) -> Any:
    try:
        response = await client.get(
            url,
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            timeout=HTTP_TIMEOUT,
        )
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise UpstreamError(f"cannot read the {provider.display_name} profile: {exc}") from exc


async def _identity(
    client: httpx.AsyncClient, provider: OAuthProvider, access_token: str
) -> Identity:
    info = await _get_json(client, provider, provider.userinfo_url, access_token)
    if not isinstance(info, dict):
        raise UpstreamError(f"the {provider.display_name} profile is not an object")
    if provider.provider == Provider.GITHUB:
        subject = info.get("id")
        email = info.get("email")
        name = info.get("name") or info.get("login")
        if not email:
            # The public profile hides private emails; the primary verified one is listed here.
            emails = await _get_json(
                client, provider, f"{provider.github_api_url}/user/emails", access_token
            )
            if isinstance(emails, list):
                email = next(
                    (
                        e.get("email")
                        for e in emails
                        if isinstance(e, dict) and e.get("primary") and e.get("verified")
                    ),
                    None,
                )
    else:
        subject = info.get("sub")
        email = info.get("email")
        name = info.get("name") or info.get("given_name")
        if info.get("email_verified") is False:
            raise BadRequest(
                f"verify your email address with {provider.display_name} first",
                field="email",
                code="email_not_verified",
            )
    if subject is None or str(subject) == "":
        raise UpstreamError(f"{provider.display_name} did not say who signed in")
    if not isinstance(email, str) or "@" not in email:
        raise BadRequest(
            f"{provider.display_name} did not share a verified email address",
            field="email",
            code="email_not_verified",
        )
    return Identity(
        provider_id=str(subject),
        email=email.strip().lower()[:254],
        name=str(name)[:200] if name else None,
    )


async def complete(
    session: AsyncSession,
    settings: Settings,
    client: httpx.AsyncClient,
    name: str,
    *,
    code: str | None,
    state: str | None,
    error: str | None,
    browser: str | None,
) -> Completed:
    """Finish a sign-in: check the state (and that ``browser``, the secret of the sign-in
    cookie, is the one that started it), exchange the code, read the identity, and find or
    create the user."""
    from tidings.orgs.invites import invite_from_token

    if not state:
        raise BadRequest("the provider sent no state", field="state", code="invalid_state")
    row = await _consume_state(session, name, state)
    data = json.loads(row.data) if row.data else {}
    expected = data.get("browser")
    if (
        not browser
        or not isinstance(expected, str)
        or not hmac.compare_digest(expected, crypto.hash_token(browser))
    ):
        raise BadRequest(
            "this sign-in was started in another browser; start again",
            field="state",
            code="invalid_state",
        )
    if error:
        raise BadRequest(
            f"the sign-in was refused: {error[:200]}", field="error", code="sign_in_refused"
        )
    if not code:
        raise BadRequest("the provider sent no code", field="code", code="invalid_code")
    provider = await get_provider(settings, name, client)
    access_token = await _exchange_code(client, provider, code, row)
    identity = await _identity(client, provider, access_token)
    invite_token = data.get("invite") if isinstance(data.get("invite"), str) else None
    next_path = safe_next(data.get("next"))

    user = (
        await session.execute(
            select(User).where(
                User.provider_name == provider.provider, User.provider_id == identity.provider_id
            )
        )
    ).scalar_one_or_none()
    if user is not None:
        if not user.activated:
            raise Forbidden("this account is disabled", code="account_disabled")
        return Completed(user, False, next_path, invite_token)

    taken = (
        await session.execute(
            select(User.id).where(
                User.provider_name == provider.provider, User.email == identity.email
            )
        )
    ).first()
    if taken is not None:
        raise Conflict(
            f"another {provider.display_name} account already uses {identity.email}",
            field="email",
            code="email_taken",
        )
    invite = await invite_from_token(session, invite_token) if invite_token else None
    if invite is None and not await registration_open(session, settings):
        raise Forbidden(
            "registration is disabled on this instance; ask for an invite",
            code="registration_disabled",
        )
    user = User(
        email=identity.email,
        password=None,
        provider_name=provider.provider,
        provider_id=identity.provider_id,
        name=identity.name,
    )
    session.add(user)
    await session.flush()
    if invite is None:
        await create_organization(
            session, default_org_name(identity.name, identity.email), owner_id=user.id
        )
    logger.info("new %s user %s signed up", provider.name, user.id)
    return Completed(user, True, next_path, invite_token)

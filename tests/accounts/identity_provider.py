"""A real OAuth 2 / OpenID Connect identity provider on 127.0.0.1 for the sign-in tests.

It speaks three dialects on one port: GitHub's (``/login/oauth/authorize``,
``/login/oauth/access_token`` answering errors with 200 + ``error``, ``/user``,
``/user/emails``), Google's / any OIDC provider's (``/authorize``, ``/token``, ``/userinfo``,
``/.well-known/openid-configuration``). It enforces what a real provider enforces: the client id
and secret, the registered redirect URI, single-use codes bound to that redirect URI, and PKCE
S256 (the verifier must hash to the challenge given at authorization).

The consent screen is skipped: ``/authorize`` approves at once for ``profile`` (or answers
``deny`` as the error when set).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.loopback import LoopbackService

CLIENT_ID = "tidings-client"
CLIENT_SECRET = "tidings-secret"


@dataclass
class _Grant:
    redirect_uri: str
    challenge: str
    profile: dict[str, Any]


@dataclass
class IdentityProvider(LoopbackService):
    """Use as ``async with IdentityProvider() as idp``; ``idp.base_url`` is where it listens."""

    profile: dict[str, Any] = field(
        default_factory=lambda: {
            "sub": "user-1",
            "email": "sso.user@example.com",
            "email_verified": True,
            "name": "Sso User",
        }
    )
    # GitHub-only: the email of /user/emails when the profile hides it.
    github_private_email: str | None = None
    deny: str | None = None
    token_status: int | None = None  # force the token endpoint to fail with this status
    base_url: str = ""
    calls: list[str] = field(default_factory=list)
    _grants: dict[str, _Grant] = field(default_factory=dict)
    _tokens: dict[str, dict[str, Any]] = field(default_factory=dict)

    # ---- endpoints -------------------------------------------------------------------

    async def _discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.base_url,
                "authorization_endpoint": f"{self.base_url}/authorize",
                "token_endpoint": f"{self.base_url}/token",
                "userinfo_endpoint": f"{self.base_url}/userinfo",
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
            }
        )

    async def _authorize(self, request: Request) -> Response:
        q = request.query_params
        self.calls.append("authorize")
        if q.get("client_id") != CLIENT_ID or not q.get("redirect_uri"):
            return JSONResponse({"error": "invalid_client"}, status_code=400)
        if q.get("response_type") != "code" or q.get("code_challenge_method") != "S256":
            return JSONResponse({"error": "unsupported_response_type"}, status_code=400)
        if not q.get("code_challenge") or not q.get("state"):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        redirect = q["redirect_uri"]
        if self.deny:
            params = {"error": self.deny, "state": q["state"]}
        else:
            code = secrets.token_urlsafe(16)
            self._grants[code] = _Grant(redirect, q["code_challenge"], dict(self.profile))
            params = {"code": code, "state": q["state"]}
        return RedirectResponse(f"{redirect}?{urlencode(params)}", status_code=302)

    async def _token(self, request: Request) -> Response:
        self.calls.append("token")
        github = request.url.path.startswith("/login/")
        form = await request.form()

        def refuse(error: str) -> Response:
            # GitHub answers OAuth errors with 200 and an error field.
            return JSONResponse({"error": error}, status_code=200 if github else 400)

        if self.token_status:
            return JSONResponse({"error": "server_error"}, status_code=self.token_status)
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return refuse("invalid_client")
        if form.get("grant_type") != "authorization_code":
            return refuse("unsupported_grant_type")
        grant = self._grants.pop(str(form.get("code")), None)
        if grant is None or grant.redirect_uri != form.get("redirect_uri"):
            return refuse("invalid_grant")
        verifier = str(form.get("code_verifier") or "")
        digest = hashlib.sha256(verifier.encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant.challenge:
            return refuse("invalid_grant")
        access_token = secrets.token_urlsafe(24)
        self._tokens[access_token] = grant.profile
        return JSONResponse({"access_token": access_token, "token_type": "bearer"})

    def _bearer(self, request: Request) -> dict[str, Any] | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return self._tokens.get(token) if scheme.lower() == "bearer" else None

    async def _userinfo(self, request: Request) -> Response:
        self.calls.append("userinfo")
        profile = self._bearer(request)
        if profile is None:
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        return JSONResponse(profile)

    async def _github_user(self, request: Request) -> Response:
        self.calls.append("github-user")
        profile = self._bearer(request)
        if profile is None:
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        return JSONResponse(
            {
                "id": int(profile["id"]),
                "login": profile.get("login", "octo"),
                "name": profile.get("name"),
                "email": profile.get("email"),
            }
        )

    async def _github_emails(self, request: Request) -> Response:
        self.calls.append("github-emails")
        if self._bearer(request) is None:
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        emails = [{"email": "old@example.com", "primary": False, "verified": True}]
        if self.github_private_email:
            emails.append({"email": self.github_private_email, "primary": True, "verified": True})
        return JSONResponse(emails)

    # ---- serving ---------------------------------------------------------------------

    def asgi_app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery),
                Route("/authorize", self._authorize),
                Route("/login/oauth/authorize", self._authorize),
                Route("/token", self._token, methods=["POST"]),
                Route("/login/oauth/access_token", self._token, methods=["POST"]),
                Route("/userinfo", self._userinfo),
                Route("/user", self._github_user),
                Route("/user/emails", self._github_emails),
            ]
        )

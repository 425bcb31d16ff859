"""An OAuth 2 authorization server core (RFC 6749 + PKCE RFC 7636) shared by the fake platforms.

``authorize`` auto-approves: it answers the browser's GET with a 302 to the redirect URI carrying
``code`` and ``state``, so a test can follow the URL a provider built and read the code back.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from starlette.responses import JSONResponse, RedirectResponse, Response

from tests.channels.providers.servers.base import RecordedRequest


@dataclass
class Client:
    client_id: str
    client_secret: str
    redirect_uris: list[str] = field(default_factory=list)


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    challenge: str | None
    method: str | None


def s256(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )


class OAuthBook:
    """Clients, codes and tokens of one fake authorization server."""

    def __init__(
        self,
        *,
        user: str,
        issue_refresh: bool = True,
        rotate_refresh: bool = True,
        expires_in: int | None = 7200,
        require_pkce: bool = True,
    ) -> None:
        self.clients: dict[str, Client] = {}
        self.codes: dict[str, Grant] = {}
        self.access: dict[str, str] = {}
        self.refresh: dict[str, str] = {}
        self.revoked: set[str] = set()
        self.user = user
        self.issue_refresh = issue_refresh
        self.rotate_refresh = rotate_refresh
        self.expires_in = expires_in
        self.require_pkce = require_pkce

    def add_client(self, client_id: str, client_secret: str, redirect_uris: list[str]) -> Client:
        client = Client(client_id, client_secret, redirect_uris)
        self.clients[client_id] = client
        return client

    # ---- endpoints ------------------------------------------------------------------------

    def authorize(self, request: RecordedRequest) -> Response:
        q = request.query
        client = self.clients.get(q.get("client_id", ""))
        if client is None:
            return JSONResponse({"error": "invalid_client"}, 400)
        redirect_uri = q.get("redirect_uri", "")
        if client.redirect_uris and redirect_uri not in client.redirect_uris:
            return JSONResponse({"error": "invalid_request", "error_description": "redirect"}, 400)
        if q.get("response_type") != "code":
            return JSONResponse({"error": "unsupported_response_type"}, 400)
        challenge = q.get("code_challenge")
        if self.require_pkce and (not challenge or q.get("code_challenge_method") != "S256"):
            return JSONResponse({"error": "invalid_request", "error_description": "PKCE"}, 400)
        code = secrets.token_urlsafe(12)
        self.codes[code] = Grant(
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            scope=q.get("scope", ""),
            user=self.user,
            challenge=challenge,
            method=q.get("code_challenge_method"),
        )
        sep = "&" if "?" in redirect_uri else "?"
        return RedirectResponse(
            f"{redirect_uri}{sep}{urlencode({'code': code, 'state': q.get('state', '')})}", 302
        )

    def _client_auth(self, request: RecordedRequest) -> Client | None:
        form = request.form or (request.json if isinstance(request.json, dict) else {}) or {}
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = request.auth or ""
        if auth.startswith("Basic "):
            raw = base64.b64decode(auth.removeprefix("Basic ")).decode()
            client_id, _, secret = raw.partition(":")
        client = self.clients.get(client_id or "")
        if client is None:
            return None
        if secret is None:  # a public client (PKCE only) has no secret
            return client if not client.client_secret else None
        return client if secret == client.client_secret else None

    def token(self, request: RecordedRequest) -> Response:
        form: dict[str, Any] = request.form or (
            request.json if isinstance(request.json, dict) else {}
        )
        client = self._client_auth(request)
        if client is None:
            return JSONResponse({"error": "invalid_client"}, 401)
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            grant = self.codes.pop(form.get("code", ""), None)
            if grant is None or grant.client_id != client.client_id:
                return self._invalid_grant("Invalid authorization code")
            if form.get("redirect_uri") != grant.redirect_uri:
                return self._invalid_grant("redirect_uri mismatch")
            if grant.challenge and s256(form.get("code_verifier", "")) != grant.challenge:
                return self._invalid_grant("PKCE verification failed")
            return JSONResponse(self.issue(grant.user, grant.scope, refresh=self.issue_refresh))
        if grant_type == "refresh_token":
            token = form.get("refresh_token", "")
            user = self.refresh.get(token)
            if user is None or token in self.revoked:
                return self._invalid_grant("Invalid refresh token")
            if self.rotate_refresh:
                del self.refresh[token]
            return JSONResponse(self.issue(user, "", refresh=self.rotate_refresh))
        return JSONResponse({"error": "unsupported_grant_type"}, 400)

    def _invalid_grant(self, description: str) -> Response:
        return JSONResponse({"error": "invalid_grant", "error_description": description}, 400)

    def issue(self, user: str, scope: str, *, refresh: bool) -> dict[str, Any]:
        access = "at-" + secrets.token_urlsafe(16)
        self.access[access] = user
        out: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "scope": scope}
        if self.expires_in is not None:
            out["expires_in"] = self.expires_in
        if refresh:
            token = "rt-" + secrets.token_urlsafe(16)
            self.refresh[token] = user
            out["refresh_token"] = token
        return out

    def user_for(self, request: RecordedRequest) -> str | None:
        """The user behind the request's bearer token, None if it is unknown or revoked."""
        auth = request.auth or ""
        if not auth.startswith("Bearer "):
            return None
        token = auth.removeprefix("Bearer ")
        if token in self.revoked:
            return None
        return self.access.get(token)

    def is_revoked(self, request: RecordedRequest) -> bool:
        return (request.auth or "").removeprefix("Bearer ") in self.revoked

    def expire_all(self) -> None:
        self.access.clear()

    def revoke_all(self) -> None:
        self.revoked.update(self.access)
        self.revoked.update(self.refresh)

"""CSRF protection for requests authenticated by the session cookie (double-submit token).

A browser sends the session cookie with any request, including one a hostile page triggers, so
every state-changing request that relies on that cookie must also prove it comes from our own
pages: it carries the value of the ``tidings_csrf`` cookie in the ``X-CSRF-Token`` header (our
JavaScript) or in a ``csrf_token`` form field (plain HTML forms). Another site can neither read
that cookie nor set the custom header without a CORS preflight we never grant.

Requests with an ``Authorization`` header (Bearer session tokens, Public API keys) are not
exposed to CSRF (a browser never adds that header by itself) and pass untouched, as do requests
without a session cookie, and the anonymous account endpoints that never act with the cookie's
session (sign in, register, password reset): they take JSON only, which a cross-site form
cannot send without a preflight.
"""

from __future__ import annotations

import hmac
import re
import secrets
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tidings.accounts.auth import SESSION_COOKIE
from tidings.core.errors import Forbidden

CSRF_COOKIE = "tidings_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# A plain HTML form of ours is small; larger urlencoded bodies must use the header.
MAX_FORM_BYTES = 64 * 1024
#: Endpoints that ignore the session cookie (they sign in or work signed out).
ANONYMOUS_PATHS = frozenset(
    {
        "/api/auth/login",
        "/api/auth/register",
        "/api/auth/password-reset",
        "/api/auth/password-reset/confirm",
    }
)
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{32,64}$")


def _cookies(headers: Headers) -> dict[str, str]:
    jar: dict[str, str] = {}
    for raw in headers.getlist("cookie"):
        for name, value in cookie_parser(raw).items():
            jar.setdefault(name, value)
    return jar


def csrf_token(scope: Scope) -> str:
    """The CSRF token of this request's browser (set by :class:`CsrfMiddleware`)."""
    state: dict[str, Any] = scope.get("state") or {}
    return str(state.get("csrf_token", ""))


def _same(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(str(given).encode(), expected.encode())


class CsrfMiddleware:
    """Issues the ``tidings_csrf`` cookie with HTML pages and checks the token on unsafe,
    cookie-authenticated requests (403 ``csrf_failed`` naming ``csrf_token`` otherwise)."""

    def __init__(self, app: ASGIApp, *, secure: bool = False) -> None:
        self.app = app
        self.secure = secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        cookies = _cookies(headers)
        sent_token = cookies.get(CSRF_COOKIE, "")
        token = sent_token if _TOKEN_SHAPE.match(sent_token) else ""
        issue = not token
        if issue:
            token = secrets.token_urlsafe(32)
        scope.setdefault("state", {})["csrf_token"] = token

        if (
            scope["method"] not in SAFE_METHODS
            and cookies.get(SESSION_COOKIE)
            and "authorization" not in headers
            and scope["path"] not in ANONYMOUS_PATHS
        ):
            ok = not issue and _same(headers.get(CSRF_HEADER), token)
            content_type = headers.get("content-type", "").split(";")[0].strip().lower()
            if not ok and not issue and content_type == "application/x-www-form-urlencoded":
                body, receive = await _buffer(receive)
                if body is not None:
                    fields = dict(parse_qsl(body.decode("latin-1"), keep_blank_values=True))
                    ok = _same(fields.get(CSRF_FIELD), token)
            if not ok:
                error = Forbidden(
                    "missing or wrong CSRF token: reload the page and try again",
                    field=CSRF_FIELD,
                    code="csrf_failed",
                )
                response = JSONResponse(error.body(), status_code=error.status_code)
                await response(scope, receive, send)
                return

        if not issue:
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                if out.get("content-type", "").startswith("text/html"):
                    cookie = f"{CSRF_COOKIE}={token}; Path=/; SameSite=Lax; HttpOnly" + (
                        "; Secure" if self.secure else ""
                    )
                    out.append("set-cookie", cookie)
            await send(message)

        await self.app(scope, receive, send_with_cookie)


async def _buffer(receive: Receive) -> tuple[bytes | None, Receive]:
    """Read a small body and hand back a ``receive`` that replays it (None when too large)."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
        more = message.get("more_body", False)
        if size > MAX_FORM_BYTES:
            break
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return (body if not more else None), replay

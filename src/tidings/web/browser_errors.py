"""Failures a browser meets outside our pages, turned into pages.

A platform sends the browser back to the channels API's OAuth callback; when connecting fails
there (the user refused, the code expired, the session ended) the API answers JSON, which a
person should not have to read. For browser navigations (``Accept: text/html``) this middleware
turns such an answer into a redirect: to the channels page with the message, or to the sign-in
page (coming back to the callback) when the browser was signed out.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote, urlencode

from starlette.datastructures import Headers
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_CALLBACK = re.compile(r"^/api/channels/[A-Za-z0-9_-]{1,60}/callback$")
MAX_MESSAGE = 300


def _message(body: bytes) -> str:
    try:
        data: Any = json.loads(body)
    except ValueError:
        return "Connecting the channel failed."
    message = data.get("message") if isinstance(data, dict) else None
    return str(message)[:MAX_MESSAGE] if message else "Connecting the channel failed."


class ConnectErrorPages:
    """Redirects a browser's failed OAuth callback to a page (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or not _CALLBACK.match(scope["path"])
            or "text/html" not in Headers(scope=scope).get("accept", "")
        ):
            await self.app(scope, receive, send)
            return
        failed: Message | None = None
        passing = False
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal failed, passing
            if message["type"] == "http.response.start":
                if message["status"] < 400:
                    passing = True
                    await send(message)
                else:
                    failed = message
                return
            if passing or failed is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            if failed["status"] == 401:
                here = scope["path"] + "?" + scope.get("query_string", b"").decode("latin-1")
                target = "/login?next=" + quote(here, safe="/")
            else:
                target = "/channels?" + urlencode({"connect_error": _message(b"".join(chunks))})
            await RedirectResponse(target, status_code=303)(scope, receive, send)

        await self.app(scope, receive, capture)

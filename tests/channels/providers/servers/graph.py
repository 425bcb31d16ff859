"""Pieces the fake Meta platforms (Threads, Facebook, Instagram) share: Graph error answers,
reading the access token, and a book of short- and long-lived tokens."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse, Response

from tests.channels.providers.servers.base import RecordedRequest


def graph_error(
    status: int,
    code: int,
    message: str,
    *,
    subcode: int | None = None,
    kind: str = "OAuthException",
    user_msg: str | None = None,
) -> Response:
    error: dict[str, Any] = {
        "message": message,
        "type": kind,
        "code": code,
        "fbtrace_id": "A" + secrets.token_hex(6),
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    if user_msg is not None:
        error["error_user_msg"] = user_msg
    return JSONResponse({"error": error}, status)


def params_of(request: RecordedRequest) -> dict[str, Any]:
    """Graph parameters, from the query string and/or the form body."""
    out: dict[str, Any] = dict(request.query)
    out.update(request.form)
    if isinstance(request.json, dict):
        out.update(request.json)
    return out


def token_of(request: RecordedRequest) -> str | None:
    token = params_of(request).get("access_token")
    if token:
        return str(token)
    auth = request.auth or ""
    for prefix in ("Bearer ", "OAuth "):
        if auth.startswith(prefix):
            return auth.removeprefix(prefix)
    return None


@dataclass
class Token:
    owner: str
    kind: str  # "short" | "long" | "page"


class TokenBook:
    """Tokens of one fake Graph host, with the usual failure switches."""

    def __init__(self) -> None:
        self.tokens: dict[str, Token] = {}
        self.expired: set[str] = set()
        self.revoked: set[str] = set()

    def issue(self, owner: str, kind: str) -> str:
        token = f"{kind}-" + secrets.token_urlsafe(12)
        self.tokens[token] = Token(owner, kind)
        return token

    def expire_all(self) -> None:
        self.expired.update(self.tokens)

    def revoke_all(self) -> None:
        self.revoked.update(self.tokens)

    def check(
        self, request: RecordedRequest, *, kinds: tuple[str, ...] = ("long", "page")
    ) -> Token | Response:
        """The token's record, or the Graph error the platform would answer."""
        token = token_of(request)
        record = self.tokens.get(token or "")
        if token is None:
            return graph_error(
                400,
                2500,
                "An active access token must be used to query information about the current user.",
            )
        if token in self.revoked:
            return graph_error(
                400,
                190,
                "Error validating access token: The user has not authorized application.",
                subcode=458,
            )
        if token in self.expired:
            return graph_error(
                400,
                190,
                "Error validating access token: Session has expired.",
                subcode=463,
            )
        if record is None or record.kind not in kinds:
            return graph_error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        return record

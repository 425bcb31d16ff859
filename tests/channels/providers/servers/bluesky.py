"""A fake AT Protocol PDS (the XRPC endpoints Tidings uses), with real-looking JWT sessions."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse, Response

from tests.channels.providers.servers.base import FakePlatform, RecordedRequest


def make_jwt(payload: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(payload)}.{secrets.token_urlsafe(16)}"


def fake_cid(data: bytes) -> str:
    return "bafkrei" + base64.b32encode(hashlib.sha256(data).digest()).decode().lower().rstrip("=")


@dataclass
class Account:
    did: str
    handle: str
    password: str
    display_name: str = ""
    avatar: str | None = None
    taken_down: bool = False


class FakeBluesky(FakePlatform):
    """A PDS with one or more accounts; ``records`` holds created records by at-uri."""

    def __init__(self, accounts: list[Account] | None = None, access_lifetime: int = 7200) -> None:
        self.access_lifetime = access_lifetime
        self.accounts = accounts or [
            Account(
                did="did:plc:alice123",
                handle="alice.test",
                password="app-pass-1234",
                display_name="Alice",
                avatar="https://cdn.example/alice.jpg",
            ),
            Account(did="did:plc:bob456", handle="bob.test", password="bob-pass"),
        ]
        self.sessions: dict[str, str] = {}  # access token -> did
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> did
        self.records: dict[str, dict[str, Any]] = {}
        self.blobs: dict[str, bytes] = {}
        super().__init__()

    # ---- helpers ------------------------------------------------------------------------

    def _err(self, status: int, error: str, message: str) -> Response:
        return JSONResponse({"error": error, "message": message}, status)

    def _new_session(self, account: Account) -> dict[str, Any]:
        now = int(time.time())
        access = make_jwt(
            {
                "scope": "com.atproto.appPass",
                "sub": account.did,
                "iat": now,
                "exp": now + self.access_lifetime,
            }
        )
        refresh = make_jwt(
            {"scope": "com.atproto.refresh", "sub": account.did, "iat": now, "exp": now + 9e6}
        )
        self.sessions[access] = account.did
        self.refresh_tokens[refresh] = account.did
        return {
            "accessJwt": access,
            "refreshJwt": refresh,
            "handle": account.handle,
            "did": account.did,
            "active": True,
        }

    def account(self, did_or_handle: str) -> Account | None:
        for account in self.accounts:
            if did_or_handle in (account.did, account.handle):
                return account
        return None

    def expire_sessions(self) -> None:
        """Invalidate every access token (as if they had expired)."""
        self.sessions.clear()

    def _authed(self, request: RecordedRequest) -> Account | Response:
        auth = request.auth or ""
        if not auth.startswith("Bearer "):
            return self._err(401, "AuthenticationRequired", "Authentication Required")
        did = self.sessions.get(auth.removeprefix("Bearer "))
        if did is None:
            return self._err(400, "ExpiredToken", "Token has expired")
        account = self.account(did)
        assert account is not None
        if account.taken_down:
            return self._err(400, "AccountTakedown", "Account has been taken down")
        return account

    # ---- routes -------------------------------------------------------------------------

    def setup_routes(self) -> None:
        self.add("POST", "/xrpc/com.atproto.server.createSession", self.create_session)
        self.add("POST", "/xrpc/com.atproto.server.refreshSession", self.refresh_session)
        self.add("GET", "/xrpc/app.bsky.actor.getProfile", self.get_profile)
        self.add("GET", "/xrpc/com.atproto.identity.resolveHandle", self.resolve_handle)
        self.add("POST", "/xrpc/com.atproto.repo.uploadBlob", self.upload_blob)
        self.add("POST", "/xrpc/com.atproto.repo.createRecord", self.create_record)
        self.add("GET", "/xrpc/com.atproto.repo.getRecord", self.get_record)
        self.add("GET", "/xrpc/com.atproto.repo.listRecords", self.list_records)

    async def create_session(self, request: RecordedRequest) -> Response:
        body = request.json or {}
        account = self.account(str(body.get("identifier", "")))
        if account is None or body.get("password") != account.password:
            return self._err(401, "AuthenticationRequired", "Invalid identifier or password")
        if account.taken_down:
            return self._err(401, "AccountTakedown", "Account has been taken down")
        return JSONResponse(self._new_session(account))

    async def refresh_session(self, request: RecordedRequest) -> Response:
        token = (request.auth or "").removeprefix("Bearer ")
        did = self.refresh_tokens.pop(token, None)
        if did is None:
            return self._err(400, "ExpiredToken", "Token has been revoked")
        account = self.account(did)
        assert account is not None
        return JSONResponse(self._new_session(account))

    async def get_profile(self, request: RecordedRequest) -> Response:
        authed = self._authed(request)
        if isinstance(authed, Response):
            return authed
        account = self.account(request.query.get("actor", ""))
        if account is None:
            return self._err(400, "InvalidRequest", "Profile not found")
        profile: dict[str, Any] = {"did": account.did, "handle": account.handle}
        if account.display_name:
            profile["displayName"] = account.display_name
        if account.avatar:
            profile["avatar"] = account.avatar
        return JSONResponse(profile)

    async def resolve_handle(self, request: RecordedRequest) -> Response:
        account = self.account(request.query.get("handle", ""))
        if account is None:
            return self._err(400, "InvalidRequest", "Unable to resolve handle")
        return JSONResponse({"did": account.did})

    async def upload_blob(self, request: RecordedRequest) -> Response:
        authed = self._authed(request)
        if isinstance(authed, Response):
            return authed
        if not request.body:
            return self._err(400, "InvalidRequest", "Request body is empty")
        cid = fake_cid(request.body)
        self.blobs[cid] = request.body
        return JSONResponse(
            {
                "blob": {
                    "$type": "blob",
                    "ref": {"$link": cid},
                    "mimeType": request.content_type,
                    "size": len(request.body),
                }
            }
        )

    async def create_record(self, request: RecordedRequest) -> Response:
        authed = self._authed(request)
        if isinstance(authed, Response):
            return authed
        body = request.json or {}
        if body.get("repo") not in (authed.did, authed.handle):
            return self._err(400, "InvalidRequest", "Invalid repo")
        record = body.get("record") or {}
        if body.get("collection") != "app.bsky.feed.post" or record.get("$type") != (
            "app.bsky.feed.post"
        ):
            return self._err(400, "InvalidRequest", "Invalid collection")
        text = record.get("text", "")
        if len(text.encode()) > 3000:
            return self._err(
                400,
                "InvalidRecord",
                "Invalid app.bsky.feed.post record: Record/text must not be longer than 3000 bytes",
            )
        reply = record.get("reply")
        if reply is not None:
            for key in ("root", "parent"):
                ref = reply.get(key) or {}
                stored = self.records.get(ref.get("uri", ""))
                if stored is None or stored["cid"] != ref.get("cid"):
                    return self._err(400, "InvalidRequest", f"Invalid reply {key} reference")
        rkey = secrets.token_hex(7)
        uri = f"at://{authed.did}/app.bsky.feed.post/{rkey}"
        cid = fake_cid(json.dumps(record, sort_keys=True).encode())
        self.records[uri] = {"uri": uri, "cid": cid, "value": record}
        return JSONResponse(
            {"uri": uri, "cid": cid, "commit": {"cid": fake_cid(uri.encode()), "rev": rkey}}
        )

    async def get_record(self, request: RecordedRequest) -> Response:
        q = request.query
        uri = f"at://{q.get('repo')}/{q.get('collection')}/{q.get('rkey')}"
        stored = self.records.get(uri)
        if stored is None:
            return self._err(400, "RecordNotFound", f"Could not locate record: {uri}")
        return JSONResponse(stored)

    async def list_records(self, request: RecordedRequest) -> Response:
        q = request.query
        prefix = f"at://{q.get('repo')}/{q.get('collection')}/"
        limit = int(q.get("limit", "50"))
        found = [r for uri, r in self.records.items() if uri.startswith(prefix)]
        return JSONResponse({"records": list(reversed(found))[:limit]})

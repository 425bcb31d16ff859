"""A fake Slack: OAuth v2, team.info, conversations, chat.postMessage, external file uploads.

Like Slack, it answers errors with HTTP 200 and ``{"ok": false, "error": "<code>"}``.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import replace
from typing import Any

from starlette.responses import JSONResponse, PlainTextResponse, Response

from tests.channels.providers.servers.base import FakePlatform, RecordedRequest
from tests.channels.providers.servers.oauth import OAuthBook

TEAM_ID = "T061EG9R6"
CHANNELS = [
    {"id": "C0GENERAL1", "name": "general", "is_private": False, "is_member": True},
    {"id": "C0RANDOM22", "name": "random", "is_private": False, "is_member": False},
    {"id": "G0SECRET33", "name": "secret", "is_private": True, "is_member": False},
    {"id": "G0TEAM4444", "name": "team", "is_private": True, "is_member": True},
]


def fail(code: str) -> Response:
    return JSONResponse({"ok": False, "error": code})


class FakeSlack(FakePlatform):
    """One workspace; ``messages`` by (channel, ts), ``files`` by id."""

    def __init__(self, *, max_text: int = 40000, share_polls: int = 0) -> None:
        self.oauth = OAuthBook(
            user="U0BOT", require_pkce=False, expires_in=None, issue_refresh=False
        )
        self.oauth.add_client("slack-app", "slack-secret", [])
        self.max_text = max_text
        self.share_polls = share_polls
        self.members = {c["id"] for c in CHANNELS if c["is_member"]}
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.files: dict[str, dict[str, Any]] = {}
        self.inactive = False
        self._ts = 0
        super().__init__()

    def rotation(self, on: bool = True) -> None:
        """Turn token rotation on: tokens expire and come with refresh tokens."""
        self.oauth.expires_in = 43200 if on else None
        self.oauth.issue_refresh = on

    def setup_routes(self) -> None:
        self.add("GET", "/oauth/v2/authorize", self.authorize)
        self.add("POST", "/api/oauth.v2.access", self.access)
        self.add("GET", "/api/team.info", self.team_info)
        self.add("GET", "/api/conversations.list", self.conversations_list)
        self.add("POST", "/api/conversations.join", self.conversations_join)
        self.add("POST", "/api/chat.postMessage", self.post_message)
        self.add("GET", "/api/chat.getPermalink", self.permalink)
        self.add("POST", "/api/files.getUploadURLExternal", self.upload_url)
        self.add("POST", "/upload/v1/{file}", self.upload)
        self.add("POST", "/api/files.completeUploadExternal", self.complete_upload)
        self.add("GET", "/api/files.info", self.files_info)
        self.add("GET", "/api/conversations.history", self.history)
        self.add("GET", "/api/conversations.replies", self.replies)

    # ---- OAuth ----------------------------------------------------------------------------

    async def authorize(self, request: RecordedRequest) -> Response:
        if "response_type" in request.query:
            return JSONResponse({"error": "unexpected response_type"}, 400)
        # Slack's authorize has no response_type: it is always a code.
        return self.oauth.authorize(
            replace(request, query={**request.query, "response_type": "code"})
        )

    async def access(self, request: RecordedRequest) -> Response:
        # grant_type is optional for a code exchange at Slack.
        form = {"grant_type": "authorization_code", **request.form}
        answer = self.oauth.token(replace(request, form=form))
        data = json.loads(bytes(answer.body))
        if answer.status_code != 200:
            refresh = form["grant_type"] == "refresh_token"
            if data.get("error") == "invalid_client":
                return fail("invalid_client_id")
            return fail("invalid_refresh_token" if refresh else "invalid_code")
        data.update(
            ok=True,
            token_type="bot",
            scope="chat:write,channels:read",
            bot_user_id="U0BOT",
            app_id="A0TIDINGS",
            team={"id": TEAM_ID, "name": "Acme"},
            enterprise=None,
            authed_user={"id": "U0ALICE"},
        )
        return JSONResponse(data)

    def _auth(self, request: RecordedRequest) -> Response | None:
        if not (request.auth or "").startswith("Bearer "):
            return fail("not_authed")
        if self.oauth.is_revoked(request):
            return fail("token_revoked")
        if self.oauth.user_for(request) is None:
            return fail("invalid_auth")
        if self.inactive:
            return fail("account_inactive")
        return None

    # ---- reads ---------------------------------------------------------------------------

    async def team_info(self, request: RecordedRequest) -> Response:
        refused = self._auth(request)
        return refused or JSONResponse(
            {
                "ok": True,
                "team": {
                    "id": TEAM_ID,
                    "name": "Acme",
                    "domain": "acme",
                    "icon": {"image_132": "https://avatars.test/acme_132.png"},
                },
            }
        )

    async def conversations_list(self, request: RecordedRequest) -> Response:
        refused = self._auth(request)
        if refused:
            return refused
        start = int(request.query.get("cursor") or 0)
        page = 2  # small pages, so that the provider has to follow the cursor
        channels = [
            {**c, "is_member": c["id"] in self.members, "is_archived": False}
            for c in CHANNELS
            if not c["is_private"] or c["id"] in self.members or c["id"] == "G0SECRET33"
        ]
        chunk = channels[start : start + page]
        more = start + page < len(channels)
        return JSONResponse(
            {
                "ok": True,
                "channels": chunk,
                "response_metadata": {"next_cursor": str(start + page) if more else ""},
            }
        )

    async def conversations_join(self, request: RecordedRequest) -> Response:
        refused = self._auth(request)
        if refused:
            return refused
        channel = (request.json or {}).get("channel")
        if channel not in {c["id"] for c in CHANNELS if not c["is_private"]}:
            return fail("channel_not_found")
        self.members.add(channel)
        return JSONResponse({"ok": True, "channel": {"id": channel}})

    async def permalink(self, request: RecordedRequest) -> Response:
        refused = self._auth(request)
        if refused:
            return refused
        channel, ts = request.query.get("channel", ""), request.query.get("message_ts", "")
        if (channel, ts) not in self.messages:
            return fail("message_not_found")
        return JSONResponse(
            {
                "ok": True,
                "channel": channel,
                "permalink": f"https://acme.slack.test/archives/{channel}/p{ts.replace('.', '')}",
            }
        )

    # ---- writes --------------------------------------------------------------------------

    def _new_message(
        self,
        channel: str,
        text: str,
        thread_ts: str | None,
        files: list[str],
        user: str = "U0BOT",
    ) -> dict[str, Any] | Response:
        if channel not in {c["id"] for c in CHANNELS}:
            return fail("channel_not_found")
        if channel not in self.members:
            return fail("not_in_channel")
        if len(text) > self.max_text:
            return fail("msg_too_long")
        if not text and not files:
            return fail("no_text")
        if thread_ts is not None:
            parent = self.messages.get((channel, thread_ts))
            if parent is None:
                return fail("thread_not_found")
            if parent.get("thread_ts") not in (None, thread_ts):
                return fail("cannot_reply_to_message")  # Slack threads are one level deep
        # Slack's ts is the message's Unix time with microseconds, unique per channel.
        self._ts = max(self._ts + 1, int(time.time() * 1_000_000))
        ts = f"{self._ts // 1_000_000}.{self._ts % 1_000_000:06d}"
        message = {
            "ts": ts,
            "text": text,
            "thread_ts": thread_ts,
            "files": files,
            "user": user,
        }
        if thread_ts is not None:
            self.messages[(channel, thread_ts)]["thread_ts"] = thread_ts
        self.messages[(channel, ts)] = message
        return message

    async def post_message(self, request: RecordedRequest) -> Response:
        refused = self._auth(request)
        if refused:
            return refused
        if not request.content_type.startswith("application/json"):
            return fail("invalid_form_data")
        data = request.json or {}
        channel = str(data.get("channel") or "")
        message = self._new_message(channel, str(data.get("text") or ""), data.get("thread_ts"), [])
        if isinstance(message, Response):
            return message
        return JSONResponse(
            {"ok": True, "channel": channel, "ts": message["ts"], "message": message}
        )

    async def upload_url(self, request: RecordedRequest) -> Response:
        refused = self._auth(request)
        if refused:
            return refused
        form = request.form
        if not form.get("filename") or not form.get("length", "").isdigit():
            return fail("invalid_arguments")
        file_id = "F" + secrets.token_hex(5).upper()
        self.files[file_id] = {
            "id": file_id,
            "name": form["filename"],
            "length": int(form["length"]),
            "alt_txt": form.get("alt_txt"),
            "data": None,
            "shares": {},
            "pending_polls": self.share_polls,
        }
        return JSONResponse(
            {"ok": True, "upload_url": self.url(f"/upload/v1/{file_id}"), "file_id": file_id}
        )

    async def upload(self, request: RecordedRequest) -> Response:
        file = self.files.get(request.path_params["file"])
        if file is None:
            return PlainTextResponse("Not Found", 404)
        if len(request.body) != file["length"]:
            return PlainTextResponse("length mismatch", 400)
        file["data"] = request.body
        file["content_type"] = request.content_type
        return PlainTextResponse(f"OK - {len(request.body)}")

    async def complete_upload(self, request: RecordedRequest) -> Response:
        refused = self._auth(request)
        if refused:
            return refused
        data = request.json or {}
        ids = [str(f.get("id")) for f in data.get("files") or []]
        if not ids or any(i not in self.files or self.files[i]["data"] is None for i in ids):
            return fail("file_not_found")
        channel = data.get("channel_id")
        if channel:
            message = self._new_message(
                channel, str(data.get("initial_comment") or ""), data.get("thread_ts"), ids
            )
            if isinstance(message, Response):
                return message
            kind = "private" if channel.startswith("G") else "public"
            for file_id in ids:
                self.files[file_id]["shares"] = {kind: {channel: [{"ts": message["ts"]}]}}
        return JSONResponse(
            {"ok": True, "files": [{"id": i, "title": self.files[i]["name"]} for i in ids]}
        )

    async def files_info(self, request: RecordedRequest) -> Response:
        refused = self._auth(request)
        if refused:
            return refused
        file = self.files.get(request.query.get("file", ""))
        if file is None:
            return fail("file_not_found")
        shares = file["shares"]
        if shares and file["pending_polls"] > 0:
            file["pending_polls"] -= 1
            shares = {}  # sharing is asynchronous
        return JSONResponse(
            {"ok": True, "file": {"id": file["id"], "name": file["name"], "shares": shares}}
        )

    # ---- history -------------------------------------------------------------------------

    def _listed(self, message: dict[str, Any]) -> dict[str, Any]:
        text = message["text"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        out = {"type": "message", "user": message["user"], "text": text, "ts": message["ts"]}
        if message["thread_ts"]:
            out["thread_ts"] = message["thread_ts"]
        if message["files"]:
            out["files"] = [{"id": f} for f in message["files"]]
        return out

    async def history(self, request: RecordedRequest) -> Response:
        refused = self._auth(request)
        if refused:
            return refused
        channel, oldest = request.query.get("channel", ""), float(request.query.get("oldest", 0))
        found = [
            self._listed(m)
            for (c, ts), m in self.messages.items()
            if c == channel and float(ts) >= oldest and m["thread_ts"] in (None, ts)
        ]
        return JSONResponse({"ok": True, "messages": list(reversed(found)), "has_more": False})

    async def replies(self, request: RecordedRequest) -> Response:
        refused = self._auth(request)
        if refused:
            return refused
        channel, root = request.query.get("channel", ""), request.query.get("ts", "")
        if (channel, root) not in self.messages:
            return fail("thread_not_found")
        oldest = float(request.query.get("oldest", 0))
        found = [self._listed(self.messages[(channel, root)])] + [
            self._listed(m)
            for (c, ts), m in self.messages.items()
            if c == channel and m["thread_ts"] == root and ts != root and float(ts) >= oldest
        ]
        return JSONResponse({"ok": True, "messages": found, "has_more": False})

    def add_message(
        self, channel: str, text: str, *, user: str, thread_ts: str | None = None
    ) -> str:
        """A message posted by someone (``user``) outside of Tidings."""
        message = self._new_message(channel, text, thread_ts, [], user=user)
        assert isinstance(message, dict)
        return str(message["ts"])

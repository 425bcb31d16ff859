"""A fake Discord: bot authorization (OAuth 2 with a guild), users, guilds, channels, messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from starlette.responses import JSONResponse, RedirectResponse, Response

from tests.channels.providers.servers.base import FakePlatform, RecordedRequest
from tests.channels.providers.servers.oauth import OAuthBook

API = "/api/v10"
BOT_TOKEN = "bot-secret-token"
GUILD_ID = "81384788765712384"
CHANNELS = [
    {"id": "41771983423143937", "type": 0, "name": "general", "position": 1},
    {"id": "41771983423143938", "type": 2, "name": "Voice", "position": 2},
    {"id": "41771983423143939", "type": 5, "name": "announcements", "position": 0},
    {"id": "41771983423143940", "type": 4, "name": "Category", "position": 3},
]


def error(status: int, code: int, message: str, errors: Any = None) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status)


class FakeDiscord(FakePlatform):
    """One guild (``Tidings Fans``) the bot joins on authorization; ``messages`` by id."""

    def __init__(self) -> None:
        self.oauth = OAuthBook(user="80351110224678912", require_pkce=False, expires_in=604800)
        self.oauth.add_client("discord-app", "discord-secret", [])
        self.bot_in_guild = True
        self.messages: dict[str, dict[str, Any]] = {}
        self.nonces: dict[tuple[str, str], str] = {}
        self._next = 1_100_000_000_000_000_000
        super().__init__()

    def setup_routes(self) -> None:
        self.add("GET", "/oauth2/authorize", self.authorize)
        self.add("POST", f"{API}/oauth2/token", self.token)
        self.add("GET", f"{API}/users/@me", self.me)
        self.add("GET", f"{API}/guilds/{{guild}}", self.guild)
        self.add("GET", f"{API}/guilds/{{guild}}/channels", self.channels)
        self.add("POST", f"{API}/channels/{{channel}}/messages", self.create_message)
        self.add("GET", f"{API}/channels/{{channel}}/messages", self.list_messages)

    # ---- OAuth ----------------------------------------------------------------------------

    async def authorize(self, request: RecordedRequest) -> Response:
        scopes = request.query.get("scope", "").split()
        if "bot" not in scopes or not request.query.get("permissions", "").isdigit():
            return JSONResponse({"error": "invalid_scope"}, 400)
        answer = self.oauth.authorize(request)
        location = answer.headers.get("location")
        if answer.status_code != 302 or location is None:
            return answer
        return RedirectResponse(
            f"{location}&guild_id={GUILD_ID}&permissions={request.query['permissions']}", 302
        )

    async def token(self, request: RecordedRequest) -> Response:
        answer = self.oauth.token(request)
        if answer.status_code == 200 and request.form.get("grant_type") == "authorization_code":
            data = json.loads(bytes(answer.body))
            data["guild"] = self._guild_json()
            return JSONResponse(data)
        return answer

    def _guild_json(self) -> dict[str, Any]:
        return {"id": GUILD_ID, "name": "Tidings Fans", "icon": "a1b2c3", "owner_id": "80351"}

    # ---- REST ----------------------------------------------------------------------------

    async def me(self, request: RecordedRequest) -> Response:
        user = self.oauth.user_for(request)
        if user is None:
            return error(401, 0, "401: Unauthorized")
        return JSONResponse({"id": user, "username": "nelly", "global_name": "Nelly"})

    def _bot(self, request: RecordedRequest, guild: str) -> Response | None:
        if request.auth != f"Bot {BOT_TOKEN}":
            return error(401, 0, "401: Unauthorized")
        if guild != GUILD_ID:
            return error(404, 10004, "Unknown Guild")
        if not self.bot_in_guild:
            return error(403, 50001, "Missing Access")
        return None

    async def guild(self, request: RecordedRequest) -> Response:
        refused = self._bot(request, request.path_params["guild"])
        return refused or JSONResponse(self._guild_json())

    async def channels(self, request: RecordedRequest) -> Response:
        refused = self._bot(request, request.path_params["guild"])
        return refused or JSONResponse([{**c, "guild_id": GUILD_ID} for c in CHANNELS])

    async def create_message(self, request: RecordedRequest) -> Response:
        refused = self._bot(request, GUILD_ID)
        if refused:
            return refused
        channel = request.path_params["channel"]
        if channel not in {c["id"] for c in CHANNELS}:
            return error(404, 10003, "Unknown Channel")
        if request.content_type.startswith("multipart/form-data"):
            payload = json.loads(request.form.get("payload_json", "{}"))
        else:
            payload = request.json or {}
        content = str(payload.get("content") or "")
        files = {k: v for k, v in request.files.items() if k.startswith("files[")}
        if len(content) > 2000:
            return error(
                400,
                50035,
                "Invalid Form Body",
                {
                    "content": {
                        "_errors": [
                            {
                                "code": "BASE_TYPE_MAX_LENGTH",
                                "message": "Must be 2000 or fewer in length.",
                            }
                        ]
                    }
                },
            )
        if not content and not files:
            return error(400, 50006, "Cannot send an empty message")
        nonce = payload.get("nonce")
        if nonce and payload.get("enforce_nonce") and (channel, nonce) in self.nonces:
            return JSONResponse(self.messages[self.nonces[(channel, nonce)]])
        reference = payload.get("message_reference")
        if reference and reference.get("message_id") not in self.messages:
            if reference.get("fail_if_not_exists", True):
                return error(400, 50035, "Invalid Form Body")
            reference = None
        self._next += 1
        message_id = str(self._next)
        described = {a["id"]: a for a in payload.get("attachments") or []}
        message = {
            "id": message_id,
            "channel_id": channel,
            "content": content,
            "author": {"id": "bot", "bot": True},
            "timestamp": datetime.now(UTC).isoformat(),
            "message_reference": reference,
            "attachments": [
                {
                    "id": str(self._next + index + 1),
                    "filename": file.filename,
                    "content_type": file.content_type,
                    "size": len(file.data),
                    "description": described.get(index, {}).get("description"),
                }
                for index, file in enumerate(files.values())
            ],
        }
        self.messages[message_id] = message
        if nonce:
            self.nonces[(channel, nonce)] = message_id
        return JSONResponse(message)

    async def list_messages(self, request: RecordedRequest) -> Response:
        refused = self._bot(request, GUILD_ID)
        if refused:
            return refused
        channel = request.path_params["channel"]
        limit = int(request.query.get("limit") or 50)
        found = [m for m in self.messages.values() if m["channel_id"] == channel]
        return JSONResponse(list(reversed(found))[:limit])  # newest first

    def add_message(
        self,
        channel: str,
        content: str,
        *,
        bot: bool,
        reference: str | None = None,
        timestamp: str | None = None,
    ) -> str:
        """A message someone else (or the bot, earlier) posted."""
        self._next += 1
        message_id = str(self._next)
        self.messages[message_id] = {
            "id": message_id,
            "channel_id": channel,
            "content": content,
            "author": {"id": "bot" if bot else "human", "bot": bot},
            "timestamp": timestamp or datetime.now(UTC).isoformat(),
            "message_reference": {"message_id": reference} if reference else None,
            "attachments": [],
        }
        return message_id

"""A fake Mastodon instance: app registration, OAuth, accounts, media (async), statuses."""

from __future__ import annotations

import html
import secrets
from datetime import UTC, datetime
from typing import Any

import regex
from starlette.responses import JSONResponse, Response

from tests.channels.providers.servers.base import FakePlatform, RecordedRequest
from tests.channels.providers.servers.oauth import OAuthBook

URL = regex.compile(r"https?://\S+")


class FakeMastodon(FakePlatform):
    """One instance with one user (``alice``); ``statuses`` and ``media`` by id."""

    def __init__(
        self,
        *,
        max_characters: int = 500,
        media_processing_polls: int = 0,
        issue_refresh: bool = False,
    ) -> None:
        self.oauth = OAuthBook(user="109", issue_refresh=issue_refresh, expires_in=None)
        self.max_characters = max_characters
        self.media_processing_polls = media_processing_polls
        self.statuses: dict[str, dict[str, Any]] = {}
        self.sources: dict[str, dict[str, Any]] = {}
        self.media: dict[str, dict[str, Any]] = {}
        self.idempotency: dict[tuple[str, str], str] = {}
        self.suspended = False
        self._next = 1000
        super().__init__()

    def _id(self) -> str:
        self._next += 1
        return str(self._next)

    def setup_routes(self) -> None:
        self.add("POST", "/api/v1/apps", self.create_app)
        self.add("GET", "/oauth/authorize", self.authorize)
        self.add("POST", "/oauth/token", self.token)
        self.add("GET", "/api/v1/accounts/verify_credentials", self.verify_credentials)
        self.add("GET", "/api/v2/instance", self.instance)
        self.add("POST", "/api/v2/media", self.upload_media)
        self.add("GET", "/api/v1/media/{id}", self.get_media)
        self.add("POST", "/api/v1/statuses", self.create_status)
        self.add("GET", "/api/v1/accounts/{id}/statuses", self.account_statuses)
        self.add("GET", "/api/v1/statuses/{id}/source", self.status_source)

    # ---- auth ---------------------------------------------------------------------------

    async def create_app(self, request: RecordedRequest) -> Response:
        data = request.form or request.json or {}
        if not data.get("client_name") or not data.get("redirect_uris"):
            return JSONResponse({"error": "Validation failed: Name can't be blank"}, 422)
        uris = data["redirect_uris"]
        uris = uris if isinstance(uris, list) else str(uris).split()
        client = self.oauth.add_client(
            "cid-" + secrets.token_hex(4), "csecret-" + secrets.token_hex(8), uris
        )
        return JSONResponse(
            {
                "id": self._id(),
                "name": data["client_name"],
                "website": data.get("website"),
                "scopes": str(data.get("scopes", "read")).split(),
                "redirect_uri": "\n".join(uris),
                "redirect_uris": uris,
                "client_id": client.client_id,
                "client_secret": client.client_secret,
            }
        )

    async def authorize(self, request: RecordedRequest) -> Response:
        return self.oauth.authorize(request)

    async def token(self, request: RecordedRequest) -> Response:
        return self.oauth.token(request)

    def _user(self, request: RecordedRequest) -> str | Response:
        if self.oauth.is_revoked(request):
            return JSONResponse({"error": "The access token was revoked"}, 401)
        user = self.oauth.user_for(request)
        if user is None:
            return JSONResponse({"error": "The access token is invalid"}, 401)
        if self.suspended:
            return JSONResponse({"error": "Your login is currently disabled"}, 403)
        return user

    async def verify_credentials(self, request: RecordedRequest) -> Response:
        user = self._user(request)
        if isinstance(user, Response):
            return user
        return JSONResponse(
            {
                "id": user,
                "username": "alice",
                "acct": "alice",
                "display_name": "Alice M",
                "avatar": f"{self.base_url}/avatars/alice.png",
                "url": f"{self.base_url}/@alice",
            }
        )

    async def instance(self, request: RecordedRequest) -> Response:
        return JSONResponse(
            {
                "domain": "127.0.0.1",
                "title": "Fake",
                "configuration": {
                    "statuses": {
                        "max_characters": self.max_characters,
                        "max_media_attachments": 4,
                        "characters_reserved_per_url": 23,
                    },
                    "media_attachments": {
                        "supported_mime_types": ["image/png", "image/jpeg", "video/mp4"]
                    },
                },
            }
        )

    # ---- media and statuses ---------------------------------------------------------------

    async def upload_media(self, request: RecordedRequest) -> Response:
        user = self._user(request)
        if isinstance(user, Response):
            return user
        file = request.files.get("file")
        if file is None or not file.data:
            return JSONResponse({"error": "Validation failed: File can't be blank"}, 422)
        media_id = self._id()
        kind = "video" if (file.content_type or "").startswith("video/") else "image"
        pending = self.media_processing_polls if kind == "video" else 0
        self.media[media_id] = {
            "id": media_id,
            "type": kind,
            "description": request.form.get("description"),
            "data": file.data,
            "thumbnail": request.files.get("thumbnail"),
            "pending": pending,
            "owner": user,
        }
        return JSONResponse(self._media_json(media_id), 202 if pending else 200)

    def _media_json(self, media_id: str) -> dict[str, Any]:
        media = self.media[media_id]
        ready = media["pending"] <= 0
        return {
            "id": media_id,
            "type": media["type"],
            "url": f"{self.base_url}/system/{media_id}" if ready else None,
            "preview_url": f"{self.base_url}/system/{media_id}/small",
            "description": media["description"],
        }

    async def get_media(self, request: RecordedRequest) -> Response:
        user = self._user(request)
        if isinstance(user, Response):
            return user
        media = self.media.get(request.path_params["id"])
        if media is None:
            return JSONResponse({"error": "Record not found"}, 404)
        if media["pending"] > 0:
            media["pending"] -= 1
            return JSONResponse(self._media_json(media["id"]) | {"url": None}, 206)
        return JSONResponse(self._media_json(media["id"]))

    async def create_status(self, request: RecordedRequest) -> Response:
        user = self._user(request)
        if isinstance(user, Response):
            return user
        data = request.json if request.json is not None else request.form
        key = request.headers.get("idempotency-key")
        if key and (user, key) in self.idempotency:
            return JSONResponse(self.statuses[self.idempotency[(user, key)]])
        text = str(data.get("status") or "")
        media_ids = [str(m) for m in data.get("media_ids") or []]
        if not text and not media_ids:
            return JSONResponse({"error": "Validation failed: Text can't be blank"}, 422)
        countable = URL.sub("x" * 23, text) + str(data.get("spoiler_text") or "")
        if len(regex.findall(r"\X", countable)) > self.max_characters:
            return JSONResponse(
                {
                    "error": "Validation failed: Text character limit of "
                    f"{self.max_characters} exceeded"
                },
                422,
            )
        for media_id in media_ids:
            media = self.media.get(media_id)
            if media is None:
                return JSONResponse({"error": "Validation failed: Media is invalid"}, 422)
            if media["pending"] > 0:
                return JSONResponse(
                    {
                        "error": "Cannot attach files that have not finished processing. "
                        "Try again in a moment!"
                    },
                    422,
                )
        reply_to = data.get("in_reply_to_id")
        if reply_to is not None and str(reply_to) not in self.statuses:
            return JSONResponse({"error": "Record not found"}, 404)
        status_id = self._id()
        status = {
            "id": status_id,
            "uri": f"{self.base_url}/users/alice/statuses/{status_id}",
            "url": f"{self.base_url}/@alice/{status_id}",
            "content": f"<p>{html.escape(text)}</p>",
            "created_at": datetime.now(UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "account": {"id": user, "acct": "alice"},
            "in_reply_to_id": str(reply_to) if reply_to is not None else None,
            "visibility": data.get("visibility") or "public",
            "media_attachments": [self._media_json(m) for m in media_ids],
        }
        self.statuses[status_id] = status
        self.sources[status_id] = {
            "id": status_id,
            "text": text,
            "spoiler_text": str(data.get("spoiler_text") or ""),
        }
        if key:
            self.idempotency[(user, key)] = status_id
        return JSONResponse(status)

    async def account_statuses(self, request: RecordedRequest) -> Response:
        user = self._user(request)
        if isinstance(user, Response):
            return user
        if request.path_params["id"] != user:
            return JSONResponse({"error": "Record not found"}, 404)
        limit = int(request.query.get("limit", "20"))
        return JSONResponse(list(reversed(list(self.statuses.values())))[:limit])

    async def status_source(self, request: RecordedRequest) -> Response:
        user = self._user(request)
        if isinstance(user, Response):
            return user
        source = self.sources.get(request.path_params["id"])
        if source is None:
            return JSONResponse({"error": "Record not found"}, 404)
        return JSONResponse(source)

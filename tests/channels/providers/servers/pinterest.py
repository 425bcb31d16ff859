"""A fake Pinterest API v5: OAuth, user account, boards, media registration with a storage
upload, media status and pins."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from starlette.responses import JSONResponse, Response

from tests.channels.providers.servers.base import FakePlatform, RecordedRequest
from tests.channels.providers.servers.oauth import OAuthBook

CLIENT_ID = "1484362"
CLIENT_SECRET = "pin-secret"
BOARDS = [
    {"id": "549755885175", "name": "Recipes", "privacy": "PUBLIC"},
    {"id": "549755885176", "name": "Travel", "privacy": "PUBLIC"},
    {"id": "549755885177", "name": "Secret stuff", "privacy": "SECRET"},
]


def pin_error(status: int, code: int, message: str) -> Response:
    return JSONResponse({"code": code, "message": message}, status)


class FakePinterest(FakePlatform):
    """One business account (``tidingsshop``); ``pins`` and ``media`` by id."""

    def __init__(self, *, processing_polls: int = 1) -> None:
        self.oauth = OAuthBook(user="pinner-1", require_pkce=False, expires_in=2592000)
        self.oauth.add_client(CLIENT_ID, CLIENT_SECRET, [])
        self.processing_polls = processing_polls
        self.media: dict[str, dict[str, Any]] = {}
        self.pins: dict[str, dict[str, Any]] = {}
        self.suspended = False
        self.video_fails = False
        self._next = 1000000000000
        super().__init__()

    def setup_routes(self) -> None:
        self.add("GET", "/oauth/", self.authorize)
        self.add("POST", "/v5/oauth/token", self.token)
        self.add("GET", "/v5/user_account", self.user_account)
        self.add("GET", "/v5/boards", self.boards)
        self.add("POST", "/v5/media", self.register_media)
        self.add("GET", "/v5/media/{media_id}", self.media_status)
        self.add("POST", "/storage-upload", self.storage_upload)
        self.add("POST", "/v5/pins", self.create_pin)
        self.add("GET", "/v5/boards/{board_id}/pins", self.board_pins)

    async def authorize(self, request: RecordedRequest) -> Response:
        return self.oauth.authorize(request)

    async def token(self, request: RecordedRequest) -> Response:
        if not (request.auth or "").startswith("Basic "):
            return pin_error(401, 2, "Authentication failed.")
        return self.oauth.token(request)

    def _auth(self, request: RecordedRequest) -> Response | None:
        if self.oauth.user_for(request) is None:
            return pin_error(401, 2, "Authentication failed.")
        if self.suspended:
            return pin_error(403, 3, "Authorization failed: the account is suspended.")
        return None

    async def user_account(self, request: RecordedRequest) -> Response:
        refused = self._auth(request)
        return refused or JSONResponse(
            {
                "account_type": "BUSINESS",
                "id": "1148715754812345",
                "username": "tidingsshop",
                "business_name": "Tidings Shop",
                "profile_image": "https://i.pinimg.test/shop.jpg",
                "website_url": "https://tidings.example",
            }
        )

    async def boards(self, request: RecordedRequest) -> Response:
        refused = self._auth(request)
        if refused:
            return refused
        start = int(request.query.get("bookmark") or 0)
        chunk = BOARDS[start : start + 2]
        bookmark = str(start + 2) if start + 2 < len(BOARDS) else None
        return JSONResponse({"items": chunk, "bookmark": bookmark})

    async def register_media(self, request: RecordedRequest) -> Response:
        refused = self._auth(request)
        if refused:
            return refused
        if (request.json or {}).get("media_type") != "video":
            return pin_error(400, 1, "media_type must be video")
        self._next += 1
        media_id = str(self._next)
        key = secrets.token_hex(4)
        self.media[media_id] = {"key": key, "data": None, "polls": self.processing_polls}
        return JSONResponse(
            {
                "media_id": media_id,
                "media_type": "video",
                "upload_url": self.url("/storage-upload"),
                "upload_parameters": {
                    "key": f"uploads/{key}",
                    "x-amz-signature": "sig-" + key,
                    "Content-Type": "multipart/form-data",
                },
            }
        )

    async def storage_upload(self, request: RecordedRequest) -> Response:
        key = request.form.get("key", "").removeprefix("uploads/")
        media = next((m for m in self.media.values() if m["key"] == key), None)
        file = request.files.get("file")
        if media is None or file is None or request.form.get("x-amz-signature") != "sig-" + key:
            return Response("<Error>AccessDenied</Error>", 403)
        media["data"] = file.data
        media["content_type"] = file.content_type
        return Response(status_code=204)

    async def media_status(self, request: RecordedRequest) -> Response:
        refused = self._auth(request)
        if refused:
            return refused
        media_id = request.path_params["media_id"]
        media = self.media.get(media_id)
        if media is None:
            return pin_error(404, 4, "Media not found.")
        if media["data"] is None:
            status = "registered"
        elif self.video_fails:
            status = "failed"
        elif media["polls"] > 0:
            media["polls"] -= 1
            status = "processing"
        else:
            status = "succeeded"
        return JSONResponse({"media_id": media_id, "media_type": "video", "status": status})

    async def create_pin(self, request: RecordedRequest) -> Response:
        refused = self._auth(request)
        if refused:
            return refused
        body = request.json or {}
        if body.get("board_id") not in {b["id"] for b in BOARDS}:
            return pin_error(404, 2000, "Board not found.")
        if len(str(body.get("description") or "")) > 800:
            return pin_error(400, 1, "Invalid parameters: description is too long (800 max).")
        source = body.get("media_source") or {}
        kind = source.get("source_type")
        if kind == "video_id":
            media = self.media.get(str(source.get("media_id")))
            if media is None or media["data"] is None or not source.get("cover_image_url"):
                return pin_error(400, 1, "Invalid video media source.")
        elif kind == "multiple_image_urls":
            if not 2 <= len(source.get("items") or []) <= 5:
                return pin_error(400, 1, "A carousel has 2 to 5 images.")
        elif kind != "image_url" or not source.get("url"):
            return pin_error(400, 1, "Invalid media source.")
        self._next += 1
        pin_id = str(self._next)
        # Pinterest's created_at has no time zone: it is UTC.
        self.pins[pin_id] = {**body, "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")}
        return JSONResponse({"id": pin_id, "board_id": body["board_id"], **body}, 201)

    async def board_pins(self, request: RecordedRequest) -> Response:
        refused = self._auth(request)
        if refused:
            return refused
        board = request.path_params["board_id"]
        found = [
            {
                "id": i,
                "board_id": board,
                "description": p.get("description"),
                "created_at": p["created_at"],
            }
            for i, p in self.pins.items()
            if p["board_id"] == board
        ]
        return JSONResponse({"items": list(reversed(found)), "bookmark": None})

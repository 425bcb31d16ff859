"""A fake Google OAuth server and YouTube Data API: channels, playlists, resumable video
uploads (with status queries and resumption), thumbnails and playlist items."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from starlette.responses import JSONResponse, Response

from tests.channels.providers.servers.base import FakePlatform, RecordedRequest
from tests.channels.providers.servers.oauth import OAuthBook

CLIENT_ID = "google-client.apps.googleusercontent.com"
CLIENT_SECRET = "google-secret"
CHANNEL = {
    "id": "UCx1y2z3",
    "snippet": {
        "title": "Tidings TV",
        "customUrl": "@tidingstv",
        "thumbnails": {
            "default": {"url": "https://yt3.test/default.jpg"},
            "high": {"url": "https://yt3.test/high.jpg"},
        },
    },
}
BRAND = {"id": "UCbrand99", "snippet": {"title": "Tidings Brand", "thumbnails": {}}}
VIDEOS = "/upload/youtube/v3/videos"


def google_error(status: int, reason: str, message: str, domain: str = "youtube.video") -> Response:
    return JSONResponse(
        {
            "error": {
                "code": status,
                "message": message,
                "errors": [{"message": message, "domain": domain, "reason": reason}],
            }
        },
        status,
    )


class FakeYouTube(FakePlatform):
    """One Google account with one channel (``several_channels`` adds a brand channel)."""

    def __init__(self, *, several_channels: bool = False) -> None:
        self.oauth = OAuthBook(user="google-user-1", rotate_refresh=False, expires_in=3599)
        self.oauth.add_client(CLIENT_ID, CLIENT_SECRET, [])
        self.channels = [CHANNEL, BRAND] if several_channels else [CHANNEL]
        self.sessions: dict[str, dict[str, Any]] = {}
        self.videos: dict[str, dict[str, Any]] = {}
        self.playlist_items: list[dict[str, Any]] = []
        self.thumbnails: dict[str, bytes] = {}
        self.suspended = False
        # Take the bytes, then never answer: the upload completes but its answer is lost.
        self.lose_upload_answer = False
        self._hold = asyncio.Event()
        super().__init__()

    async def __aexit__(self, *exc: Any) -> None:
        self._hold.set()
        await super().__aexit__(*exc)

    def setup_routes(self) -> None:
        self.add("GET", "/o/oauth2/v2/auth", self.authorize)
        self.add("POST", "/token", self.token)
        self.add("GET", "/youtube/v3/channels", self.list_channels)
        self.add("GET", "/youtube/v3/playlists", self.list_playlists)
        self.add("POST", "/youtube/v3/playlistItems", self.add_playlist_item)
        self.add("POST", VIDEOS, self.start_upload)
        self.add("PUT", VIDEOS, self.upload)
        self.add("POST", "/upload/youtube/v3/thumbnails/set", self.set_thumbnail)

    # ---- OAuth ----------------------------------------------------------------------------

    async def authorize(self, request: RecordedRequest) -> Response:
        if request.query.get("access_type") != "offline":
            return JSONResponse({"error": "invalid_request"}, 400)
        return self.oauth.authorize(request)

    async def token(self, request: RecordedRequest) -> Response:
        return self.oauth.token(request)

    def _user(self, request: RecordedRequest) -> Response | None:
        if self.oauth.user_for(request) is None:
            return google_error(
                401, "authError", "Request had invalid authentication credentials.", "global"
            )
        if self.suspended:
            return google_error(403, "accountSuspended", "The YouTube account is suspended.")
        return None

    # ---- reads ---------------------------------------------------------------------------

    async def list_channels(self, request: RecordedRequest) -> Response:
        refused = self._user(request)
        if refused:
            return refused
        if request.query.get("mine") != "true":
            return google_error(400, "missingParameter", "No filter selected.")
        return JSONResponse({"kind": "youtube#channelListResponse", "items": self.channels})

    async def list_playlists(self, request: RecordedRequest) -> Response:
        refused = self._user(request)
        if refused:
            return refused
        pages = [
            [{"id": "PL1", "snippet": {"title": "Shorts"}}],
            [{"id": "PL2", "snippet": {"title": "Tutorials"}}],
        ]
        index = int(request.query.get("pageToken") or 0)
        body: dict[str, Any] = {"items": pages[index]}
        if index + 1 < len(pages):
            body["nextPageToken"] = str(index + 1)
        return JSONResponse(body)

    # ---- uploads -------------------------------------------------------------------------

    async def start_upload(self, request: RecordedRequest) -> Response:
        refused = self._user(request)
        if refused:
            return refused
        q = request.query
        if q.get("uploadType") != "resumable" or q.get("part") != "snippet,status":
            return google_error(400, "invalidParameter", "Bad upload parameters.")
        meta = request.json or {}
        title = str((meta.get("snippet") or {}).get("title") or "")
        if not title:
            return google_error(
                400,
                "invalidTitle",
                "The request metadata specifies an invalid or empty video title.",
            )
        if len(title) > 100 or "<" in title:
            return google_error(
                400, "invalidTitle", "The request metadata specifies an invalid video title."
            )
        upload_id = secrets.token_hex(8)
        self.sessions[upload_id] = {
            "meta": meta,
            "length": int(request.headers.get("x-upload-content-length", "0")),
            "type": request.headers.get("x-upload-content-type"),
            "data": b"",
            "video": None,
            "notify": q.get("notifySubscribers"),
        }
        location = self.url(f"{VIDEOS}?uploadType=resumable&upload_id={upload_id}")
        return Response(status_code=200, headers={"Location": location})

    async def upload(self, request: RecordedRequest) -> Response:
        session = self.sessions.get(request.query.get("upload_id", ""))
        if session is None:
            return google_error(404, "notFound", "Upload session not found.")
        if self.oauth.user_for(request) is None:
            return google_error(401, "authError", "Invalid credentials", "global")
        total = session["length"]
        content_range = request.headers.get("content-range", "")
        if content_range == f"bytes */{total}":  # a status query
            if session["video"] is not None:
                return JSONResponse(self.videos[session["video"]], 200)
            headers = {"Range": f"bytes=0-{len(session['data']) - 1}"} if session["data"] else {}
            return Response(status_code=308, headers=headers)
        start = 0
        if content_range.startswith("bytes "):
            start = int(content_range.removeprefix("bytes ").split("-")[0])
        if start != len(session["data"]):
            return google_error(400, "badContent", "Content-Range does not match the upload.")
        session["data"] += request.body
        if len(session["data"]) < total:
            return Response(
                status_code=308, headers={"Range": f"bytes=0-{len(session['data']) - 1}"}
            )
        video_id = "vid" + secrets.token_hex(4)
        session["video"] = video_id
        self.videos[video_id] = {
            "kind": "youtube#video",
            "id": video_id,
            "snippet": session["meta"].get("snippet"),
            "status": {**(session["meta"].get("status") or {}), "uploadStatus": "uploaded"},
        }
        if self.lose_upload_answer:
            self.lose_upload_answer = False
            await self._hold.wait()
        return JSONResponse(
            {k: v for k, v in self.videos[video_id].items() if not k.startswith("_")}
        )

    async def set_thumbnail(self, request: RecordedRequest) -> Response:
        refused = self._user(request)
        if refused:
            return refused
        video_id = request.query.get("videoId", "")
        if video_id not in self.videos:
            return google_error(404, "videoNotFound", "The video was not found.")
        self.thumbnails[video_id] = request.body
        return JSONResponse({"items": [{"default": {"url": "https://i.ytimg.test/t.jpg"}}]})

    async def add_playlist_item(self, request: RecordedRequest) -> Response:
        refused = self._user(request)
        if refused:
            return refused
        snippet = (request.json or {}).get("snippet") or {}
        if snippet.get("playlistId") not in ("PL1", "PL2"):
            return google_error(404, "playlistNotFound", "Playlist not found.")
        self.playlist_items.append(snippet)
        return JSONResponse({"id": "PLI" + secrets.token_hex(3), "snippet": snippet})

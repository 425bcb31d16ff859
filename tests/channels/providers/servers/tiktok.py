"""A fake TikTok: Login Kit OAuth v2, user info, creator info, video init (direct / inbox,
file upload in chunks / pull from URL), photo init, publish status."""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import replace
from typing import Any

from starlette.responses import JSONResponse, Response

from tests.channels.providers.servers.base import FakePlatform, RecordedRequest
from tests.channels.providers.servers.oauth import OAuthBook

CLIENT_KEY = "tt-client-key"
CLIENT_SECRET = "tt-secret"
OPEN_ID = "-000OpenIdOfNelly"
OK = {"code": "ok", "message": "", "log_id": "log1"}


def tiktok_error(status: int, code: str, message: str) -> Response:
    return JSONResponse({"error": {"code": code, "message": message, "log_id": "log2"}}, status)


def answer(data: dict[str, Any]) -> Response:
    return JSONResponse({"data": data, "error": OK})


class FakeTikTok(FakePlatform):
    """One creator (``nelly``); ``publishes`` by publish_id."""

    def __init__(self, *, processing_polls: int = 1) -> None:
        self.oauth = OAuthBook(user=OPEN_ID, require_pkce=False, expires_in=86400)
        self.oauth.add_client(CLIENT_KEY, CLIENT_SECRET, [])
        self.processing_polls = processing_polls
        self.privacy_options = ["PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"]
        self.comment_disabled = False
        self.publishes: dict[str, dict[str, Any]] = {}
        self.fail_reason: str | None = None
        self.scope_revoked = False
        self._post_id = 7300000000000000000
        # Take the last chunk, then never answer: the upload is complete, its answer lost.
        self.lose_upload_answer = False
        self._hold = asyncio.Event()
        super().__init__()

    async def __aexit__(self, *exc: Any) -> None:
        self._hold.set()
        await super().__aexit__(*exc)

    def setup_routes(self) -> None:
        self.add("GET", "/v2/auth/authorize/", self.authorize)
        self.add("POST", "/v2/oauth/token/", self.token)
        self.add("GET", "/v2/user/info/", self.user_info)
        self.add("POST", "/v2/post/publish/creator_info/query/", self.creator_info)
        self.add("POST", "/v2/post/publish/video/init/", self.video_init)
        self.add("POST", "/v2/post/publish/inbox/video/init/", self.inbox_init)
        self.add("POST", "/v2/post/publish/content/init/", self.content_init)
        self.add("POST", "/v2/post/publish/status/fetch/", self.status)
        self.add("PUT", "/upload/{publish_id}", self.upload)

    # ---- OAuth ----------------------------------------------------------------------------

    async def authorize(self, request: RecordedRequest) -> Response:
        query = {**request.query, "client_id": request.query.get("client_key", "")}
        return self.oauth.authorize(replace(request, query=query))

    async def token(self, request: RecordedRequest) -> Response:
        form = {**request.form, "client_id": request.form.get("client_key", "")}
        result = self.oauth.token(replace(request, form=form))
        if result.status_code != 200:
            return result
        data = json.loads(bytes(result.body))
        data.update(open_id=OPEN_ID, refresh_expires_in=31536000)
        return JSONResponse(data)

    def _auth(self, request: RecordedRequest) -> Response | None:
        if self.oauth.user_for(request) is None:
            return tiktok_error(
                401,
                "access_token_invalid",
                "The access token is invalid or not found in the request.",
            )
        if self.scope_revoked:
            return tiktok_error(
                401,
                "scope_not_authorized",
                "The user did not authorize the scope required for completing this request.",
            )
        return None

    # ---- reads ---------------------------------------------------------------------------

    async def user_info(self, request: RecordedRequest) -> Response:
        refused = self._auth(request)
        if refused:
            return refused
        return answer(
            {
                "user": {
                    "open_id": OPEN_ID,
                    "union_id": "union-1",
                    "avatar_url": "https://p16.tiktokcdn.test/nelly.jpeg",
                    "display_name": "Nelly",
                    "username": "nelly",
                }
            }
        )

    async def creator_info(self, request: RecordedRequest) -> Response:
        refused = self._auth(request)
        if refused:
            return refused
        return answer(
            {
                "creator_avatar_url": "https://p16.tiktokcdn.test/nelly.jpeg",
                "creator_username": "nelly",
                "creator_nickname": "Nelly",
                "privacy_level_options": self.privacy_options,
                "comment_disabled": self.comment_disabled,
                "duet_disabled": False,
                "stitch_disabled": True,
                "max_video_post_duration_sec": 300,
            }
        )

    # ---- publishing ----------------------------------------------------------------------

    def _new(self, kind: str, body: dict[str, Any], *, pending_upload: int = 0) -> str:
        publish_id = f"v_pub_{kind}~" + secrets.token_hex(4)
        self.publishes[publish_id] = {
            "kind": kind,
            "body": body,
            "expected": pending_upload,
            "data": b"",
            "polls": self.processing_polls,
        }
        return publish_id

    def _video(self, request: RecordedRequest, *, direct: bool) -> Response:
        refused = self._auth(request)
        if refused:
            return refused
        body = request.json or {}
        post_info = body.get("post_info") or {}
        if direct:
            title = str(post_info.get("title") or "")
            if len(title.encode("utf-16-le")) // 2 > 2200:
                return tiktok_error(400, "invalid_params", "The title exceeds 2200 characters.")
            if post_info.get("privacy_level") not in self.privacy_options:
                return tiktok_error(
                    400,
                    "privacy_level_option_mismatch",
                    "privacy_level is not one of the creator's options",
                )
        source = body.get("source_info") or {}
        if source.get("source") == "PULL_FROM_URL":
            if not source.get("video_url"):
                return tiktok_error(400, "invalid_params", "video_url is required")
            return answer({"publish_id": self._new("pull", body)})
        size, chunk, count = (
            source.get("video_size"),
            source.get("chunk_size"),
            source.get("total_chunk_count"),
        )
        if not size or not chunk or count != max(1, size // chunk):
            return tiktok_error(
                400, "invalid_params", "The chunk size and count do not match the video size."
            )
        publish_id = self._new("file", body, pending_upload=size)
        return answer({"publish_id": publish_id, "upload_url": self.url(f"/upload/{publish_id}")})

    async def video_init(self, request: RecordedRequest) -> Response:
        return self._video(request, direct=True)

    async def inbox_init(self, request: RecordedRequest) -> Response:
        return self._video(request, direct=False)

    async def content_init(self, request: RecordedRequest) -> Response:
        refused = self._auth(request)
        if refused:
            return refused
        body = request.json or {}
        source = body.get("source_info") or {}
        if body.get("media_type") != "PHOTO" or source.get("source") != "PULL_FROM_URL":
            return tiktok_error(400, "invalid_params", "Photos are pulled from URLs")
        if not 1 <= len(source.get("photo_images") or []) <= 35:
            return tiktok_error(400, "invalid_params", "1 to 35 photos")
        return answer({"publish_id": self._new("photo", body)})

    async def upload(self, request: RecordedRequest) -> Response:
        publish = self.publishes.get(request.path_params["publish_id"])
        if publish is None:
            return tiktok_error(404, "invalid_params", "Unknown upload")
        start, _, rest = (
            request.headers.get("content-range", "").removeprefix("bytes ").partition("-")
        )
        end, _, total = rest.partition("/")
        if int(start) != len(publish["data"]) or int(total) != publish["expected"]:
            return tiktok_error(400, "invalid_params", "Content-Range mismatch")
        if int(end) - int(start) + 1 != len(request.body):
            return tiktok_error(400, "invalid_params", "Content-Range does not match the chunk")
        publish["data"] += request.body
        publish["content_type"] = request.content_type
        complete = len(publish["data"]) == publish["expected"]
        if complete and self.lose_upload_answer:
            self.lose_upload_answer = False
            await self._hold.wait()
        return Response(status_code=201 if complete else 206)

    async def status(self, request: RecordedRequest) -> Response:
        refused = self._auth(request)
        if refused:
            return refused
        publish = self.publishes.get(str((request.json or {}).get("publish_id")))
        if publish is None:
            return tiktok_error(400, "invalid_params", "Unknown publish_id")
        if publish["kind"] == "file" and len(publish["data"]) < publish["expected"]:
            return answer({"status": "PROCESSING_UPLOAD", "uploaded_bytes": len(publish["data"])})
        if self.fail_reason:
            return answer({"status": "FAILED", "fail_reason": self.fail_reason})
        if publish["polls"] > 0:
            publish["polls"] -= 1
            return answer(
                {
                    "status": "PROCESSING_DOWNLOAD"
                    if publish["kind"] != "file"
                    else "PROCESSING_UPLOAD",
                    "uploaded_bytes": len(publish["data"]),
                }
            )
        body = publish["body"]
        if "post_info" not in body or body.get("post_mode") == "MEDIA_UPLOAD":
            return answer({"status": "SEND_TO_USER_INBOX"})
        if "post_id" not in publish:
            self._post_id += 1
            publish["post_id"] = self._post_id
        private = (body.get("post_info") or {}).get("privacy_level") == "SELF_ONLY"
        ids = [] if private else [publish["post_id"]]
        return answer({"status": "PUBLISH_COMPLETE", "publicaly_available_post_id": ids})

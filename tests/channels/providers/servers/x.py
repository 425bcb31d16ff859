"""A fake X API v2: OAuth 2 (PKCE), users/me, tweets and the v2 media upload endpoints."""

from __future__ import annotations

import html
import re
import time
from datetime import UTC, datetime
from typing import Any

from starlette.responses import JSONResponse, Response

from tests.channels.providers.servers.base import FakePlatform, RecordedRequest
from tests.channels.providers.servers.oauth import OAuthBook

CLIENT_ID = "x-client"
CLIENT_SECRET = "x-secret"


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    body = {"title": title, "detail": detail, "type": "about:blank", "status": status} | extra
    return JSONResponse(body, status)


class FakeX(FakePlatform):
    """Serves both hosts (x.com for authorize, api.x.com for the rest) on one port."""

    def __init__(self, *, verified: bool = False, processing_polls: int = 1) -> None:
        self.oauth = OAuthBook(user="1500", expires_in=7200)
        self.oauth.add_client(CLIENT_ID, CLIENT_SECRET, [])
        self.verified = verified
        self.processing_polls = processing_polls
        self.tweets: dict[str, dict[str, Any]] = {}
        self.media: dict[str, dict[str, Any]] = {}
        self.suspended = False
        self._next = 1_800_000_000_000_000_000
        super().__init__()

    def _id(self) -> str:
        self._next += 1
        return str(self._next)

    def setup_routes(self) -> None:
        self.add("GET", "/i/oauth2/authorize", self.authorize)
        self.add("POST", "/2/oauth2/token", self.token)
        self.add("GET", "/2/users/me", self.me)
        self.add("POST", "/2/tweets", self.create_tweet)
        self.add("POST", "/2/media/upload", self.simple_upload)
        self.add("GET", "/2/media/upload", self.status)
        self.add("POST", "/2/media/upload/initialize", self.initialize)
        self.add("POST", "/2/media/upload/{id}/append", self.append)
        self.add("POST", "/2/media/upload/{id}/finalize", self.finalize)
        self.add("POST", "/2/media/metadata", self.metadata)
        self.add("GET", "/2/users/{id}/tweets", self.timeline)

    async def authorize(self, request: RecordedRequest) -> Response:
        return self.oauth.authorize(request)

    async def token(self, request: RecordedRequest) -> Response:
        response = self.oauth.token(request)
        if response.status_code == 400:
            # X answers a bad refresh token like this (not invalid_grant).
            return JSONResponse(
                {
                    "error": "invalid_request",
                    "error_description": "Value passed for the token was invalid.",
                },
                400,
            )
        return response

    def _user(self, request: RecordedRequest) -> str | Response:
        user = self.oauth.user_for(request)
        if user is None:
            return problem(401, "Unauthorized", "Unauthorized")
        if self.suspended:
            return problem(
                403,
                "Forbidden",
                "Your account is suspended and is not permitted to access this feature.",
            )
        return user

    async def me(self, request: RecordedRequest) -> Response:
        user = self._user(request)
        if isinstance(user, Response):
            return user
        return JSONResponse(
            {
                "data": {
                    "id": user,
                    "name": "Xavier",
                    "username": "xavier",
                    "profile_image_url": "https://pbs.example/x_normal.jpg",
                    "verified": self.verified,
                }
            }
        )

    async def create_tweet(self, request: RecordedRequest) -> Response:
        user = self._user(request)
        if isinstance(user, Response):
            return user
        body = request.json or {}
        text = body.get("text", "")
        for tweet in self.tweets.values():
            if tweet["text"] == text and text:
                return problem(
                    403,
                    "Forbidden",
                    "You are not allowed to create a Tweet with duplicate content.",
                )
        reply = body.get("reply")
        if reply and reply.get("in_reply_to_tweet_id") not in self.tweets:
            return JSONResponse(
                {
                    "errors": [
                        {
                            "parameters": {"reply.in_reply_to_tweet_id": [reply]},
                            "message": "The `reply.in_reply_to_tweet_id` query parameter "
                            "value is not valid",
                        }
                    ],
                    "title": "Invalid Request",
                    "detail": "One or more parameters to your request was invalid.",
                    "type": "https://api.twitter.com/2/problems/invalid-request",
                },
                400,
            )
        for media_id in (body.get("media") or {}).get("media_ids", []):
            media = self.media.get(media_id)
            if media is None or media["state"] != "succeeded":
                return problem(400, "Invalid Request", f"Your media IDs are invalid: {media_id}")
        tweet_id = self._id()
        self.tweets[tweet_id] = body | {"id": tweet_id, "created_at": time.time()}
        return JSONResponse(
            {"data": {"id": tweet_id, "text": text, "edit_history_tweet_ids": [tweet_id]}}, 201
        )

    # ---- media ----------------------------------------------------------------------------

    async def simple_upload(self, request: RecordedRequest) -> Response:
        user = self._user(request)
        if isinstance(user, Response):
            return user
        file = request.files.get("media")
        if file is None:
            return problem(400, "Invalid Request", "media is required")
        media_id = self._id()
        self.media[media_id] = {
            "data": file.data,
            "category": request.form.get("media_category"),
            "type": request.form.get("media_type"),
            "state": "succeeded",
            "alt": None,
        }
        return JSONResponse(
            {
                "data": {
                    "id": media_id,
                    "media_key": f"3_{media_id}",
                    "size": len(file.data),
                    "expires_after_secs": 86400,
                    "image": {"image_type": request.form.get("media_type"), "w": 800, "h": 600},
                }
            }
        )

    async def initialize(self, request: RecordedRequest) -> Response:
        user = self._user(request)
        if isinstance(user, Response):
            return user
        body = request.json or {}
        media_id = self._id()
        self.media[media_id] = {
            "data": b"",
            "chunks": {},
            "category": body.get("media_category"),
            "type": body.get("media_type"),
            "total_bytes": body.get("total_bytes"),
            "state": "uploading",
            "polls": self.processing_polls,
            "alt": None,
        }
        return JSONResponse(
            {"data": {"id": media_id, "media_key": f"7_{media_id}", "expires_after_secs": 86400}}
        )

    async def append(self, request: RecordedRequest) -> Response:
        user = self._user(request)
        if isinstance(user, Response):
            return user
        media = self.media.get(request.path_params["id"])
        if media is None or media["state"] != "uploading":
            return problem(400, "Invalid Request", "Unknown media id")
        file = request.files.get("media")
        index = int(request.form.get("segment_index", "-1"))
        if file is None or index < 0:
            return problem(400, "Invalid Request", "media and segment_index are required")
        media["chunks"][index] = file.data
        return JSONResponse({"data": {"expires_at": 1893456000}})

    async def finalize(self, request: RecordedRequest) -> Response:
        user = self._user(request)
        if isinstance(user, Response):
            return user
        media_id = request.path_params["id"]
        media = self.media.get(media_id)
        if media is None:
            return problem(400, "Invalid Request", "Unknown media id")
        chunks = media.pop("chunks")
        media["data"] = b"".join(chunks[i] for i in sorted(chunks))
        if len(media["data"]) != media["total_bytes"]:
            return problem(400, "Invalid Request", "File size does not match total_bytes")
        media["state"] = "pending" if media["polls"] else "succeeded"
        data: dict[str, Any] = {
            "id": media_id,
            "media_key": f"7_{media_id}",
            "size": len(media["data"]),
        }
        if media["state"] == "pending":
            data["processing_info"] = {"state": "pending", "check_after_secs": 1}
        return JSONResponse({"data": data})

    async def status(self, request: RecordedRequest) -> Response:
        user = self._user(request)
        if isinstance(user, Response):
            return user
        media_id = request.query.get("media_id", "")
        media = self.media.get(media_id)
        if media is None or request.query.get("command") != "STATUS":
            return problem(400, "Invalid Request", "Unknown media id")
        if media["state"] in ("pending", "in_progress"):
            media["polls"] -= 1
            media["state"] = "in_progress" if media["polls"] > 0 else "succeeded"
        info: dict[str, Any] = {"state": media["state"]}
        if media["state"] == "in_progress":
            info |= {"check_after_secs": 1, "progress_percent": 50}
        return JSONResponse({"data": {"id": media_id, "processing_info": info}})

    async def metadata(self, request: RecordedRequest) -> Response:
        user = self._user(request)
        if isinstance(user, Response):
            return user
        body = request.json or {}
        media = self.media.get(str(body.get("id")))
        if media is None:
            return problem(400, "Invalid Request", "Unknown media id")
        media["alt"] = body["metadata"]["alt_text"]["text"]
        return JSONResponse({"data": {"id": body["id"], "associated_metadata": True}})

    async def timeline(self, request: RecordedRequest) -> Response:
        """Recent tweets as X shows them: links wrapped in t.co, text HTML-escaped."""
        user = self._user(request)
        if isinstance(user, Response):
            return user
        if request.path_params["id"] != user:
            return problem(403, "Forbidden", "Not your timeline")
        start = request.query.get("start_time")
        since = datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp() if start else 0
        data = []
        for tweet in reversed(list(self.tweets.values())):
            if tweet["created_at"] < since:
                continue
            text = re.sub(r"https?://\S+", "https://t.co/abc123XYZ", tweet.get("text", ""))
            item: dict[str, Any] = {
                "id": tweet["id"],
                "text": html.escape(text, quote=False),
                "created_at": datetime.fromtimestamp(tweet["created_at"], UTC)
                .isoformat()
                .replace("+00:00", "Z"),
            }
            reply = (tweet.get("reply") or {}).get("in_reply_to_tweet_id")
            if reply:
                item["referenced_tweets"] = [{"type": "replied_to", "id": reply}]
            data.append(item)
        return JSONResponse({"data": data, "meta": {"result_count": len(data)}})

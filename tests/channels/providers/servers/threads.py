"""A fake Threads API: OAuth, short/long-lived tokens, profile, containers, publish, permalinks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.responses import JSONResponse, Response

from tests.channels.providers.servers.base import FakePlatform, RecordedRequest
from tests.channels.providers.servers.graph import TokenBook, graph_error, params_of
from tests.channels.providers.servers.oauth import OAuthBook

V = "/v1.0"
USER_ID = "17841400000000001"
CLIENT_ID = "threads-app"
CLIENT_SECRET = "threads-secret"


class FakeThreads(FakePlatform):
    """One Threads user (``@nelly``); ``containers`` and ``posts`` by id."""

    def __init__(self, *, video_polls: int = 0, max_text: int = 500) -> None:
        self.oauth = OAuthBook(user=USER_ID, require_pkce=False, issue_refresh=False)
        self.oauth.add_client(CLIENT_ID, CLIENT_SECRET, [])
        self.book = TokenBook()
        self.video_polls = video_polls
        self.max_text = max_text
        self.processing_error: str | None = None
        self.containers: dict[str, dict[str, Any]] = {}
        self.posts: dict[str, dict[str, Any]] = {}
        self._next = 18000000000000000
        super().__init__()

    def _id(self) -> str:
        self._next += 1
        return str(self._next)

    def setup_routes(self) -> None:
        self.add("GET", "/oauth/authorize", self.authorize)
        self.add("POST", "/oauth/access_token", self.code_token)
        self.add("GET", "/access_token", self.exchange)
        self.add("GET", "/refresh_access_token", self.refresh)
        self.add("GET", f"{V}/me", self.me)
        self.add("POST", f"{V}/me/threads", self.create_container)
        self.add("POST", f"{V}/me/threads_publish", self.publish)
        self.add("GET", f"{V}/me/threads", self.list_threads)
        self.add("GET", f"{V}/{{id}}/replies", self.list_replies)
        self.add("GET", f"{V}/{{id}}", self.get_object)

    # ---- tokens --------------------------------------------------------------------------

    async def authorize(self, request: RecordedRequest) -> Response:
        return self.oauth.authorize(request)

    async def code_token(self, request: RecordedRequest) -> Response:
        answer = self.oauth.token(request)
        if answer.status_code != 200:
            return graph_error(400, 100, "Invalid verification code format.", kind="OAuthException")
        return JSONResponse(
            {"access_token": self.book.issue(USER_ID, "short"), "user_id": int(USER_ID)}
        )

    async def exchange(self, request: RecordedRequest) -> Response:
        q = request.query
        if q.get("grant_type") != "th_exchange_token" or q.get("client_secret") != CLIENT_SECRET:
            return graph_error(400, 100, "Invalid parameter")
        record = self.book.check(request, kinds=("short",))
        if isinstance(record, Response):
            return record
        return self._long(record.owner)

    def _long(self, owner: str) -> Response:
        token = self.book.issue(owner, "long")
        return JSONResponse({"access_token": token, "token_type": "bearer", "expires_in": 5183944})

    async def refresh(self, request: RecordedRequest) -> Response:
        if request.query.get("grant_type") != "th_refresh_token":
            return graph_error(400, 100, "Invalid parameter")
        record = self.book.check(request)
        if isinstance(record, Response):
            return record
        return self._long(record.owner)

    # ---- API -----------------------------------------------------------------------------

    async def me(self, request: RecordedRequest) -> Response:
        record = self.book.check(request)
        if isinstance(record, Response):
            return record
        fields = request.query.get("fields", "id").split(",")
        profile = {
            "id": USER_ID,
            "username": "nelly",
            "name": "Nelly T",
            "threads_profile_picture_url": "https://cdn.threads.test/nelly.jpg",
        }
        return JSONResponse({k: v for k, v in profile.items() if k in fields})

    async def create_container(self, request: RecordedRequest) -> Response:
        record = self.book.check(request)
        if isinstance(record, Response):
            return record
        p = params_of(request)
        kind = p.get("media_type")
        text = str(p.get("text") or "")
        if len(text) > self.max_text:
            return graph_error(
                400, 100, "Param text must be at most 500 characters long.", kind="THApiException"
            )
        if kind == "TEXT" and not text:
            return graph_error(400, 100, "The parameter text is required", kind="THApiException")
        if (kind == "IMAGE" and not p.get("image_url")) or (
            kind == "VIDEO" and not p.get("video_url")
        ):
            return graph_error(400, 100, "The media URL is required", kind="THApiException")
        children: list[str] = []
        if kind == "CAROUSEL":
            children = str(p.get("children") or "").split(",")
            if not 2 <= len(children) <= 20 or any(c not in self.containers for c in children):
                return graph_error(400, 100, "Invalid children", kind="THApiException")
        elif kind not in ("TEXT", "IMAGE", "VIDEO"):
            return graph_error(400, 100, "Invalid media_type", kind="THApiException")
        reply_to = p.get("reply_to_id")
        if reply_to is not None and reply_to not in self.posts:
            return graph_error(400, 100, "Invalid reply_to_id", kind="THApiException")
        container_id = self._id()
        self.containers[container_id] = {
            "params": p,
            "pending": self.video_polls if kind == "VIDEO" else 0,
            "children": children,
            "published": False,
        }
        return JSONResponse({"id": container_id})

    async def publish(self, request: RecordedRequest) -> Response:
        record = self.book.check(request)
        if isinstance(record, Response):
            return record
        container = self.containers.get(str(params_of(request).get("creation_id")))
        if container is None:
            return graph_error(400, 24, "The requested resource does not exist", subcode=4279009)
        if container["pending"] > 0 or any(
            self.containers[c]["pending"] > 0 for c in container["children"]
        ):
            return graph_error(400, 24, "Media not ready for publishing", subcode=4279009)
        if container["published"]:
            return graph_error(400, 10, "The container was already published")
        container["published"] = True
        media_id = self._id()
        self.posts[media_id] = {
            "text": container["params"].get("text"),
            "reply_to_id": container["params"].get("reply_to_id"),
            "media_type": container["params"].get("media_type"),
            "children": [self.containers[c]["params"] for c in container["children"]],
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000"),
            "username": "nelly",
        }
        return JSONResponse({"id": media_id})

    async def get_object(self, request: RecordedRequest) -> Response:
        record = self.book.check(request)
        if isinstance(record, Response):
            return record
        object_id = request.path_params["id"]
        if object_id in self.containers:
            container = self.containers[object_id]
            if self.processing_error:
                return JSONResponse(
                    {"id": object_id, "status": "ERROR", "error_message": self.processing_error}
                )
            if container["pending"] > 0:
                container["pending"] -= 1
                return JSONResponse({"id": object_id, "status": "IN_PROGRESS"})
            status = "PUBLISHED" if container["published"] else "FINISHED"
            return JSONResponse({"id": object_id, "status": status})
        if object_id in self.posts:
            return JSONResponse(
                {"id": object_id, "permalink": f"https://www.threads.net/@nelly/post/{object_id}"}
            )
        return graph_error(400, 100, "Unsupported get request.", kind="GraphMethodException")

    def _listed(self, media_id: str) -> dict[str, Any]:
        post = self.posts[media_id]
        out = {
            "id": media_id,
            "timestamp": post["timestamp"],
            "username": post["username"],
            "permalink": f"https://www.threads.net/@{post['username']}/post/{media_id}",
        }
        if post.get("text"):
            out["text"] = post["text"]
        return out

    async def list_threads(self, request: RecordedRequest) -> Response:
        record = self.book.check(request)
        if isinstance(record, Response):
            return record
        since = int(request.query.get("since") or 0)
        found = [
            self._listed(i)
            for i, post in self.posts.items()
            if not post.get("reply_to_id")
            and datetime.strptime(post["timestamp"], "%Y-%m-%dT%H:%M:%S%z").timestamp() >= since
        ]
        return JSONResponse({"data": list(reversed(found))})

    async def list_replies(self, request: RecordedRequest) -> Response:
        record = self.book.check(request)
        if isinstance(record, Response):
            return record
        parent = request.path_params["id"]
        found = [self._listed(i) for i, p in self.posts.items() if p.get("reply_to_id") == parent]
        return JSONResponse({"data": found})

    def add_post(self, text: str, *, username: str, reply_to: str | None = None) -> str:
        """A post (or reply) someone made outside of Tidings."""
        media_id = self._id()
        self.posts[media_id] = {
            "text": text,
            "reply_to_id": reply_to,
            "media_type": "TEXT",
            "children": [],
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000"),
            "username": username,
        }
        return media_id

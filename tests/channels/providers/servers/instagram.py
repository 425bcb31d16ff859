"""Fake Instagram Graph APIs: containers, status, publish, permalinks, comments and replies;
reached through Facebook Login (``FakeInstagram``, built on the fake Facebook) or Instagram
Login (``FakeInstagramLogin``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from starlette.responses import JSONResponse, Response

from tests.channels.providers.servers.base import FakePlatform, RecordedRequest
from tests.channels.providers.servers.facebook import FakeFacebook, V
from tests.channels.providers.servers.graph import TokenBook, graph_error, params_of
from tests.channels.providers.servers.oauth import OAuthBook

IG_ID = "17841400000000101"  # linked to Facebook page 101
IG_ACCOUNT = {
    "id": IG_ID,
    "username": "tidings.cafe",
    "name": "Tidings Cafe IG",
    "profile_picture_url": "https://cdninstagram.test/cafe.jpg",
}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


class IgMedia:
    """Containers, published media and comments of one Instagram account."""

    def __init__(self, *, video_polls: int = 0) -> None:
        self.video_polls = video_polls
        self.containers: dict[str, dict[str, Any]] = {}
        self.media: dict[str, dict[str, Any]] = {}
        self.comments: dict[str, dict[str, Any]] = {}
        self.processing_error: str | None = None
        # When and by whom each medium / comment was made.
        self.meta: dict[str, dict[str, str]] = {}
        self._next = 90000000000

    def _id(self) -> str:
        self._next += 1
        return str(self._next)

    def create(self, p: dict[str, Any]) -> Response:
        kind = p.get("media_type") or "IMAGE"
        caption = str(p.get("caption") or "")
        if len(caption) > 2200:
            return graph_error(
                400,
                100,
                "Invalid parameter",
                subcode=2207010,
                user_msg="The caption is too long: 2,200 characters at most.",
            )
        url = p.get("video_url") if kind in ("REELS", "VIDEO") else p.get("image_url")
        if kind == "STORIES":
            url = p.get("video_url") or p.get("image_url")
        children: list[str] = []
        if kind == "CAROUSEL":
            children = str(p.get("children") or "").split(",")
            if not 2 <= len(children) <= 10 or any(c not in self.containers for c in children):
                return graph_error(400, 100, "Invalid children")
            if any(
                self.containers[c]["params"].get("is_carousel_item") != "true" for c in children
            ):
                return graph_error(400, 100, "Children must be carousel items")
        elif not url:
            return graph_error(400, 100, "The parameter image_url or video_url is required")
        elif p.get("image_url") and not str(p["image_url"]).endswith((".jpg", ".jpeg")):
            return graph_error(
                400, 9004, "Only photo or video can be accepted as media type.", subcode=2207052
            )
        container_id = self._id()
        video = kind in ("REELS", "VIDEO") or bool(p.get("video_url"))
        self.containers[container_id] = {
            "params": p,
            "children": children,
            "pending": self.video_polls if video else 0,
            "published": False,
        }
        return JSONResponse({"id": container_id})

    def status(self, container_id: str) -> Response:
        container = self.containers[container_id]
        if self.processing_error:
            return JSONResponse(
                {"id": container_id, "status_code": "ERROR", "status": self.processing_error}
            )
        if container["pending"] > 0:
            container["pending"] -= 1
            return JSONResponse(
                {"id": container_id, "status_code": "IN_PROGRESS", "status": "In Progress"}
            )
        code = "PUBLISHED" if container["published"] else "FINISHED"
        return JSONResponse({"id": container_id, "status_code": code, "status": code.title()})

    def publish(self, p: dict[str, Any]) -> Response:
        container = self.containers.get(str(p.get("creation_id")))
        if container is None:
            return graph_error(400, 100, "Invalid creation_id")
        if container["pending"] > 0:
            return graph_error(
                400,
                9007,
                "The media is not ready for publishing, please wait for a moment",
                subcode=2207027,
            )
        container["published"] = True
        media_id = self._id()
        params = container["params"]
        self.media[media_id] = {
            "params": params,
            "children": [self.containers[c]["params"] for c in container["children"]],
            "collaborators": json.loads(params["collaborators"])
            if params.get("collaborators")
            else [],
            "permalink": f"https://www.instagram.com/p/P{media_id}/",
        }
        self.meta[media_id] = {"timestamp": now(), "username": IG_ACCOUNT["username"]}
        return JSONResponse({"id": media_id})

    def get(self, node: str, fields: list[str]) -> Response:
        if node in self.containers:
            return self.status(node)
        if node in self.media:
            if "parent_id" in fields:
                return graph_error(
                    400,
                    100,
                    "Tried accessing nonexisting field (parent_id) on node type (ShadowIGMedia)",
                    kind="GraphMethodException",
                )
            return JSONResponse({"id": node, "permalink": self.media[node]["permalink"]})
        if node in self.comments:
            out = {"id": node}
            if self.comments[node]["parent_id"]:
                out["parent_id"] = self.comments[node]["parent_id"]
            return JSONResponse(out)
        return graph_error(400, 100, "Unsupported get request.", kind="GraphMethodException")

    def comment(self, node: str, edge: str, p: dict[str, Any]) -> Response:
        if not p.get("message"):
            return graph_error(400, 100, "The parameter message is required")
        if edge == "comments":
            if node not in self.media:
                return graph_error(400, 100, "Invalid media id")
            media, parent = node, None
        else:
            top = self.comments.get(node)
            if top is None or top["parent_id"] is not None:
                return graph_error(400, 100, "(#100) Replies go under top-level comments only")
            media, parent = top["media"], node
        comment_id = self._id()
        self.comments[comment_id] = {"media": media, "parent_id": parent, "text": p["message"]}
        self.meta[comment_id] = {"timestamp": now(), "username": IG_ACCOUNT["username"]}
        return JSONResponse({"id": comment_id})

    def post(self, node: str, edge: str, p: dict[str, Any]) -> Response:
        if edge == "media":
            return self.create(p)
        if edge == "media_publish":
            return self.publish(p)
        if edge in ("comments", "replies"):
            return self.comment(node, edge, p)
        return graph_error(400, 100, f"Unknown edge {edge}", kind="GraphMethodException")

    def listing(self, node: str, edge: str) -> Response:
        """GET /{ig-user}/media, /{media}/comments, /{comment}/replies (newest first)."""
        if edge == "media":
            ids = list(self.media)
            found = [
                {
                    "id": i,
                    "caption": self.media[i]["params"].get("caption"),
                    "permalink": self.media[i]["permalink"],
                    **self.meta[i],
                }
                for i in ids
            ]
        elif edge in ("comments", "replies"):
            found = [
                {"id": i, "text": c["text"], **self.meta[i]}
                for i, c in self.comments.items()
                if (edge == "comments" and c["media"] == node and c["parent_id"] is None)
                or (edge == "replies" and c["parent_id"] == node)
            ]
        else:
            return graph_error(400, 100, f"Unknown edge {edge}", kind="GraphMethodException")
        return JSONResponse({"data": [{k: v for k, v in f.items() if v} for f in reversed(found)]})

    def add_comment(
        self, media: str, text: str, *, username: str, parent: str | None = None
    ) -> str:
        """A comment someone wrote outside of Tidings."""
        comment_id = self._id()
        self.comments[comment_id] = {"media": media, "parent_id": parent, "text": text}
        self.meta[comment_id] = {"timestamp": now(), "username": username}
        return comment_id


class FakeInstagram(FakeFacebook):
    """Facebook Login; page 101 has the Instagram account ``IG_ID``, page 102 has none."""

    def __init__(self, *, video_polls: int = 0) -> None:
        self.ig = IgMedia(video_polls=video_polls)
        super().__init__()

    def setup_routes(self) -> None:
        self.add("GET", f"{V}/{{node}}/media", self.list_ig)
        self.add("GET", f"{V}/{{node}}/replies", self.list_ig)
        super().setup_routes()

    async def list_ig(self, request: RecordedRequest) -> Response:
        refused = self._ig_token(request)
        edge = request.path.rsplit("/", 1)[-1]
        return refused or self.ig.listing(request.path_params["node"], edge)

    async def list_comments(self, request: RecordedRequest) -> Response:
        if request.path_params["node"] in self.ig.media:
            return await self.list_ig(request)
        return await super().list_comments(request)

    def page_json(self, page: dict[str, Any]) -> dict[str, Any]:
        out = super().page_json(page)
        if page["id"] == "101":
            out["instagram_business_account"] = IG_ACCOUNT
        return out

    def _ig_token(self, request: RecordedRequest) -> Response | None:
        record = self.book.check(request, kinds=("page",))
        if isinstance(record, Response):
            return record
        if record.owner != "101":
            return graph_error(
                403, 10, "(#10) Application does not have permission for this action"
            )
        return None

    async def post_edge(self, request: RecordedRequest) -> Response:
        node, edge = request.path_params["node"], request.path_params["edge"]
        if node == IG_ID or node in self.ig.media or node in self.ig.comments:
            refused = self._ig_token(request)
            return refused or self.ig.post(node, edge, params_of(request))
        return await super().post_edge(request)

    async def get_node(self, request: RecordedRequest) -> Response:
        node = request.path_params["node"]
        if node in self.ig.containers or node in self.ig.media or node in self.ig.comments:
            refused = self._ig_token(request)
            fields = request.query.get("fields", "").split(",")
            return refused or self.ig.get(node, fields)
        return await super().get_node(request)


V21 = "/v21.0"
IG_APP_ID = "ig-app"
IG_APP_SECRET = "ig-secret"


class FakeInstagramLogin(FakePlatform):
    """Instagram Login (www / api / graph hosts on one server) for ``IG_ID``."""

    def __init__(self, *, flat_token_answer: bool = False) -> None:
        self.oauth = OAuthBook(user=IG_ID, require_pkce=False, issue_refresh=False)
        self.oauth.add_client(IG_APP_ID, IG_APP_SECRET, [])
        self.book = TokenBook()
        self.ig = IgMedia()
        self.flat_token_answer = flat_token_answer
        super().__init__()

    def setup_routes(self) -> None:
        self.add("GET", "/oauth/authorize", self.authorize)
        self.add("POST", "/oauth/access_token", self.code_token)
        self.add("GET", "/access_token", self.exchange)
        self.add("GET", "/refresh_access_token", self.refresh)
        self.add("GET", f"{V21}/me", self.me)
        self.add("GET", f"{V21}/{{node}}", self.get_node)
        self.add("POST", f"{V21}/{{node}}/{{edge}}", self.post_edge)
        self.add("GET", f"{V21}/{{node}}/{{edge}}", self.list_edge)

    async def authorize(self, request: RecordedRequest) -> Response:
        return self.oauth.authorize(request)

    async def code_token(self, request: RecordedRequest) -> Response:
        answer = self.oauth.token(request)
        if answer.status_code != 200:
            return JSONResponse(
                {
                    "error_type": "OAuthException",
                    "code": 400,
                    "error_message": "Invalid authorization code",
                },
                400,
            )
        entry = {
            "access_token": self.book.issue(IG_ID, "short"),
            "user_id": IG_ID,
            "permissions": "instagram_business_basic,instagram_business_content_publish",
        }
        return JSONResponse(entry if self.flat_token_answer else {"data": [entry]})

    def _long(self) -> Response:
        return JSONResponse(
            {
                "access_token": self.book.issue(IG_ID, "long"),
                "token_type": "bearer",
                "expires_in": 5183944,
            }
        )

    async def exchange(self, request: RecordedRequest) -> Response:
        q = request.query
        if q.get("grant_type") != "ig_exchange_token" or q.get("client_secret") != IG_APP_SECRET:
            return graph_error(400, 100, "Invalid parameter")
        record = self.book.check(request, kinds=("short",))
        return record if isinstance(record, Response) else self._long()

    async def refresh(self, request: RecordedRequest) -> Response:
        if request.query.get("grant_type") != "ig_refresh_token":
            return graph_error(400, 100, "Invalid parameter")
        record = self.book.check(request)
        return record if isinstance(record, Response) else self._long()

    async def me(self, request: RecordedRequest) -> Response:
        record = self.book.check(request)
        if isinstance(record, Response):
            return record
        return JSONResponse(
            {
                "id": "app-scoped-1",
                "user_id": IG_ID,
                "username": IG_ACCOUNT["username"],
                "name": IG_ACCOUNT["name"],
                "profile_picture_url": IG_ACCOUNT["profile_picture_url"],
            }
        )

    async def get_node(self, request: RecordedRequest) -> Response:
        record = self.book.check(request)
        if isinstance(record, Response):
            return record
        return self.ig.get(request.path_params["node"], request.query.get("fields", "").split(","))

    async def post_edge(self, request: RecordedRequest) -> Response:
        record = self.book.check(request)
        if isinstance(record, Response):
            return record
        node = request.path_params["node"]
        if node != IG_ID and node not in self.ig.media and node not in self.ig.comments:
            return graph_error(400, 100, "Unsupported post request.", kind="GraphMethodException")
        return self.ig.post(node, request.path_params["edge"], params_of(request))

    async def list_edge(self, request: RecordedRequest) -> Response:
        record = self.book.check(request)
        if isinstance(record, Response):
            return record
        return self.ig.listing(request.path_params["node"], request.path_params["edge"])

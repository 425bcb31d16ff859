"""A fake Facebook Graph API: Login dialog, tokens, /me/accounts, page feed, photos, videos,
stories, comments and permalinks. The Instagram fake builds on it."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from starlette.responses import JSONResponse, Response

from tests.channels.providers.servers.base import FakePlatform, RecordedRequest
from tests.channels.providers.servers.graph import TokenBook, graph_error, params_of
from tests.channels.providers.servers.oauth import OAuthBook

V = "/v20.0"
APP_ID = "fb-app"
APP_SECRET = "fb-secret"
USER_ID = "10150000000000001"
PAGES = [
    {"id": "101", "name": "Tidings Cafe", "username": "tidingscafe"},
    {"id": "102", "name": "Tidings Books", "username": None},
]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


class FakeFacebook(FakePlatform):
    """One user managing two pages; ``posts`` (feed posts, photos, videos, stories, comments)."""

    def __init__(self) -> None:
        self.oauth = OAuthBook(user=USER_ID, require_pkce=False, issue_refresh=False)
        self.oauth.add_client(APP_ID, APP_SECRET, [])
        self.book = TokenBook()
        self.page_tokens: dict[str, str] = {}
        self.posts: dict[str, dict[str, Any]] = {}
        self.uploaded_videos: dict[str, str | None] = {}
        self._next = 500
        super().__init__()

    def _id(self) -> str:
        self._next += 1
        return str(self._next)

    def setup_routes(self) -> None:
        self.add("GET", f"{V}/dialog/oauth", self.dialog)
        self.add("GET", f"{V}/oauth/access_token", self.access_token)
        self.add("GET", f"{V}/me", self.me)
        self.add("GET", f"{V}/me/accounts", self.accounts)
        self.add("GET", f"{V}/{{node}}", self.get_node)
        self.add("POST", f"{V}/{{node}}/{{edge}}", self.post_edge)
        self.add("GET", f"{V}/{{node}}/feed", self.list_feed)
        self.add("GET", f"{V}/{{node}}/comments", self.list_comments)
        self.add("POST", f"/video-upload{V}/{{video}}", self.video_upload)

    # ---- login ---------------------------------------------------------------------------

    async def dialog(self, request: RecordedRequest) -> Response:
        return self.oauth.authorize(request)

    async def access_token(self, request: RecordedRequest) -> Response:
        q = request.query
        if q.get("client_id") != APP_ID or q.get("client_secret") != APP_SECRET:
            return graph_error(400, 1, "Error validating client secret.")
        if q.get("grant_type") == "fb_exchange_token":
            record = self.book.tokens.get(q.get("fb_exchange_token", ""))
            if record is None:
                return graph_error(400, 190, "Invalid OAuth access token.")
            token = self.book.issue(record.owner, "long")
            return JSONResponse(
                {"access_token": token, "token_type": "bearer", "expires_in": 5183944}
            )
        form = {**q, "grant_type": "authorization_code"}
        answer = self.oauth.token(replace(request, form=form))
        if answer.status_code != 200:
            return graph_error(400, 100, "Invalid verification code format.", kind="OAuthException")
        short = self.book.issue(USER_ID, "short")
        return JSONResponse({"access_token": short, "token_type": "bearer", "expires_in": 5183})

    def user_token(self, request: RecordedRequest) -> Response | None:
        record = self.book.check(request, kinds=("long",))
        return record if isinstance(record, Response) else None

    def page_token(self, request: RecordedRequest, page: str) -> Response | None:
        record = self.book.check(request, kinds=("page",))
        if isinstance(record, Response):
            return record
        if record.owner != page:
            return graph_error(
                403,
                200,
                "(#200) The page token does not belong to this page",
                kind="OAuthException",
            )
        return None

    # ---- reads ---------------------------------------------------------------------------

    async def me(self, request: RecordedRequest) -> Response:
        refused = self.user_token(request)
        return refused or JSONResponse(
            {
                "id": USER_ID,
                "name": "Pat Owner",
                "picture": {"data": {"url": "https://fbcdn.test/pat.jpg"}},
            }
        )

    def page_json(self, page: dict[str, Any]) -> dict[str, Any]:
        token = self.page_tokens.get(page["id"]) or self.book.issue(page["id"], "page")
        self.page_tokens[page["id"]] = token
        out = {
            "id": page["id"],
            "name": page["name"],
            "picture": {"data": {"url": f"https://fbcdn.test/{page['id']}.jpg"}},
            "access_token": token,
            "tasks": ["MANAGE", "CREATE_CONTENT"],
        }
        if page["username"]:
            out["username"] = page["username"]
        return out

    async def accounts(self, request: RecordedRequest) -> Response:
        refused = self.user_token(request)
        if refused:
            return refused
        start = int(request.query.get("after") or 0)
        page = [self.page_json(p) for p in PAGES[start : start + 1]]  # one per page: paging
        more = start + 1 < len(PAGES)
        paging: dict[str, Any] = {"cursors": {"before": str(start), "after": str(start + 1)}}
        if more:
            paging["next"] = self.url(f"{V}/me/accounts?after={start + 1}")
        return JSONResponse({"data": page, "paging": paging})

    async def get_node(self, request: RecordedRequest) -> Response:
        record = self.book.check(request)
        if isinstance(record, Response):
            return record
        node = self.posts.get(request.path_params["node"])
        if node is None:
            return graph_error(400, 100, "Unsupported get request.", kind="GraphMethodException")
        return JSONResponse(
            {"id": request.path_params["node"], "permalink_url": node["permalink_url"]}
        )

    # ---- writes --------------------------------------------------------------------------

    def _store(self, kind: str, page: str, **data: Any) -> str:
        object_id = f"{page}_{self._id()}"
        link = (
            f"/{page}/videos/{object_id}/"
            if kind == "video"
            else f"https://www.facebook.com/{page}/posts/{object_id}"
        )
        self.posts[object_id] = {
            "kind": kind,
            "page": page,
            "permalink_url": link,
            "created_time": now(),
            **data,
        }
        return object_id

    async def post_edge(self, request: RecordedRequest) -> Response:
        node, edge = request.path_params["node"], request.path_params["edge"]
        p = params_of(request)
        if edge == "comments":
            return self.comment(request, node, p)
        refused = self.page_token(request, node)
        if refused:
            return refused
        handler = {
            "feed": self.feed,
            "photos": self.photos,
            "videos": self.videos,
            "photo_stories": self.photo_stories,
            "video_stories": self.video_stories,
        }.get(edge)
        if handler is None:
            return graph_error(400, 100, f"Unknown edge {edge}", kind="GraphMethodException")
        return handler(node, p)

    def feed(self, page: str, p: dict[str, Any]) -> Response:
        message = str(p.get("message") or "")
        attached = json.loads(p["attached_media"]) if p.get("attached_media") else []
        if not message and not attached and not p.get("link"):
            return graph_error(400, 100, "(#100) Missing message or attachment")
        if any(a.get("media_fbid") not in self.posts for a in attached):
            return graph_error(400, 100, "(#100) Invalid attached media")
        if len(message) > 63206:
            return graph_error(400, 100, "(#100) The message is too long")
        if any(
            post["kind"] == "feed"
            and post["page"] == page
            and post.get("message") == message
            and message
            for post in self.posts.values()
        ):
            return graph_error(400, 506, "Duplicate status message")
        post_id = self._store(
            "feed",
            page,
            message=message,
            attached=[a["media_fbid"] for a in attached],
            link=p.get("link"),
        )
        return JSONResponse({"id": post_id})

    def photos(self, page: str, p: dict[str, Any]) -> Response:
        if not p.get("url"):
            return graph_error(400, 324, "(#324) Requires upload file")
        published = p.get("published", "true") != "false"
        photo_id = self._store(
            "photo", page, url=p["url"], message=p.get("message"), published=published
        )
        if not published:
            return JSONResponse({"id": photo_id})
        return JSONResponse({"id": photo_id, "post_id": photo_id})

    def videos(self, page: str, p: dict[str, Any]) -> Response:
        if not p.get("file_url"):
            return graph_error(400, 100, "(#100) file_url is required")
        video_id = self._store("video", page, url=p["file_url"], description=p.get("description"))
        return JSONResponse({"id": video_id})

    def photo_stories(self, page: str, p: dict[str, Any]) -> Response:
        photo = self.posts.get(str(p.get("photo_id")))
        if photo is None or photo["published"]:
            return graph_error(400, 100, "(#100) photo_id must be an unpublished photo")
        story_id = self._store("story", page, photo=p["photo_id"])
        return JSONResponse({"success": True, "post_id": story_id})

    def video_stories(self, page: str, p: dict[str, Any]) -> Response:
        if p.get("upload_phase") == "start":
            video_id = self._id()
            self.uploaded_videos[video_id] = None
            return JSONResponse(
                {"video_id": video_id, "upload_url": self.url(f"/video-upload{V}/{video_id}")}
            )
        if p.get("upload_phase") == "finish":
            video_id = str(p.get("video_id"))
            if self.uploaded_videos.get(video_id) is None:
                return graph_error(400, 100, "(#100) The video was not uploaded")
            story_id = self._store("story", page, video=self.uploaded_videos[video_id])
            return JSONResponse({"success": True, "post_id": story_id})
        return graph_error(400, 100, "(#100) upload_phase is required")

    async def video_upload(self, request: RecordedRequest) -> Response:
        video_id = request.path_params["video"]
        record = self.book.check(request, kinds=("page",))
        if isinstance(record, Response):
            return record
        if video_id not in self.uploaded_videos or not request.headers.get("file_url"):
            return graph_error(400, 100, "(#100) file_url header is required")
        self.uploaded_videos[video_id] = request.headers["file_url"]
        return JSONResponse({"success": True})

    def comment(self, request: RecordedRequest, node: str, p: dict[str, Any]) -> Response:
        record = self.book.check(request, kinds=("page",))
        if isinstance(record, Response):
            return record
        parent = self.posts.get(node)
        if parent is None:
            return graph_error(400, 100, "(#100) Invalid object to comment on")
        if not p.get("message") and not p.get("attachment_url"):
            return graph_error(400, 100, "(#100) Missing message or attachment")
        comment_id = f"{node}_c{self._id()}"
        self.posts[comment_id] = {
            "kind": "comment",
            "page": parent["page"],
            "parent": node,
            "message": p.get("message"),
            "attachment_url": p.get("attachment_url"),
            "permalink_url": f"https://www.facebook.com/comment/{comment_id}",
            "created_time": now(),
            "from": record.owner,
        }
        return JSONResponse({"id": comment_id})

    # ---- listings ------------------------------------------------------------------------

    async def list_feed(self, request: RecordedRequest) -> Response:
        page = request.path_params["node"]
        refused = self.page_token(request, page)
        if refused:
            return refused
        since = int(request.query.get("since") or 0)
        found = [
            {
                "id": post_id,
                "message": post.get("message") or post.get("description"),
                "created_time": post["created_time"],
                "permalink_url": post["permalink_url"],
            }
            for post_id, post in self.posts.items()
            if post["page"] == page
            and post["kind"] in ("feed", "photo", "video")
            and post.get("published", True)
            and datetime.strptime(post["created_time"], "%Y-%m-%dT%H:%M:%S%z").timestamp() >= since
        ]
        return JSONResponse({"data": [{k: v for k, v in p.items() if v} for p in reversed(found)]})

    async def list_comments(self, request: RecordedRequest) -> Response:
        record = self.book.check(request, kinds=("page",))
        if isinstance(record, Response):
            return record
        parent = request.path_params["node"]
        found = [
            {
                "id": comment_id,
                "message": c.get("message"),
                "created_time": c["created_time"],
                "from": {"id": c["from"], "name": "someone"},
                "permalink_url": c["permalink_url"],
            }
            for comment_id, c in self.posts.items()
            if c["kind"] == "comment" and c["parent"] == parent
        ]
        return JSONResponse({"data": list(reversed(found))})

    def add_comment(self, parent: str, message: str, *, author: str) -> str:
        """A comment someone wrote outside of Tidings."""
        comment_id = f"{parent}_c{self._id()}"
        self.posts[comment_id] = {
            "kind": "comment",
            "page": self.posts[parent]["page"],
            "parent": parent,
            "message": message,
            "permalink_url": f"https://www.facebook.com/comment/{comment_id}",
            "created_time": now(),
            "from": author,
        }
        return comment_id

"""A fake Reddit: OAuth (Basic-auth token endpoint), /api/v1/me, submit, comment, link flairs,
media asset leases with an S3-style upload form, and the user's submissions listing."""

from __future__ import annotations

import secrets
import time
from typing import Any

from starlette.responses import JSONResponse, Response

from tests.channels.providers.servers.base import FakePlatform, RecordedRequest
from tests.channels.providers.servers.oauth import OAuthBook

CLIENT_ID = "rd-client"
CLIENT_SECRET = "rd-secret"


def api_errors(*errors: list[str]) -> Response:
    return JSONResponse({"json": {"errors": list(errors)}})


class FakeReddit(FakePlatform):
    def __init__(self) -> None:
        self.oauth = OAuthBook(user="t2_abc", expires_in=86400, require_pkce=False)
        self.oauth.rotate_refresh = False
        self.oauth.add_client(CLIENT_ID, CLIENT_SECRET, [])
        self.subreddits = {"python": [{"id": "f-1", "text": "Discussion", "text_editable": False}]}
        self.posts: dict[str, dict[str, Any]] = {}
        self.comments: dict[str, dict[str, Any]] = {}
        self.assets: dict[str, dict[str, Any]] = {}
        self._next = 1000
        super().__init__()

    def _id(self) -> str:
        self._next += 1
        return format(self._next, "x")

    def setup_routes(self) -> None:
        self.add("GET", "/api/v1/authorize", self.authorize)
        self.add("POST", "/api/v1/access_token", self.token)
        self.add("GET", "/api/v1/me", self.me)
        self.add("GET", "/r/{sr}/api/link_flair_v2", self.flairs)
        self.add("POST", "/api/submit", self.submit)
        self.add("POST", "/api/comment", self.comment)
        self.add("POST", "/api/media/asset.json", self.asset)
        self.add("POST", "/media-bucket", self.bucket)
        self.add("GET", "/user/{name}/submitted", self.submitted)
        self.add("GET", "/user/{name}/comments", self.user_comments)

    async def authorize(self, request: RecordedRequest) -> Response:
        if request.query.get("duration") != "permanent":
            return JSONResponse({"error": "duration"}, 400)
        return self.oauth.authorize(request)

    async def token(self, request: RecordedRequest) -> Response:
        if not (request.auth or "").startswith("Basic "):
            return JSONResponse({"message": "Unauthorized", "error": 401}, 401)
        return self.oauth.token(request)

    def _user(self, request: RecordedRequest) -> str | Response:
        if not request.headers.get("user-agent", "").startswith("web:tidings"):
            return JSONResponse({"message": "Too Many Requests", "error": 429}, 429)
        user = self.oauth.user_for(request)
        if user is None:
            return JSONResponse({"message": "Unauthorized", "error": 401}, 401)
        return user

    async def me(self, request: RecordedRequest) -> Response:
        user = self._user(request)
        if isinstance(user, Response):
            return user
        return JSONResponse(
            {
                "id": "abc",
                "name": "redditor42",
                "icon_img": "https://styles.redditmedia.example/icon.png?width=256&amp;s=1",
                "snoovatar_img": "",
                "total_karma": 10,
            }
        )

    async def flairs(self, request: RecordedRequest) -> Response:
        user = self._user(request)
        if isinstance(user, Response):
            return user
        sr = request.path_params["sr"]
        if sr not in self.subreddits:
            return JSONResponse({"message": "Forbidden", "error": 403}, 403)
        return JSONResponse(self.subreddits[sr])

    async def asset(self, request: RecordedRequest) -> Response:
        user = self._user(request)
        if isinstance(user, Response):
            return user
        asset_id = secrets.token_hex(6)
        key = f"rte_images/{asset_id}/{request.form.get('filepath')}"
        self.assets[asset_id] = {"key": key, "mimetype": request.form.get("mimetype"), "data": None}
        action = self.base_url.replace("http:", "") + "/media-bucket"
        return JSONResponse(
            {
                "args": {
                    "action": action,
                    "fields": [
                        {"name": "acl", "value": "private"},
                        {"name": "key", "value": key},
                        {"name": "Content-Type", "value": request.form.get("mimetype")},
                        {"name": "x-amz-signature", "value": "sig-" + asset_id},
                    ],
                },
                "asset": {
                    "asset_id": asset_id,
                    "websocket_url": f"wss://ws.example/{asset_id}",
                },
            }
        )

    async def bucket(self, request: RecordedRequest) -> Response:
        key = request.form.get("key", "")
        asset = next((a for a in self.assets.values() if a["key"] == key), None)
        file = request.files.get("file")
        if asset is None or file is None or not request.form.get("x-amz-signature"):
            return Response("<Error><Code>AccessDenied</Code></Error>", 403)
        asset["data"] = file.data
        location = f"{self.base_url}/media-bucket/{key.replace('/', '%2F')}"
        return Response(
            f"<?xml version='1.0' encoding='UTF-8'?><PostResponse><Location>{location}"
            f"</Location><Key>{key}</Key></PostResponse>",
            201,
            media_type="application/xml",
        )

    async def submit(self, request: RecordedRequest) -> Response:
        user = self._user(request)
        if isinstance(user, Response):
            return user
        form = request.form
        if form.get("sr") not in self.subreddits:
            return api_errors(["SUBREDDIT_NOEXIST", "that community doesn't exist", "sr"])
        if not form.get("title"):
            return api_errors(["NO_TEXT", "we need something here", "title"])
        kind = form.get("kind")
        post_id = self._id()
        name = f"t3_{post_id}"
        permalink = f"/r/{form['sr']}/comments/{post_id}/slug/"
        self.posts[name] = dict(form) | {
            "name": name,
            "permalink": permalink,
            "created_utc": time.time(),
        }
        if kind in ("image", "video"):
            # As on Reddit: a media submit answers with a websocket to wait on, not the post.
            return JSONResponse(
                {
                    "json": {
                        "errors": [],
                        "data": {
                            "user_submitted_page": "https://www.reddit.com/user/redditor42/submitted/",
                            "websocket_url": "wss://ws.example/x",
                        },
                    }
                }
            )
        return JSONResponse(
            {
                "json": {
                    "errors": [],
                    "data": {
                        "url": f"https://www.reddit.com{permalink}",
                        "drafts_count": 0,
                        "id": post_id,
                        "name": name,
                    },
                }
            }
        )

    async def submitted(self, request: RecordedRequest) -> Response:
        user = self._user(request)
        if isinstance(user, Response):
            return user
        children = [
            {
                "kind": "t3",
                "data": {
                    "name": p["name"],
                    "title": p["title"],
                    "subreddit": p["sr"],
                    "permalink": p["permalink"],
                    "created_utc": p["created_utc"],
                    "url": p.get("url"),
                },
            }
            for p in reversed(list(self.posts.values()))
        ]
        return JSONResponse({"kind": "Listing", "data": {"children": children}})

    async def comment(self, request: RecordedRequest) -> Response:
        user = self._user(request)
        if isinstance(user, Response):
            return user
        thing = request.form.get("thing_id", "")
        if thing not in self.posts and thing not in self.comments:
            return api_errors(["INVALID_OPTION", "that parent doesn't exist", "parent"])
        if not request.form.get("text"):
            return api_errors(["NO_TEXT", "we need something here", "text"])
        comment_id = self._id()
        name = f"t1_{comment_id}"
        self.comments[name] = {
            "name": name,
            "parent_id": thing,
            "body": request.form["text"],
            "permalink": f"/r/python/comments/x/slug/{comment_id}/",
            "created_utc": time.time(),
        }
        return JSONResponse(
            {
                "json": {
                    "errors": [],
                    "data": {
                        "things": [
                            {
                                "kind": "t1",
                                "data": {
                                    "id": comment_id,
                                    "name": name,
                                    "parent_id": thing,
                                    "permalink": f"/r/python/comments/x/slug/{comment_id}/",
                                    "body": request.form["text"],
                                },
                            }
                        ]
                    },
                }
            }
        )

    async def user_comments(self, request: RecordedRequest) -> Response:
        user = self._user(request)
        if isinstance(user, Response):
            return user
        children = [{"kind": "t1", "data": c} for c in reversed(list(self.comments.values()))]
        return JSONResponse({"kind": "Listing", "data": {"children": children}})

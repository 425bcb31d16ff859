"""A fake LinkedIn: OAuth, OpenID userinfo, organization ACLs, REST posts, image/video uploads
(initializeUpload + PUT to the upload URL), and comments."""

from __future__ import annotations

import secrets
from typing import Any

from starlette.responses import JSONResponse, Response

from tests.channels.providers.servers.base import FakePlatform, RecordedRequest
from tests.channels.providers.servers.oauth import OAuthBook

CLIENT_ID = "li-client"
CLIENT_SECRET = "li-secret"
VERSION = "202505"


def li_error(status: int, code: str, message: str, service_code: int | None = None) -> Response:
    body: dict[str, Any] = {"status": status, "code": code, "message": message}
    if service_code is not None:
        body["serviceErrorCode"] = service_code
    return JSONResponse(body, status)


class FakeLinkedIn(FakePlatform):
    def __init__(self, *, video_polls: int = 1, part_size: int = 100) -> None:
        self.oauth = OAuthBook(user="abc123", expires_in=5184000, require_pkce=False)
        self.oauth.rotate_refresh = False
        self.oauth.add_client(CLIENT_ID, CLIENT_SECRET, [])
        self.video_polls = video_polls
        self.part_size = part_size
        self.posts: dict[str, dict[str, Any]] = {}
        self.comments: dict[str, dict[str, Any]] = {}
        self.images: dict[str, dict[str, Any]] = {}
        self.videos: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, bytes] = {}
        self.organizations = {
            "2414183": {"id": 2414183, "localizedName": "Acme Corp", "vanityName": "acme"},
            "555": {"id": 555, "localizedName": "Side Project", "vanityName": "side"},
        }
        self.admin_of = ["2414183", "555"]
        self._next = 7_000_000_000
        super().__init__()

    def _id(self) -> str:
        self._next += 1
        return str(self._next)

    def setup_routes(self) -> None:
        self.add("GET", "/oauth/v2/authorization", self.authorize)
        self.add("POST", "/oauth/v2/accessToken", self.token)
        self.add("GET", "/v2/userinfo", self.userinfo)
        self.add("GET", "/rest/organizationAcls", self.acls)
        self.add("GET", "/rest/organizations/{id}", self.organization)
        self.add("POST", "/rest/images", self.images_action)
        self.add("POST", "/rest/videos", self.videos_action)
        self.add("GET", "/rest/videos/{urn}", self.get_video)
        self.add("PUT", "/dms-uploads/{key}", self.put_upload)
        self.add("POST", "/rest/posts", self.create_post)
        self.add("POST", "/rest/socialActions/{urn}/comments", self.create_comment)

    async def authorize(self, request: RecordedRequest) -> Response:
        return self.oauth.authorize(request)

    async def token(self, request: RecordedRequest) -> Response:
        response = self.oauth.token(request)
        return response

    def _check(self, request: RecordedRequest, *, rest: bool = True) -> str | Response:
        if self.oauth.is_revoked(request):
            return li_error(
                401,
                "REVOKED_ACCESS_TOKEN",
                "The token used in the request has been revoked by the user",
                65601,
            )
        user = self.oauth.user_for(request)
        if user is None:
            return li_error(401, "INVALID_ACCESS_TOKEN", "Invalid access token", 65600)
        if rest:
            if request.headers.get("linkedin-version") != VERSION:
                return li_error(426, "NONEXISTENT_VERSION", "Requested version is not active")
            if request.headers.get("x-restli-protocol-version") != "2.0.0":
                return li_error(400, "INVALID_PROTOCOL", "Protocol version 2.0.0 required")
        return user

    async def userinfo(self, request: RecordedRequest) -> Response:
        user = self._check(request, rest=False)
        if isinstance(user, Response):
            return user
        return JSONResponse(
            {
                "sub": user,
                "name": "Lena Link",
                "given_name": "Lena",
                "family_name": "Link",
                "picture": "https://media.licdn.example/lena.jpg",
                "email": "lena@example.com",
                "email_verified": True,
                "locale": {"country": "US", "language": "en"},
            }
        )

    async def acls(self, request: RecordedRequest) -> Response:
        user = self._check(request)
        if isinstance(user, Response):
            return user
        elements = [
            {
                "organization": f"urn:li:organization:{org}",
                "role": "ADMINISTRATOR",
                "state": "APPROVED",
                "roleAssignee": f"urn:li:person:{user}",
            }
            for org in self.admin_of
        ]
        return JSONResponse({"elements": elements, "paging": {"count": 10, "start": 0}})

    async def organization(self, request: RecordedRequest) -> Response:
        user = self._check(request)
        if isinstance(user, Response):
            return user
        org = self.organizations.get(request.path_params["id"])
        if org is None:
            return li_error(404, "NOT_FOUND", "Not found")
        return JSONResponse(org)

    def _may_post_as(self, user: str, urn: str) -> bool:
        if urn == f"urn:li:person:{user}":
            return True
        return any(urn == f"urn:li:organization:{org}" for org in self.admin_of)

    def _upload_url(self, key: str) -> str:
        return self.url(f"/dms-uploads/{key}")

    async def images_action(self, request: RecordedRequest) -> Response:
        user = self._check(request)
        if isinstance(user, Response):
            return user
        if request.query.get("action") != "initializeUpload":
            return li_error(400, "BAD_ACTION", "Unknown action")
        owner = request.json["initializeUploadRequest"]["owner"]
        if not self._may_post_as(user, owner):
            return li_error(403, "ACCESS_DENIED", "Not enough permissions to access", 100)
        urn = f"urn:li:image:C4D{self._id()}"
        key = secrets.token_hex(6)
        self.images[urn] = {"owner": owner, "key": key}
        return JSONResponse(
            {
                "value": {
                    "uploadUrlExpiresAt": 1893456000000,
                    "uploadUrl": self._upload_url(key),
                    "image": urn,
                }
            }
        )

    async def videos_action(self, request: RecordedRequest) -> Response:
        user = self._check(request)
        if isinstance(user, Response):
            return user
        action = request.query.get("action")
        if action == "initializeUpload":
            init = request.json["initializeUploadRequest"]
            size = int(init["fileSizeBytes"])
            urn = f"urn:li:video:C5D{self._id()}"
            instructions = []
            keys = []
            for first in range(0, size, self.part_size):
                last = min(first + self.part_size, size) - 1
                key = secrets.token_hex(6)
                keys.append(key)
                instructions.append(
                    {"uploadUrl": self._upload_url(key), "firstByte": first, "lastByte": last}
                )
            value: dict[str, Any] = {
                "video": urn,
                "uploadInstructions": instructions,
                "uploadToken": "tok-" + secrets.token_hex(4),
            }
            thumb_key = None
            if init.get("uploadThumbnail"):
                thumb_key = secrets.token_hex(6)
                value["thumbnailUploadUrl"] = self._upload_url(thumb_key)
            self.videos[urn] = {
                "keys": keys,
                "thumb_key": thumb_key,
                "token": value["uploadToken"],
                "status": "WAITING_UPLOAD",
                "polls": self.video_polls,
                "data": b"",
            }
            return JSONResponse({"value": value})
        if action == "finalizeUpload":
            final = request.json["finalizeUploadRequest"]
            video = self.videos.get(final["video"])
            if video is None or final["uploadToken"] != video["token"]:
                return li_error(400, "BAD_TOKEN", "Invalid upload token")
            etags = [f'"{k}"' for k in video["keys"]]
            if final["uploadedPartIds"] != etags:
                return li_error(400, "BAD_PARTS", "Uploaded part ids do not match")
            video["data"] = b"".join(self.uploads[k] for k in video["keys"])
            video["status"] = "PROCESSING" if video["polls"] else "AVAILABLE"
            return JSONResponse({}, 200)
        return li_error(400, "BAD_ACTION", "Unknown action")

    async def get_video(self, request: RecordedRequest) -> Response:
        user = self._check(request)
        if isinstance(user, Response):
            return user
        video = self.videos.get(request.path_params["urn"])
        if video is None:
            return li_error(404, "NOT_FOUND", "Not found")
        if video["status"] == "PROCESSING":
            video["polls"] -= 1
            if video["polls"] <= 0:
                video["status"] = "AVAILABLE"
                return JSONResponse({"id": request.path_params["urn"], "status": "PROCESSING"})
        return JSONResponse({"id": request.path_params["urn"], "status": video["status"]})

    async def put_upload(self, request: RecordedRequest) -> Response:
        user = self.oauth.user_for(request)
        if user is None:
            return li_error(401, "INVALID_ACCESS_TOKEN", "Invalid access token", 65600)
        key = request.path_params["key"]
        self.uploads[key] = request.body
        return Response(status_code=201, headers={"ETag": f'"{key}"'})

    async def create_post(self, request: RecordedRequest) -> Response:
        user = self._check(request)
        if isinstance(user, Response):
            return user
        body = request.json or {}
        if not self._may_post_as(user, body.get("author", "")):
            return li_error(403, "ACCESS_DENIED", "Not enough permissions to access", 100)
        commentary = body.get("commentary", "")
        if len(commentary) > 3000:
            return li_error(
                422,
                "UNPROCESSABLE_ENTITY",
                "/commentary :: length of the text exceeds the maximum of 3000 characters",
            )
        for post in self.posts.values():
            if post["commentary"] == commentary and commentary:
                return li_error(422, "DUPLICATE_POST", "Content is a duplicate of urn:li:share:1")
        content = body.get("content") or {}
        ids = [content["media"]["id"]] if "media" in content else []
        ids += [i["id"] for i in (content.get("multiImage") or {}).get("images", [])]
        for media_id in ids:
            if media_id.startswith("urn:li:image:"):
                image = self.images.get(media_id)
                if image is None or image["key"] not in self.uploads:
                    return li_error(400, "INVALID_MEDIA", f"Image {media_id} was not uploaded")
            elif self.videos.get(media_id, {}).get("status") != "AVAILABLE":
                return li_error(400, "INVALID_MEDIA", f"Video {media_id} is not available")
        urn = f"urn:li:share:{self._id()}"
        self.posts[urn] = body
        return Response(status_code=201, headers={"x-restli-id": urn})

    async def create_comment(self, request: RecordedRequest) -> Response:
        user = self._check(request)
        if isinstance(user, Response):
            return user
        body = request.json or {}
        target = request.path_params["urn"]
        post = str(body.get("object", "")).replace("urn:li:activity:", "urn:li:share:")
        if post not in self.posts:
            return li_error(404, "NOT_FOUND", f"Post {post} not found")
        parent = body.get("parentComment")
        if parent is not None:
            if parent != target or parent not in self.comments:
                return li_error(400, "INVALID_PARENT", "Invalid parent comment")
            if self.comments[parent].get("parentComment"):
                return li_error(400, "NESTING", "Comments can only be nested one level")
        elif target != body.get("object"):
            return li_error(400, "INVALID_TARGET", "Target must be the post")
        comment_id = self._id()
        activity = post.replace("urn:li:share:", "urn:li:activity:")
        urn = f"urn:li:comment:({activity},{comment_id})"
        self.comments[urn] = body
        return JSONResponse(
            {
                "id": comment_id,
                "$URN": urn,
                "object": post,
                "actor": body.get("actor"),
                "message": body.get("message"),
            },
            201,
            headers={"x-restli-id": urn},
        )

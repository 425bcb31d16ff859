"""Reddit: OAuth 2 (``duration=permanent`` for a refresh token; HTTP Basic on the token endpoint),
``/api/v1/me``, ``/api/submit`` for self, link and media posts, ``/api/comment`` for replies.

Reddit reports most failures of ``submit``/``comment`` with HTTP 200 and a ``json.errors`` list
(``[code, message, field]``); those are classified like HTTP errors (RATELIMIT -> retry after the
time it names, anything else -> bad body). Media posts upload the file through Reddit's media
asset lease (``/api/media/asset.json``, then a form POST to the storage URL it returns); as the
submit answer of a media post carries no id, the post is then found in the user's submissions.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlencode, urljoin
from xml.etree import ElementTree

import httpx
from pydantic import BaseModel, Field, HttpUrl, field_validator

from tidings.channels.providers.base import (
    AuthorizationRequest,
    BadBodyError,
    ChannelCredentials,
    ConnectedAccount,
    ConnectError,
    DisconnectedError,
    MediaItem,
    MediaRules,
    PostPart,
    Provider,
    ProviderError,
    ProviderSettings,
    PublishResult,
    RetryableError,
    RuleViolation,
    TokenSet,
    UnknownOutcomeError,
    classify_response,
    closing_stream,
    json_body,
    parse_retry_after,
    response_excerpt,
    response_json,
    response_message,
    token_set,
    tool,
)

TITLE_MAX = 300
_RATELIMIT_WAIT = re.compile(r"(\d+)\s*(second|minute|hour)", re.IGNORECASE)
_UNITS = {"second": 1, "minute": 60, "hour": 3600}


def ratelimit_seconds(message: str) -> float | None:
    """Seconds in Reddit's "try again in 9 minutes." messages."""
    match = _RATELIMIT_WAIT.search(message)
    if not match:
        return None
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


class RedditSettings(ProviderSettings):
    """Where and how the post goes on Reddit."""

    subreddit: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_]{1,20}$", description="e.g. python")
    title: str = Field(min_length=1, max_length=TITLE_MAX)
    kind: Literal["self", "link", "media"] | None = Field(
        default=None, description="Post type; by default media when a file is attached, else text"
    )
    url: HttpUrl | None = Field(default=None, description="The link of a link post")
    flair_id: str | None = None
    flair_text: str | None = Field(default=None, max_length=64)
    nsfw: bool = False
    spoiler: bool = False
    send_replies: bool = True

    @field_validator("subreddit", mode="before")
    @classmethod
    def _strip_prefix(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().removeprefix("/").removeprefix("r/")
        return value


class RedditProvider(Provider[RedditSettings]):
    identifier = "reddit"
    display_name = "Reddit"
    connect_kind = "oauth"
    scopes = ("identity", "submit", "flair", "read", "history")
    default_max_length = 10000
    media_rules = MediaRules(
        max_images=1,
        max_videos=1,
        replies_allow_media=False,
        image_mime_types=frozenset({"image/jpeg", "image/png", "image/gif"}),
        video_mime_types=frozenset({"video/mp4", "video/quicktime"}),
        max_image_bytes=20 * 1024 * 1024,
        max_video_bytes=1024 * 1024 * 1024,
    )
    settings_model = RedditSettings
    default_urls = {
        "auth": "https://www.reddit.com",
        "api": "https://oauth.reddit.com",
        "web": "https://www.reddit.com",
    }
    user_agent = "web:tidings:0.1 (self-hosted social scheduler)"
    can_check_published = True

    # ---- validation ---------------------------------------------------------------------

    def validate(
        self,
        parts: Sequence[PostPart],
        settings: Mapping[str, Any] | BaseModel | None = None,
        credentials: ChannelCredentials | None = None,
    ) -> list[RuleViolation]:
        violations = super().validate(parts, settings, credentials)
        try:
            parsed = self.parse_settings(settings)
        except ValueError:
            return violations
        if not parts:
            return violations
        first = parts[0]
        kind = self._kind(parsed, first)
        if kind == "link" and parsed.url is None:
            violations.append(
                RuleViolation(code="settings", message="A Reddit link post needs a url")
            )
        if kind == "media":
            if len(first.media) != 1:
                violations.append(
                    RuleViolation(
                        code="media_count",
                        message="A Reddit media post carries exactly 1 file",
                        part_index=0,
                    )
                )
            for item in first.media:
                if item.type == "video" and not (item.thumbnail_url or item.read_thumbnail):
                    violations.append(
                        RuleViolation(
                            code="video_thumbnail",
                            message="A Reddit video needs a thumbnail",
                            part_index=0,
                        )
                    )
        elif first.media:
            violations.append(
                RuleViolation(
                    code="media_kind",
                    message=f"A Reddit {kind} post cannot carry files",
                    part_index=0,
                )
            )
        return violations

    @staticmethod
    def _kind(settings: RedditSettings, part: PostPart) -> str:
        if settings.kind:
            return settings.kind
        return "media" if part.media else "self"

    # ---- errors -------------------------------------------------------------------------

    def classify_error(self, response: httpx.Response) -> ProviderError | None:
        status = response.status_code
        excerpt = response_excerpt(response)
        if status >= 400:
            message = f"Reddit: {response_message(response)}"
            if status == 429:
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                reset = response.headers.get("x-ratelimit-reset")
                if retry_after is None and reset:
                    retry_after = parse_retry_after(reset)
                return RetryableError(
                    message, status_code=status, excerpt=excerpt, retry_after=retry_after
                )
            return classify_response(response, message=message)
        # 200 with {"json": {"errors": [[code, message, field], ...]}}
        data = response_json(response)
        errors = ((data.get("json") or {}).get("errors") if isinstance(data, dict) else None) or []
        if not errors:
            return None
        codes = [str(e[0]) for e in errors if isinstance(e, list) and e]
        text = "Reddit: " + "; ".join(
            f"{e[1]}" + (f" ({e[2]})" if len(e) > 2 and e[2] else "")
            for e in errors
            if isinstance(e, list) and len(e) > 1
        )
        if "RATELIMIT" in codes:
            return RetryableError(
                text, status_code=status, excerpt=excerpt, retry_after=ratelimit_seconds(text)
            )
        if "USER_REQUIRED" in codes:
            return DisconnectedError(text, status_code=status, excerpt=excerpt)
        return BadBodyError(text, status_code=status, excerpt=excerpt)

    # ---- HTTP ---------------------------------------------------------------------------

    def _headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "User-Agent": self.user_agent}

    def _client(self) -> tuple[str, str]:
        if not self.config.client_id or not self.config.client_secret:
            raise ProviderError(
                "Reddit is not configured: set TIDINGS_REDDIT_CLIENT_ID and "
                "TIDINGS_REDDIT_CLIENT_SECRET"
            )
        return self.config.client_id, self.config.client_secret

    # ---- connecting ---------------------------------------------------------------------

    async def authorization_url(
        self,
        redirect_uri: str,
        state: str,
        code_verifier: str,
        custom_instance: Mapping[str, Any] | None = None,
    ) -> AuthorizationRequest:
        """Reddit's consent page; ``duration=permanent`` asks for a refresh token."""
        client_id, _ = self._client()
        query = urlencode(
            {
                "client_id": client_id,
                "response_type": "code",
                "state": state,
                "redirect_uri": redirect_uri,
                "duration": "permanent",
                "scope": " ".join(self.scopes),
            }
        )
        return AuthorizationRequest(url=f"{self.config.url('auth')}/api/v1/authorize?{query}")

    async def _token(
        self, data: dict[str, str], purpose: Literal["exchange", "refresh"]
    ) -> TokenSet:
        body = await self.oauth_token(
            f"{self.config.url('auth')}/api/v1/access_token",
            data,
            purpose=purpose,
            auth=self._client(),
            headers={"User-Agent": self.user_agent},
        )
        if "error" in body:
            # Reddit may answer a refused grant with HTTP 200 and {"error": "invalid_grant"}.
            error = ProviderError(f"Reddit refused the token request: {body['error']}")
            if purpose == "exchange":
                raise ConnectError(error.message)
            raise DisconnectedError(error.message)
        return token_set(body)

    async def exchange_code(
        self,
        code: str,
        redirect_uri: str,
        code_verifier: str,
        custom_instance_details: Mapping[str, Any] | None = None,
    ) -> ConnectedAccount:
        """Trade the code for tokens and read the user."""
        tokens = await self._token(
            {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri},
            "exchange",
        )
        me = json_body(
            await self.request(
                "GET",
                f"{self.config.url('api')}/api/v1/me",
                headers=self._headers(tokens.access_token),
            )
        )
        if not isinstance(me, dict) or not me.get("name"):
            raise ConnectError("Reddit did not return the account")
        picture = me.get("snoovatar_img") or me.get("icon_img")
        return ConnectedAccount(
            internal_id=str(me.get("id") or me["name"]),
            name=str(me["name"]),
            username=str(me["name"]),
            picture=str(picture).split("?", 1)[0] if picture else None,
            tokens=tokens,
        )

    async def refresh(self, credentials: ChannelCredentials) -> TokenSet:
        """Refresh (Reddit keeps the same refresh token and usually does not resend it)."""
        if not credentials.refresh_token:
            raise DisconnectedError("The Reddit token expired; reconnect the channel")
        return await self._token(
            {"grant_type": "refresh_token", "refresh_token": credentials.refresh_token},
            "refresh",
        )

    # ---- tools --------------------------------------------------------------------------

    @tool("flairs")
    async def flairs(
        self, credentials: ChannelCredentials, args: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Link flairs of ``args["subreddit"]``: id, text, whether the text is editable."""
        subreddit = str(args.get("subreddit") or "").strip().removeprefix("r/")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_]{1,20}", subreddit):
            raise BadBodyError("Give a subreddit name, e.g. {'subreddit': 'python'}")
        response = await self.request(
            "GET",
            f"{self.config.url('api')}/r/{subreddit}/api/link_flair_v2",
            headers=self._headers(credentials.access_token),
        )
        return [
            {
                "id": str(f.get("id")),
                "text": str(f.get("text") or ""),
                "editable": bool(f.get("text_editable")),
            }
            for f in json_body(response) or []
            if isinstance(f, dict) and f.get("id")
        ]

    # ---- publishing ---------------------------------------------------------------------

    async def _upload(self, credentials: ChannelCredentials, item: MediaItem) -> str:
        """Upload through the media asset lease; returns the file's public URL. The file goes
        as a streamed multipart body (a video may be up to 1 GB): never held whole."""
        name = item.url.rsplit("/", 1)[-1] or "media"
        lease = json_body(
            await self.request(
                "POST",
                f"{self.config.url('api')}/api/media/asset.json",
                headers=self._headers(credentials.access_token),
                data={"filepath": name, "mimetype": item.mime_type},
                idempotent=True,
            )
        )
        args = lease.get("args") or {}
        # Reddit gives a protocol-relative URL: resolve it against the API's own scheme.
        action = urljoin(self.config.url("api") + "/", str(args.get("action") or ""))
        fields = {str(f["name"]): str(f["value"]) for f in args.get("fields") or []}
        async with self.open_media(item) as body:
            headers, content = body.multipart(
                fields, file_field="file", filename=name, mime_type=item.mime_type
            )
            async with closing_stream(content):
                stored = await self.request(
                    "POST", action, content=content, headers=headers, idempotent=True
                )
        try:
            location = ElementTree.fromstring(stored.text).findtext("Location")  # noqa: S314
        except ElementTree.ParseError:
            location = None
        if not location:
            key = fields.get("key")
            location = f"{action.rstrip('/')}/{key}" if key else None
        if not location:
            raise RetryableError("Reddit's media storage did not say where the file went")
        return location.replace("%2F", "/")

    async def publish(
        self, credentials: ChannelCredentials, part: PostPart, settings: RedditSettings
    ) -> PublishResult:
        """Submit a self, link or media post to the subreddit."""
        kind = self._kind(settings, part)
        form: dict[str, str] = {
            "api_type": "json",
            "sr": settings.subreddit,
            "title": settings.title,
            "resubmit": "true",
            "sendreplies": "true" if settings.send_replies else "false",
            "nsfw": "true" if settings.nsfw else "false",
            "spoiler": "true" if settings.spoiler else "false",
        }
        if settings.flair_id:
            form["flair_id"] = settings.flair_id
        if settings.flair_text:
            form["flair_text"] = settings.flair_text
        if kind == "self":
            form |= {"kind": "self", "text": part.content}
        elif kind == "link":
            if settings.url is None:
                raise BadBodyError("A Reddit link post needs a url")
            form |= {"kind": "link", "url": str(settings.url)}
        else:
            if len(part.media) != 1:
                raise BadBodyError("A Reddit media post carries exactly 1 file")
            item = part.media[0]
            form["url"] = await self._upload(credentials, item)
            if item.type == "video":
                thumbnail = await self.read_thumbnail(item)
                if thumbnail is None:
                    raise BadBodyError("A Reddit video needs a thumbnail")

                async def poster_bytes(data: bytes = thumbnail) -> bytes:
                    return data

                poster = MediaItem(
                    url=item.thumbnail_url or "thumbnail.jpg",
                    type="image",
                    mime_type="image/jpeg",
                    read=poster_bytes,
                )
                form["video_poster_url"] = await self._upload(credentials, poster)
                form["kind"] = "video"
            else:
                form["kind"] = "image"
        started = time.time()
        response = await self.request(
            "POST",
            f"{self.config.url('api')}/api/submit",
            headers=self._headers(credentials.access_token),
            data=form,
        )
        data = (json_body(response).get("json") or {}).get("data") or {}
        if data.get("name"):
            name = str(data["name"])
            return PublishResult(id=name, url=data.get("url"), data={"name": name})
        found = await self._find_submission(credentials, settings, started)
        if found is None:
            raise UnknownOutcomeError(
                "Reddit accepted the media post but it does not show in the profile yet; "
                "check the subreddit before retrying"
            )
        return found

    def _username(self, credentials: ChannelCredentials) -> str:
        if not credentials.profile:
            raise ProviderError("The Reddit username of this channel is unknown; reconnect it")
        return credentials.profile

    async def _find_submission(
        self, credentials: ChannelCredentials, settings: RedditSettings, since: float
    ) -> PublishResult | None:
        """A post of ``settings.title`` in ``settings.subreddit`` submitted since ``since``,
        read back from the user's submissions."""
        username = self._username(credentials)
        response = await self.request(
            "GET",
            f"{self.config.url('api')}/user/{username}/submitted",
            headers=self._headers(credentials.access_token),
            params={"sort": "new", "limit": "10", "raw_json": "1"},
        )
        for child in (json_body(response).get("data") or {}).get("children") or []:
            post = child.get("data") or {}
            if (
                post.get("title") == settings.title
                and str(post.get("subreddit", "")).lower() == settings.subreddit.lower()
                and float(post.get("created_utc") or 0) >= since - 60
            ):
                name = str(post["name"])
                permalink = post.get("permalink")
                url = f"{self.config.url('web')}{permalink}" if permalink else post.get("url")
                return PublishResult(id=name, url=url, data={"name": name})
        return None

    async def find_published(
        self,
        credentials: ChannelCredentials,
        part: PostPart,
        settings: RedditSettings,
        *,
        parent: PublishResult | None,
        since: datetime,
    ) -> PublishResult | None:
        """The post (by title and subreddit) or comment (by parent and text) if Reddit lists it
        among the user's latest ones."""
        if parent is None:
            return await self._find_submission(credentials, settings, since.timestamp())
        response = await self.request(
            "GET",
            f"{self.config.url('api')}/user/{self._username(credentials)}/comments",
            headers=self._headers(credentials.access_token),
            params={"sort": "new", "limit": "25", "raw_json": "1"},
        )
        for child in (json_body(response).get("data") or {}).get("children") or []:
            comment = child.get("data") or {}
            if (
                comment.get("parent_id") == parent.id
                and comment.get("body") == part.content
                and float(comment.get("created_utc") or 0) >= since.timestamp() - 60
            ):
                name = str(comment["name"])
                permalink = comment.get("permalink")
                url = f"{self.config.url('web')}{permalink}" if permalink else None
                return PublishResult(id=name, url=url, data={"name": name})
        return None

    async def reply(
        self,
        credentials: ChannelCredentials,
        parent: PublishResult,
        part: PostPart,
        settings: RedditSettings,
    ) -> PublishResult:
        """Comment under ``parent`` (the post, or the previous comment)."""
        response = await self.request(
            "POST",
            f"{self.config.url('api')}/api/comment",
            headers=self._headers(credentials.access_token),
            data={"api_type": "json", "thing_id": parent.id, "text": part.content},
        )
        things = ((json_body(response).get("json") or {}).get("data") or {}).get("things") or []
        if not things:
            raise UnknownOutcomeError("Reddit accepted the comment but did not return it")
        comment = things[0].get("data") or {}
        name = str(comment.get("name") or f"t1_{comment.get('id')}")
        permalink = comment.get("permalink")
        return PublishResult(
            id=name,
            url=f"{self.config.url('web')}{permalink}" if permalink else None,
            data={"name": name},
        )

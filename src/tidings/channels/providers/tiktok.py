"""TikTok, through Login Kit (OAuth 2 v2) and the Content Posting API.

A post is one video, or a photo post of up to 35 images. Before each post the creator's
settings are read (``creator_info``): the privacy level must be one they offer, and comments,
duets and stitches they disabled stay disabled. Videos go up in chunks (``FILE_UPLOAD``,
``PUT`` with ``Content-Range``) or are pulled by TikTok from their public URL
(``PULL_FROM_URL``, needs a verified domain); photos are always pulled. ``DIRECT_POST``
publishes; ``UPLOAD`` sends the media to the creator's TikTok inbox to finish in the app.
The publish is then followed with ``status/fetch`` until TikTok reports it done or failed.
Access tokens last a day and refresh with the refresh token (a year).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import httpx
from pydantic import AliasChoices, BaseModel, Field, field_validator

from tidings.channels.providers._common import authorization_request, poll
from tidings.channels.providers.base import (
    AuthorizationRequest,
    BadBodyError,
    ChannelCredentials,
    ConnectedAccount,
    ConnectError,
    DisconnectedError,
    MediaBody,
    MediaItem,
    MediaRules,
    PostPart,
    Provider,
    ProviderError,
    ProviderSettings,
    PublishResult,
    RefreshTokenError,
    RetryableError,
    RuleViolation,
    TokenSet,
    UnknownOutcomeError,
    closing_stream,
    json_body,
    parse_retry_after,
    response_excerpt,
    response_json,
    response_message,
    token_set,
)

PrivacyLevel = Literal[
    "PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "FOLLOWER_OF_CREATOR", "SELF_ONLY"
]
REFRESH_CODES = frozenset({"access_token_invalid"})
DISCONNECT_CODES = frozenset({"scope_not_authorized", "spam_risk_user_banned_from_posting"})
RETRY_CODES = frozenset(
    {"rate_limit_exceeded", "spam_risk_too_many_posts", "reached_active_user_cap", "internal_error"}
)
# Statuses of a publish: done, or still going.
DONE = frozenset({"PUBLISH_COMPLETE", "SEND_TO_USER_INBOX"})
MAX_PHOTOS = 35
PHOTO_TITLE_MAX = 90
MIN_CHUNK = 5 * 1024 * 1024


def _flag(value: Any) -> Any:
    """Postiz's "yes"/"no" as booleans."""
    if isinstance(value, str) and value.lower() in ("yes", "no"):
        return value.lower() == "yes"
    return value


class TikTokSettings(ProviderSettings):
    """TikTok post settings (Postiz's field names)."""

    privacy_level: PrivacyLevel = Field(
        default="PUBLIC_TO_EVERYONE", description="Who can see the post"
    )
    duet: bool = Field(default=True, description="Allow duets (videos)")
    stitch: bool = Field(default=True, description="Allow stitches (videos)")
    comment: bool = Field(default=True, description="Allow comments")
    auto_add_music: bool = Field(
        default=False,
        validation_alias=AliasChoices("auto_add_music", "autoAddMusic"),
        description="Let TikTok add music to a photo post",
    )
    brand_content_toggle: bool = Field(default=False, description="Paid partnership")
    brand_organic_toggle: bool = Field(default=False, description="Promotes your own brand")
    content_posting_method: Literal["DIRECT_POST", "UPLOAD"] = Field(
        default="DIRECT_POST",
        description="Publish directly, or send to the TikTok inbox to finish in the app",
    )
    upload_method: Literal["FILE_UPLOAD", "PULL_FROM_URL"] = Field(
        default="FILE_UPLOAD",
        description="How a video reaches TikTok (pulling needs a verified domain)",
    )
    title: str | None = Field(
        default=None, max_length=PHOTO_TITLE_MAX, description="Title of a photo post"
    )
    video_made_with_ai: bool = Field(default=False, description="AI-generated content")

    _yes_no = field_validator(
        "duet", "stitch", "comment", "auto_add_music", "video_made_with_ai", mode="before"
    )(_flag)


def utf16_length(text: str) -> int:
    """TikTok counts captions in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


class TikTokProvider(Provider[TikTokSettings]):
    identifier = "tiktok"
    display_name = "TikTok"
    connect_kind = "oauth"
    scopes = ("user.info.basic", "user.info.profile", "video.publish", "video.upload")
    supports_replies = False
    default_max_length = 2000
    text_counting = "utf16"
    media_rules = MediaRules(
        max_images=MAX_PHOTOS,
        max_videos=1,
        min_media=1,
        image_mime_types=frozenset({"image/jpeg", "image/webp"}),
        video_mime_types=frozenset({"video/mp4", "video/webm", "video/quicktime"}),
    )
    settings_model = TikTokSettings
    default_urls = {
        "auth": "https://www.tiktok.com",
        "api": "https://open.tiktokapis.com",
        "web": "https://www.tiktok.com",
    }
    chunk_size = 10 * 1024 * 1024
    status_poll_interval = 5.0
    status_poll_timeout = 600.0

    # ---- limits -------------------------------------------------------------------------

    def text_length(self, text: str) -> int:
        return utf16_length(text)

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
        if parsed.brand_content_toggle and parsed.privacy_level == "SELF_ONLY":
            violations.append(
                RuleViolation(
                    code="settings",
                    message="Branded content cannot be private on TikTok",
                )
            )
        return violations

    # ---- errors -------------------------------------------------------------------------

    def classify_error(self, response: httpx.Response) -> ProviderError | None:
        status = response.status_code
        body = response_json(response)
        data: dict[str, Any] = body if isinstance(body, dict) else {}
        error = data.get("error")
        if isinstance(error, dict):
            code = str(error.get("code") or "ok")
            text = str(error.get("message") or code)
        elif isinstance(error, str):  # the OAuth endpoints: {"error", "error_description"}
            code, text = error, str(data.get("error_description") or error)
        else:
            code, text = "ok", ""
        if status < 400 and code == "ok":
            return None
        message = f"TikTok: {text or response_message(response)}"
        if code != "ok" and code not in text:
            message += f" ({code})"
        excerpt = response_excerpt(response)
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if code in REFRESH_CODES or (status == 401 and code not in DISCONNECT_CODES):
            return RefreshTokenError(message, status_code=status, excerpt=excerpt)
        if code in DISCONNECT_CODES:
            return DisconnectedError(message, status_code=status, excerpt=excerpt)
        if code in RETRY_CODES or status == 429 or status >= 500:
            if code == "spam_risk_too_many_posts" and retry_after is None:
                retry_after = 3600.0  # the daily posting cap
            return RetryableError(
                message, status_code=status, excerpt=excerpt, retry_after=retry_after
            )
        return BadBodyError(message, status_code=status, excerpt=excerpt)

    # ---- plumbing -------------------------------------------------------------------------

    def _api(self, path: str) -> str:
        return f"{self.config.url('api')}/v2/{path.strip('/')}/"

    async def _call(
        self,
        token: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        idempotent: bool = False,
    ) -> dict[str, Any]:
        response = await self.request(
            "POST",
            self._api(path),
            json=dict(body or {}),
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json; charset=UTF-8",
            },
            idempotent=idempotent,
        )
        return dict(json_body(response).get("data") or {})

    # ---- connecting -----------------------------------------------------------------------

    async def authorization_url(
        self,
        redirect_uri: str,
        state: str,
        code_verifier: str,
        custom_instance: Mapping[str, Any] | None = None,
    ) -> AuthorizationRequest:
        """TikTok's authorization page (Login Kit for Web)."""
        return authorization_request(
            self,
            f"{self.config.url('auth')}/v2/auth/authorize/",
            {
                "scope": ",".join(self.scopes),
                "response_type": "code",
                "redirect_uri": redirect_uri,
                "state": state,
            },
            client_key="client_key",
        )

    def _client(self) -> dict[str, str]:
        return {
            "client_key": self.config.client_id or "",
            "client_secret": self.config.client_secret or "",
        }

    async def exchange_code(
        self,
        code: str,
        redirect_uri: str,
        code_verifier: str,
        custom_instance_details: Mapping[str, Any] | None = None,
    ) -> ConnectedAccount:
        """Trade the code, then read the user's profile."""
        data = await self.oauth_token(
            self._api("oauth/token"),
            {
                **self._client(),
                "code": code,
                "grant_type": "authorization_code",
                "redirect_uri": redirect_uri,
            },
            purpose="exchange",
        )
        tokens = token_set(data)
        response = await self.request(
            "GET",
            self._api("user/info"),
            params={"fields": "open_id,union_id,avatar_url,display_name,username"},
            headers={"Authorization": f"Bearer {tokens.access_token}"},
        )
        user = (json_body(response).get("data") or {}).get("user") or {}
        open_id = str(user.get("open_id") or data.get("open_id") or "")
        if not open_id:
            raise ConnectError("TikTok answered without the account's id")
        return ConnectedAccount(
            internal_id=open_id,
            name=str(user.get("display_name") or user.get("username") or open_id),
            username=user.get("username"),
            picture=user.get("avatar_url"),
            tokens=tokens,
        )

    async def refresh(self, credentials: ChannelCredentials) -> TokenSet:
        """A new access token (and possibly a new refresh token)."""
        return await self.refresh_grant(
            credentials,
            self._api("oauth/token"),
            expired="The TikTok authorization expired; reconnect the channel",
            form=self._client(),
        )

    # ---- publishing -----------------------------------------------------------------------

    async def _creator(self, token: str, settings: TikTokSettings) -> dict[str, Any]:
        creator = await self._call(token, "post/publish/creator_info/query", idempotent=True)
        options = creator.get("privacy_level_options") or []
        if settings.content_posting_method == "DIRECT_POST" and (
            settings.privacy_level not in options
        ):
            raise BadBodyError(
                f"TikTok does not offer {settings.privacy_level} for this account "
                f"(it offers {', '.join(options) or 'nothing'})"
            )
        return creator

    def _chunks(self, size: int) -> tuple[int, int]:
        """(chunk_size, total_chunk_count) by TikTok's rule: the last chunk takes the rest."""
        if size <= self.chunk_size:
            return size, 1
        return self.chunk_size, size // self.chunk_size

    async def _upload(
        self, token: str, url: str, body: MediaBody, mime: str, publish_id: str
    ) -> None:
        """PUT the chunks in turn, each read as it goes: the file is never held whole (the
        last chunk, which takes the rest, is under two chunk sizes)."""
        size = body.size
        chunk_size, count = self._chunks(size)
        spans = [
            (index * chunk_size, size if index == count - 1 else (index + 1) * chunk_size)
            for index in range(count)
        ]
        async with closing_stream(body.spans(spans)) as pieces:
            index = 0
            async for piece in pieces:
                start, end = spans[index]
                last = index == count - 1
                index += 1
                try:
                    await self.request(
                        "PUT",
                        url,
                        content=piece,
                        headers={
                            "Content-Type": mime,
                            "Content-Range": f"bytes {start}-{end - 1}/{size}",
                        },
                        idempotent=not last,  # the last chunk sets the publish going
                    )
                except UnknownOutcomeError as lost:
                    # Ask TikTok whether the whole file arrived before calling it unknown.
                    try:
                        status = await self._status(token, publish_id)
                    except ProviderError:
                        raise lost from None
                    arrived = int(status.get("uploaded_bytes") or 0) >= size
                    if status.get("status") == "PROCESSING_UPLOAD" and not arrived:
                        raise
                    return

    async def _status(self, token: str, publish_id: str) -> dict[str, Any]:
        return await self._call(
            token, "post/publish/status/fetch", {"publish_id": publish_id}, idempotent=True
        )

    async def _wait(self, token: str, publish_id: str) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            status = await self._status(token, publish_id)
            if status.get("status") == "FAILED":
                raise BadBodyError(f"TikTok refused the post: {status.get('fail_reason')}")
            return status if status.get("status") in DONE else None

        return await poll(
            check,
            interval=self.status_poll_interval,
            give_up_after=self.status_poll_timeout,
            what="The TikTok post",
        )

    async def _video(
        self,
        token: str,
        part: PostPart,
        item: MediaItem,
        settings: TikTokSettings,
        creator: Mapping[str, Any],
    ) -> str:
        if settings.upload_method == "PULL_FROM_URL":
            return await self._init_video(token, part, item, settings, creator, None)
        async with self.open_media(item) as body:
            return await self._init_video(token, part, item, settings, creator, body)

    async def _init_video(
        self,
        token: str,
        part: PostPart,
        item: MediaItem,
        settings: TikTokSettings,
        creator: Mapping[str, Any],
        body: MediaBody | None,
    ) -> str:
        """Init the publish (pulled from the URL, or ``body`` uploaded in chunks)."""
        direct = settings.content_posting_method == "DIRECT_POST"
        source: dict[str, Any]
        if body is None:
            source = {"source": "PULL_FROM_URL", "video_url": item.url}
        else:
            chunk_size, count = self._chunks(body.size)
            source = {
                "source": "FILE_UPLOAD",
                "video_size": body.size,
                "chunk_size": chunk_size,
                "total_chunk_count": count,
            }
        request: dict[str, Any] = {"source_info": source}
        if direct:
            request["post_info"] = {
                "title": part.content,
                "privacy_level": settings.privacy_level,
                "disable_duet": not settings.duet or bool(creator.get("duet_disabled")),
                "disable_stitch": not settings.stitch or bool(creator.get("stitch_disabled")),
                "disable_comment": not settings.comment or bool(creator.get("comment_disabled")),
                "brand_content_toggle": settings.brand_content_toggle,
                "brand_organic_toggle": settings.brand_organic_toggle,
                "is_aigc": settings.video_made_with_ai,
            }
        path = "post/publish/video/init" if direct else "post/publish/inbox/video/init"
        # Pulling starts the publish at once; an upload only once the last chunk is in.
        data = await self._call(token, path, request, idempotent=body is not None)
        publish_id = str(data["publish_id"])
        if body is not None:
            await self._upload(token, str(data["upload_url"]), body, item.mime_type, publish_id)
        return publish_id

    async def _photos(
        self,
        token: str,
        part: PostPart,
        settings: TikTokSettings,
        creator: Mapping[str, Any],
    ) -> str:
        direct = settings.content_posting_method == "DIRECT_POST"
        post_info: dict[str, Any] = {
            "title": settings.title or "",
            "description": part.content,
            "disable_comment": not settings.comment or bool(creator.get("comment_disabled")),
            "auto_add_music": settings.auto_add_music,
            "brand_content_toggle": settings.brand_content_toggle,
            "brand_organic_toggle": settings.brand_organic_toggle,
        }
        if direct:
            post_info["privacy_level"] = settings.privacy_level
        data = await self._call(
            token,
            "post/publish/content/init",
            {
                "post_info": post_info,
                "source_info": {
                    "source": "PULL_FROM_URL",
                    "photo_cover_index": 0,
                    "photo_images": [m.url for m in part.media],
                },
                "post_mode": "DIRECT_POST" if direct else "MEDIA_UPLOAD",
                "media_type": "PHOTO",
            },
        )
        return str(data["publish_id"])

    async def publish(
        self, credentials: ChannelCredentials, part: PostPart, settings: TikTokSettings
    ) -> PublishResult:
        """Check the creator's options, start the post, send the video, wait for TikTok."""
        videos = [m for m in part.media if m.type == "video"]
        images = [m for m in part.media if m.type == "image"]
        if not part.media or (videos and (len(videos) > 1 or images)):
            raise BadBodyError("A TikTok post is one video, or images only")
        token = credentials.access_token
        creator = await self._creator(token, settings)
        if videos:
            publish_id = await self._video(token, part, videos[0], settings, creator)
        else:
            publish_id = await self._photos(token, part, settings, creator)
        status = await self._wait(token, publish_id)
        username = credentials.profile or creator.get("creator_username")
        ids = [str(i) for i in status.get("publicaly_available_post_id") or []]
        web = self.config.url("web")
        if ids and username:
            kind = "video" if videos else "photo"
            return PublishResult(
                id=ids[0],
                url=f"{web}/@{username}/{kind}/{ids[0]}",
                data={"publish_id": publish_id},
            )
        # Private posts and inbox uploads have no public id: the profile is the best link.
        return PublishResult(
            id=publish_id,
            url=f"{web}/@{username}" if username else None,
            data={"publish_id": publish_id, "status": status.get("status")},
        )

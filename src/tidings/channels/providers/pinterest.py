"""Pinterest, through OAuth 2 and the Pinterest API v5.

A post is a pin on a board (setting ``board``; the ``boards`` tool lists them): one image, a
carousel of 2-5 images, or a video with its cover image as the second media item. Images are
fetched by Pinterest from their public URLs; a video is registered (``POST /v5/media``),
uploaded to the storage URL Pinterest hands out (a form POST with the given parameters), and
followed until processed before the pin is created. Pins have no replies here.
Access tokens last 30 days and refresh with the refresh token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx
from pydantic import BaseModel, Field, HttpUrl

from tidings.channels.providers._common import authorization_request, media_filename, poll, recent
from tidings.channels.providers.base import (
    AuthorizationRequest,
    BadBodyError,
    ChannelCredentials,
    ConnectedAccount,
    DisconnectedError,
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
    json_body,
    parse_retry_after,
    response_excerpt,
    response_json,
    response_message,
    token_set,
    tool,
)

MAX_MEDIA = 5
AUTHORIZATION_FAILED = 3
BOARD_PAGES = 10


class PinterestSettings(ProviderSettings):
    """Pinterest pin settings (Postiz's field names)."""

    board: str = Field(min_length=1, description="Board id (see the boards tool)")
    title: str | None = Field(default=None, max_length=100, description="Pin title")
    link: HttpUrl | None = Field(default=None, description="Where the pin leads")
    dominant_color: str | None = Field(
        default=None, pattern=r"^#[0-9a-fA-F]{6}$", description="Placeholder color, e.g. #6E7874"
    )


class PinterestProvider(Provider[PinterestSettings]):
    identifier = "pinterest"
    display_name = "Pinterest"
    connect_kind = "oauth"
    scopes = ("boards:read", "boards:write", "pins:read", "pins:write", "user_accounts:read")
    supports_replies = False
    default_max_length = 500
    media_rules = MediaRules(
        max_images=MAX_MEDIA,
        max_videos=1,
        allow_mixed=True,  # a video's cover image rides along
        min_media=1,
        image_mime_types=frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"}),
        video_mime_types=frozenset({"video/mp4", "video/quicktime", "video/x-m4v"}),
    )
    settings_model = PinterestSettings
    can_check_published = True
    default_urls = {"web": "https://www.pinterest.com", "api": "https://api.pinterest.com"}
    media_poll_interval = 3.0
    media_poll_timeout = 600.0

    # ---- limits -------------------------------------------------------------------------

    def validate(
        self,
        parts: Sequence[PostPart],
        settings: Mapping[str, Any] | BaseModel | None = None,
        credentials: ChannelCredentials | None = None,
    ) -> list[RuleViolation]:
        violations = super().validate(parts, settings, credentials)
        if not parts:
            return violations
        media = parts[0].media
        if len(media) > MAX_MEDIA:
            violations.append(
                RuleViolation(
                    code="too_many_media",
                    message=f"A pin carries at most {MAX_MEDIA} media",
                    part_index=0,
                )
            )
        if any(m.type == "video" for m in media) and not (
            len(media) == 2 and media[0].type == "video" and media[1].type == "image"
        ):
            violations.append(
                RuleViolation(
                    code="video_cover",
                    message="A Pinterest video needs its cover image as the second media item",
                    part_index=0,
                )
            )
        return violations

    # ---- errors -------------------------------------------------------------------------

    def classify_error(self, response: httpx.Response) -> ProviderError | None:
        status = response.status_code
        if status < 400:
            return None
        body = response_json(response)
        code = body.get("code") if isinstance(body, dict) else None
        message = f"Pinterest: {response_message(response)}"
        excerpt = response_excerpt(response)
        if status == 401:
            return RefreshTokenError(message, status_code=status, excerpt=excerpt)
        if status == 403 and (code == AUTHORIZATION_FAILED or "suspend" in message.lower()):
            return DisconnectedError(message, status_code=status, excerpt=excerpt)
        if status in (408, 429) or status >= 500:
            return RetryableError(
                message,
                status_code=status,
                excerpt=excerpt,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        return BadBodyError(message, status_code=status, excerpt=excerpt)

    # ---- plumbing -------------------------------------------------------------------------

    def _api(self, path: str) -> str:
        return f"{self.config.url('api')}/v5/{path.lstrip('/')}"

    @staticmethod
    def _auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    # ---- connecting -----------------------------------------------------------------------

    async def authorization_url(
        self,
        redirect_uri: str,
        state: str,
        code_verifier: str,
        custom_instance: Mapping[str, Any] | None = None,
    ) -> AuthorizationRequest:
        """Pinterest's consent page."""
        return authorization_request(
            self,
            f"{self.config.url('web')}/oauth/",
            {
                "redirect_uri": redirect_uri,
                "response_type": "code",
                "scope": ",".join(self.scopes),
                "state": state,
            },
        )

    async def exchange_code(
        self,
        code: str,
        redirect_uri: str,
        code_verifier: str,
        custom_instance_details: Mapping[str, Any] | None = None,
    ) -> ConnectedAccount:
        """Trade the code (client credentials in Basic auth), then read the account."""
        data = await self.oauth_token(
            self._api("oauth/token"),
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
            },
            purpose="exchange",
            auth=self.client_auth(),
        )
        tokens = token_set(data)
        account = json_body(
            await self.request(
                "GET", self._api("user_account"), headers=self._auth(tokens.access_token)
            )
        )
        username = str(account.get("username") or "")
        return ConnectedAccount(
            internal_id=str(account.get("id") or username),
            name=str(account.get("business_name") or username or account.get("id")),
            username=username or None,
            picture=account.get("profile_image"),
            tokens=tokens,
        )

    async def refresh(self, credentials: ChannelCredentials) -> TokenSet:
        """A new access token; the refresh token comes back only when it was renewed."""
        return await self.refresh_grant(
            credentials,
            self._api("oauth/token"),
            expired="The Pinterest authorization expired; reconnect the channel",
            auth=self.client_auth(),
        )

    @tool("boards")
    async def boards_tool(
        self, credentials: ChannelCredentials, args: dict[str, Any]
    ) -> list[dict[str, str]]:
        """The account's boards (for the ``board`` setting)."""
        out: list[dict[str, str]] = []
        params = {"page_size": "100"}
        for _ in range(BOARD_PAGES):
            data = json_body(
                await self.request(
                    "GET",
                    self._api("boards"),
                    params=params,
                    headers=self._auth(credentials.access_token),
                )
            )
            out.extend(
                {"id": str(b["id"]), "name": str(b.get("name") or "")}
                for b in data.get("items") or []
            )
            if not data.get("bookmark"):
                break
            params = {**params, "bookmark": str(data["bookmark"])}
        return out

    # ---- publishing -----------------------------------------------------------------------

    async def _video(self, token: str, item: MediaItem) -> str:
        registered = json_body(
            await self.request(
                "POST",
                self._api("media"),
                json={"media_type": "video"},
                headers=self._auth(token),
                idempotent=True,  # a registered upload publishes nothing
            )
        )
        media_id = str(registered["media_id"])
        fields = {str(k): str(v) for k, v in (registered.get("upload_parameters") or {}).items()}
        await self.request(
            "POST",
            str(registered["upload_url"]),
            data=fields,
            files={"file": (media_filename(item), await self.read_media(item), item.mime_type)},
            idempotent=True,
        )

        async def check() -> bool | None:
            status = json_body(
                await self.request("GET", self._api(f"media/{media_id}"), headers=self._auth(token))
            ).get("status")
            if status == "succeeded":
                return True
            if status == "failed":
                raise BadBodyError("Pinterest could not process the video")
            return None

        await poll(
            check,
            interval=self.media_poll_interval,
            give_up_after=self.media_poll_timeout,
            what="The Pinterest video",
        )
        return media_id

    async def publish(
        self, credentials: ChannelCredentials, part: PostPart, settings: PinterestSettings
    ) -> PublishResult:
        """Create the pin (uploading the video first when there is one)."""
        media = part.media
        token = credentials.access_token
        if not media or len(media) > MAX_MEDIA:
            raise BadBodyError(f"A pin needs 1 to {MAX_MEDIA} media")
        if media[0].type == "video":
            if len(media) != 2 or media[1].type != "image":
                raise BadBodyError("A Pinterest video needs its cover image as the second item")
            source: dict[str, Any] = {
                "source_type": "video_id",
                "media_id": await self._video(token, media[0]),
                "cover_image_url": media[1].url,
            }
        elif any(m.type == "video" for m in media):
            raise BadBodyError("A Pinterest video goes first, followed by its cover image")
        elif len(media) == 1:
            source = {"source_type": "image_url", "url": media[0].url}
        else:
            source = {
                "source_type": "multiple_image_urls",
                "items": [{"url": m.url} for m in media],
                "index": 0,
            }
        body: dict[str, Any] = {
            "board_id": settings.board,
            "description": part.content,
            "media_source": source,
        }
        if settings.title:
            body["title"] = settings.title
        if settings.link:
            body["link"] = str(settings.link)
        if settings.dominant_color:
            body["dominant_color"] = settings.dominant_color
        alt = media[1].alt if media[0].type == "video" else media[0].alt
        if alt:
            body["alt_text"] = alt[:500]
        pin = json_body(
            await self.request("POST", self._api("pins"), json=body, headers=self._auth(token))
        )
        pin_id = str(pin["id"])
        return PublishResult(id=pin_id, url=f"{self.config.url('web')}/pin/{pin_id}/")

    async def find_published(
        self,
        credentials: ChannelCredentials,
        part: PostPart,
        settings: PinterestSettings,
        *,
        parent: PublishResult | None,
        since: datetime,
    ) -> PublishResult | None:
        """Look for the pin among the board's latest pins created since ``since``."""
        data = json_body(
            await self.request(
                "GET",
                self._api(f"boards/{settings.board}/pins"),
                params={"page_size": "25"},
                headers=self._auth(credentials.access_token),
            )
        )
        for pin in data.get("items") or []:
            if (
                recent(pin.get("created_at"), since)
                and (pin.get("description") or "") == part.content
            ):
                pin_id = str(pin["id"])
                return PublishResult(id=pin_id, url=f"{self.config.url('web')}/pin/{pin_id}/")
        return None

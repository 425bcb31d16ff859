"""Threads (Meta), through the Threads Graph API.

OAuth at threads.net gives a short-lived token (1 hour) that is traded at once for a long-lived
one (60 days, ``th_exchange_token``); refreshing (``th_refresh_token``) renews that same token,
so there is never a refresh token. Publishing is two steps: create a media container
(``POST /me/threads``), wait until it is ``FINISHED``, publish it (``POST /me/threads_publish``).
A carousel is a container of item containers. Replies are posts with ``reply_to_id``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field

from tidings.channels.providers._common import (
    CLOCK_SKEW,
    poll,
    recent,
    total_media_violations,
    with_query,
)
from tidings.channels.providers._graph import graph_error, with_token
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
    RefreshTokenError,
    RuleViolation,
    TokenSet,
    json_body,
    token_set,
)

MAX_CAROUSEL = 20


class ThreadsSettings(ProviderSettings):
    """Threads post settings."""

    reply_control: Literal["everyone", "accounts_you_follow", "mentioned_only"] | None = Field(
        default=None, description="Who may reply to the post"
    )


class ThreadsProvider(Provider[ThreadsSettings]):
    identifier = "threads"
    display_name = "Threads"
    connect_kind = "oauth"
    scopes = ("threads_basic", "threads_content_publish", "threads_manage_replies")
    default_max_length = 500
    media_rules = MediaRules(max_images=MAX_CAROUSEL, max_videos=MAX_CAROUSEL, allow_mixed=True)
    settings_model = ThreadsSettings
    can_check_published = True
    default_urls = {"graph": "https://graph.threads.net", "web": "https://threads.net"}
    api_version = "v1.0"
    container_poll_interval = 2.0
    container_poll_timeout = 300.0

    # ---- limits and errors ----------------------------------------------------------------

    def validate(
        self,
        parts: Sequence[PostPart],
        settings: Mapping[str, Any] | BaseModel | None = None,
        credentials: ChannelCredentials | None = None,
    ) -> list[RuleViolation]:
        violations = super().validate(parts, settings, credentials)
        violations.extend(total_media_violations(parts, MAX_CAROUSEL, self.display_name))
        return violations

    def classify_error(self, response: httpx.Response) -> ProviderError | None:
        return graph_error(response, "Threads")

    # ---- Graph calls ----------------------------------------------------------------------

    def _api(self, path: str) -> str:
        return f"{self.config.url('graph')}/{self.api_version}/{path.lstrip('/')}"

    async def _get(self, path: str, token: str, params: Mapping[str, Any]) -> dict[str, Any]:
        response = await self.request("GET", self._api(path), params=with_token(params, token))
        return dict(json_body(response))

    async def _post(
        self, path: str, token: str, params: Mapping[str, Any], *, idempotent: bool = False
    ) -> dict[str, Any]:
        response = await self.request(
            "POST", self._api(path), data=with_token(params, token), idempotent=idempotent
        )
        return dict(json_body(response))

    # ---- connecting -----------------------------------------------------------------------

    async def authorization_url(
        self,
        redirect_uri: str,
        state: str,
        code_verifier: str,
        custom_instance: Mapping[str, Any] | None = None,
    ) -> AuthorizationRequest:
        """Threads' authorization window."""
        if not self.config.client_id:
            raise ProviderError("Threads is not configured (TIDINGS_THREADS_CLIENT_ID)")
        return AuthorizationRequest(
            url=with_query(
                f"{self.config.url('web')}/oauth/authorize",
                {
                    "client_id": self.config.client_id,
                    "redirect_uri": redirect_uri,
                    "scope": ",".join(self.scopes),
                    "response_type": "code",
                    "state": state,
                },
            )
        )

    async def _token_get(self, path: str, params: Mapping[str, str], *, purpose: str) -> TokenSet:
        try:
            response = await self.request(
                "GET", f"{self.config.url('graph')}/{path}", params=dict(params)
            )
        except (BadBodyError, RefreshTokenError) as exc:
            error = ConnectError if purpose == "exchange" else DisconnectedError
            raise error(
                f"Threads refused the token: {exc.message}",
                status_code=exc.status_code,
                excerpt=exc.excerpt,
            ) from exc
        return token_set(json_body(response))

    async def exchange_code(
        self,
        code: str,
        redirect_uri: str,
        code_verifier: str,
        custom_instance_details: Mapping[str, Any] | None = None,
    ) -> ConnectedAccount:
        """Code -> short-lived token -> long-lived token, then the profile."""
        short = await self.oauth_token(
            f"{self.config.url('graph')}/oauth/access_token",
            {
                "client_id": self.config.client_id or "",
                "client_secret": self.config.client_secret or "",
                "grant_type": "authorization_code",
                "redirect_uri": redirect_uri,
                "code": code,
            },
            purpose="exchange",
        )
        tokens = await self._token_get(
            "access_token",
            {
                "grant_type": "th_exchange_token",
                "client_secret": self.config.client_secret or "",
                "access_token": str(short.get("access_token") or ""),
            },
            purpose="exchange",
        )
        profile = await self._get(
            "me", tokens.access_token, {"fields": "id,username,name,threads_profile_picture_url"}
        )
        return ConnectedAccount(
            internal_id=str(profile["id"]),
            name=str(profile.get("name") or profile.get("username") or profile["id"]),
            username=str(profile.get("username") or "") or None,
            picture=profile.get("threads_profile_picture_url") or None,
            tokens=tokens,
        )

    async def refresh(self, credentials: ChannelCredentials) -> TokenSet:
        """Renew the long-lived token itself (there is no refresh token)."""
        return await self._token_get(
            "refresh_access_token",
            {"grant_type": "th_refresh_token", "access_token": credentials.access_token},
            purpose="refresh",
        )

    # ---- publishing -----------------------------------------------------------------------

    def _media_params(self, item: MediaItem) -> dict[str, Any]:
        if item.type == "video":
            params: dict[str, Any] = {"media_type": "VIDEO", "video_url": item.url}
        else:
            params = {"media_type": "IMAGE", "image_url": item.url}
        if item.alt:
            params["alt_text"] = item.alt
        return params

    async def _container(self, token: str, params: Mapping[str, Any]) -> str:
        # A container is not a post: creating it again after a lost answer is harmless.
        data = await self._post("me/threads", token, params, idempotent=True)
        return str(data["id"])

    async def _wait_ready(self, token: str, container: str) -> None:
        async def check() -> bool | None:
            data = await self._get(container, token, {"fields": "status,error_message"})
            status = data.get("status")
            if status in ("FINISHED", "PUBLISHED"):
                return True
            if status in ("ERROR", "EXPIRED"):
                raise BadBodyError(
                    f"Threads could not process the media: {data.get('error_message') or status}"
                )
            return None

        await poll(
            check,
            interval=self.container_poll_interval,
            give_up_after=self.container_poll_timeout,
            what="The Threads media",
        )

    async def _post_part(
        self,
        credentials: ChannelCredentials,
        part: PostPart,
        settings: ThreadsSettings,
        reply_to: str | None,
    ) -> PublishResult:
        token = credentials.access_token
        params: dict[str, Any] = {"text": part.content or None}
        if reply_to:
            params["reply_to_id"] = reply_to
        if settings.reply_control:
            params["reply_control"] = settings.reply_control
        if not part.media:
            params["media_type"] = "TEXT"
        elif len(part.media) == 1:
            params.update(self._media_params(part.media[0]))
        else:
            children = []
            for item in part.media:
                child = await self._container(
                    token, self._media_params(item) | {"is_carousel_item": True}
                )
                await self._wait_ready(token, child)
                children.append(child)
            params.update(media_type="CAROUSEL", children=",".join(children))
        container = await self._container(token, params)
        if part.media:
            await self._wait_ready(token, container)
        published = await self._post("me/threads_publish", token, {"creation_id": container})
        media_id = str(published["id"])
        try:
            link = (await self._get(media_id, token, {"fields": "permalink"})).get("permalink")
        except ProviderError:
            link = None  # published; a missing link is not worth failing it
        return PublishResult(id=media_id, url=str(link) if link else None)

    async def publish(
        self, credentials: ChannelCredentials, part: PostPart, settings: ThreadsSettings
    ) -> PublishResult:
        """Create the container(s), wait for processing, publish."""
        return await self._post_part(credentials, part, settings, None)

    async def reply(
        self,
        credentials: ChannelCredentials,
        parent: PublishResult,
        part: PostPart,
        settings: ThreadsSettings,
    ) -> PublishResult:
        """Publish ``part`` as a reply to ``parent``."""
        return await self._post_part(credentials, part, settings, parent.id)

    async def find_published(
        self,
        credentials: ChannelCredentials,
        part: PostPart,
        settings: ThreadsSettings,
        *,
        parent: PublishResult | None,
        since: datetime,
    ) -> PublishResult | None:
        """Look for the part among the account's threads since ``since`` (or among the
        parent's replies written by the account)."""
        token = credentials.access_token
        fields = "id,text,timestamp,permalink,username"
        if parent is None:
            data = await self._get(
                "me/threads",
                token,
                {
                    "fields": fields,
                    "since": int((since - CLOCK_SKEW).timestamp()),
                    "limit": 50,
                },
            )
        else:
            data = await self._get(f"{parent.id}/replies", token, {"fields": fields})
        for post in data.get("data") or []:
            if not recent(post.get("timestamp"), since):
                continue
            if credentials.profile and post.get("username") not in (None, credentials.profile):
                continue
            if (post.get("text") or "") != part.content:
                continue
            link = post.get("permalink")
            return PublishResult(id=str(post["id"]), url=str(link) if link else None)
        return None

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

from pydantic import BaseModel, Field

from tidings.channels.providers._common import (
    CLOCK_SKEW,
    authorization_request,
    recent,
    total_media_violations,
)
from tidings.channels.providers._graph import ContainerPublishing, LongLivedLogin
from tidings.channels.providers.base import (
    AuthorizationRequest,
    ChannelCredentials,
    ConnectedAccount,
    MediaItem,
    MediaRules,
    PostPart,
    ProviderSettings,
    PublishResult,
    RuleViolation,
)

MAX_CAROUSEL = 20


class ThreadsSettings(ProviderSettings):
    """Threads post settings."""

    reply_control: Literal["everyone", "accounts_you_follow", "mentioned_only"] | None = Field(
        default=None, description="Who may reply to the post"
    )


class ThreadsProvider(ContainerPublishing[ThreadsSettings], LongLivedLogin[ThreadsSettings]):
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
    platform = "Threads"
    grant_prefix = "th"
    code_host = "graph"
    container_status_field = "status"
    container_error_field = "error_message"
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

    # ---- connecting -----------------------------------------------------------------------

    async def authorization_url(
        self,
        redirect_uri: str,
        state: str,
        code_verifier: str,
        custom_instance: Mapping[str, Any] | None = None,
    ) -> AuthorizationRequest:
        """Threads' authorization window."""
        return authorization_request(
            self,
            f"{self.config.url('web')}/oauth/authorize",
            {
                "redirect_uri": redirect_uri,
                "scope": ",".join(self.scopes),
                "response_type": "code",
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
        """Code -> short-lived token -> long-lived token, then the profile."""
        tokens = await self._long_lived_tokens(code, redirect_uri)
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

    # ---- publishing -----------------------------------------------------------------------

    def _media_params(self, item: MediaItem) -> dict[str, Any]:
        if item.type == "video":
            params: dict[str, Any] = {"media_type": "VIDEO", "video_url": item.url}
        else:
            params = {"media_type": "IMAGE", "image_url": item.url}
        if item.alt:
            params["alt_text"] = item.alt
        return params

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
            children = await self._carousel_children(
                "me/threads",
                token,
                [self._media_params(item) | {"is_carousel_item": True} for item in part.media],
            )
            params.update(media_type="CAROUSEL", children=children)
        # A text-only container needs no processing.
        media_id = await self._publish_container("me/threads", token, params, wait=bool(part.media))
        return PublishResult(id=media_id, url=await self._permalink(media_id, token, "permalink"))

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

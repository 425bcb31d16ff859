"""Facebook pages, through the Graph API.

Facebook Login gives a long-lived user token, which only lists the user's pages
(``/me/accounts``); the picked page's own access token (which does not expire) publishes.
Posts: text (and a link) on ``/{page}/feed``; one photo on ``/{page}/photos``; several photos
uploaded unpublished and attached to a feed post (``attached_media``); a video on
``/{page}/videos``. Stories: ``/{page}/photo_stories`` and the three phases of
``/{page}/video_stories``. Replies are comments under the previous part (``/{id}/comments``).
Media are fetched by Facebook from their public URLs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, HttpUrl

from tidings.channels.providers._common import CLOCK_SKEW, recent
from tidings.channels.providers._graph import FacebookLogin, picture_of
from tidings.channels.providers.base import (
    BadBodyError,
    ChannelCredentials,
    Choice,
    ConnectedAccount,
    ConnectError,
    MediaItem,
    MediaRules,
    PostPart,
    ProviderError,
    ProviderSettings,
    PublishResult,
    RetryableError,
    RuleViolation,
    TokenSet,
    json_body,
    tool,
)

PAGE_FIELDS = "id,name,username,picture{url},access_token,tasks"


class FacebookSettings(ProviderSettings):
    """Facebook post settings."""

    post_type: Literal["post", "story"] = Field(
        default="post", description="A feed post, or a story (one photo or video)"
    )
    link: HttpUrl | None = Field(default=None, description="A link attached to a text post")


class FacebookProvider(FacebookLogin[FacebookSettings]):
    identifier = "facebook"
    display_name = "Facebook"
    env_fallback = None
    scopes = (
        "pages_show_list",
        "business_management",
        "pages_manage_posts",
        "pages_manage_engagement",
        "pages_read_engagement",
        "read_insights",
    )
    default_max_length = 63206
    media_rules = MediaRules(max_images=10, max_videos=1)
    settings_model = FacebookSettings
    can_check_published = True

    # ---- limits -------------------------------------------------------------------------

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
            parsed = FacebookSettings()
        if parts and parsed.post_type == "story" and len(parts[0].media) != 1:
            violations.append(
                RuleViolation(
                    code="story_media",
                    message="A Facebook story needs exactly one photo or video",
                    part_index=0,
                )
            )
        if parts and parsed.link and parts[0].media:
            violations.append(
                RuleViolation(
                    code="link_with_media",
                    message="A Facebook post carries either a link or media, not both",
                    part_index=0,
                )
            )
        for index, part in enumerate(parts[1:], start=1):
            if len(part.media) > 1 or any(m.type == "video" for m in part.media):
                violations.append(
                    RuleViolation(
                        code="comment_media",
                        message="A Facebook comment can carry one photo at most",
                        part_index=index,
                    )
                )
        return violations

    # ---- picking the page -----------------------------------------------------------------

    async def _pages(self, token: str) -> list[dict[str, Any]]:
        return await self._list("me/accounts", token, {"fields": PAGE_FIELDS, "limit": 100})

    async def list_choices(self, credentials: ChannelCredentials) -> list[Choice]:
        """The pages the user manages."""
        return [
            Choice(
                id=str(page["id"]),
                name=str(page.get("name") or page["id"]),
                picture=picture_of(page),
                username=page.get("username"),
            )
            for page in await self._pages(credentials.access_token)
        ]

    @tool("pages")
    async def pages_tool(
        self, credentials: ChannelCredentials, args: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """The pages the connecting user manages (id, name, picture)."""
        return [
            {"id": c.id, "name": c.name, "picture": c.picture}
            for c in await self.list_choices(credentials)
        ]

    async def select_choice(
        self, credentials: ChannelCredentials, choice_id: str
    ) -> ConnectedAccount:
        """Publish as page ``choice_id``, with the page's own token."""
        page = next(
            (p for p in await self._pages(credentials.access_token) if str(p["id"]) == choice_id),
            None,
        )
        if page is None:
            raise ConnectError(f"Facebook page {choice_id} is not one of yours")
        if not page.get("access_token"):
            raise ConnectError(f"Facebook gave no access to page {page.get('name')}")
        return ConnectedAccount(
            internal_id=str(page["id"]),
            name=str(page.get("name") or page["id"]),
            picture=picture_of(page),
            username=page.get("username"),
            tokens=TokenSet(access_token=str(page["access_token"])),
            in_between_steps=False,
        )

    # ---- publishing -----------------------------------------------------------------------

    async def _photo(self, page: str, token: str, item: MediaItem, **params: Any) -> dict[str, Any]:
        return await self._post(f"{page}/photos", token, {"url": item.url, **params})

    async def _feed_post(
        self, page: str, token: str, part: PostPart, settings: FacebookSettings
    ) -> PublishResult:
        images = [m for m in part.media if m.type == "image"]
        videos = [m for m in part.media if m.type == "video"]
        if videos:
            video = await self._post(
                f"{page}/videos",
                token,
                {"file_url": videos[0].url, "description": part.content or None},
            )
            video_id = str(video["id"])
            return PublishResult(
                id=video_id, url=await self._permalink(video_id, token, "permalink_url")
            )
        if len(images) == 1:
            photo = await self._photo(page, token, images[0], message=part.content or None)
            post_id = str(photo.get("post_id") or photo["id"])
        else:
            params: dict[str, Any] = {"message": part.content or None}
            if images:
                uploaded = [
                    # Unpublished photos post nothing on their own: safe to upload again.
                    await self._post(
                        f"{page}/photos",
                        token,
                        {"url": item.url, "published": False},
                        idempotent=True,
                    )
                    for item in images
                ]
                params["attached_media"] = [{"media_fbid": str(p["id"])} for p in uploaded]
            elif settings.link:
                params["link"] = str(settings.link)
            post_id = str((await self._post(f"{page}/feed", token, params))["id"])
        return PublishResult(id=post_id, url=await self._permalink(post_id, token, "permalink_url"))

    async def _story(self, page: str, token: str, item: MediaItem) -> PublishResult:
        if item.type == "image":
            photo = await self._post(
                f"{page}/photos", token, {"url": item.url, "published": False}, idempotent=True
            )
            done = await self._post(f"{page}/photo_stories", token, {"photo_id": str(photo["id"])})
        else:
            start = await self._post(
                f"{page}/video_stories", token, {"upload_phase": "start"}, idempotent=True
            )
            video_id, upload_url = str(start["video_id"]), str(start["upload_url"])
            # A hosted file: Facebook's upload endpoint fetches it from file_url.
            uploaded = json_body(
                await self.request(
                    "POST",
                    upload_url,
                    headers={"Authorization": f"OAuth {token}", "file_url": item.url},
                    idempotent=True,
                )
            )
            if not uploaded.get("success"):
                raise RetryableError("Facebook did not take the story video")
            done = await self._post(
                f"{page}/video_stories",
                token,
                {"upload_phase": "finish", "video_id": video_id},
            )
        if not done.get("success") and not done.get("post_id"):
            raise BadBodyError("Facebook did not publish the story")
        post_id = str(done.get("post_id") or "")
        return PublishResult(id=post_id, url=await self._permalink(post_id, token, "permalink_url"))

    async def publish(
        self, credentials: ChannelCredentials, part: PostPart, settings: FacebookSettings
    ) -> PublishResult:
        """Publish on the page's feed (or as a story)."""
        page, token = credentials.internal_id, credentials.access_token
        if settings.post_type == "story":
            if len(part.media) != 1:
                raise BadBodyError("A Facebook story needs exactly one photo or video")
            return await self._story(page, token, part.media[0])
        return await self._feed_post(page, token, part, settings)

    async def reply(
        self,
        credentials: ChannelCredentials,
        parent: PublishResult,
        part: PostPart,
        settings: FacebookSettings,
    ) -> PublishResult:
        """Comment under ``parent`` (the post, or the previous comment)."""
        token = credentials.access_token
        params: dict[str, Any] = {"message": part.content or None}
        if part.media:
            params["attachment_url"] = part.media[0].url
        comment = await self._post(f"{parent.id}/comments", token, params)
        comment_id = str(comment["id"])
        return PublishResult(
            id=comment_id, url=await self._permalink(comment_id, token, "permalink_url")
        )

    async def find_published(
        self,
        credentials: ChannelCredentials,
        part: PostPart,
        settings: FacebookSettings,
        *,
        parent: PublishResult | None,
        since: datetime,
    ) -> PublishResult | None:
        """Look for the part on the page's feed since ``since`` (or among the page's comments
        under the parent). Stories are not listed anywhere: they cannot be checked."""
        page, token = credentials.internal_id, credentials.access_token
        if parent is not None:
            data = await self._get(
                f"{parent.id}/comments",
                token,
                {
                    "fields": "id,message,created_time,from,permalink_url",
                    "order": "reverse_chronological",
                    "limit": 50,
                },
            )
            for comment in data.get("data") or []:
                author = (comment.get("from") or {}).get("id")
                if (
                    author == page
                    and recent(comment.get("created_time"), since)
                    and (comment.get("message") or "") == part.content
                ):
                    return PublishResult(
                        id=str(comment["id"]), url=comment.get("permalink_url") or None
                    )
            return None
        if settings.post_type == "story":
            raise ProviderError("Facebook does not list stories: cannot check")
        data = await self._get(
            f"{page}/feed",
            token,
            {
                "fields": "id,message,created_time,permalink_url",
                "since": int((since - CLOCK_SKEW).timestamp()),
                "limit": 25,
            },
        )
        for post in data.get("data") or []:
            if (
                recent(post.get("created_time"), since)
                and (post.get("message") or "") == part.content
            ):
                return PublishResult(id=str(post["id"]), url=post.get("permalink_url") or None)
        return None

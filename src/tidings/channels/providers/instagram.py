"""Instagram professional accounts, through the Instagram Graph API.

Two ways in, one way to publish:

* ``instagram``: Facebook Login; the user picks one of the Instagram accounts linked to their
  Facebook pages (``in_between_steps``), whose page token (it does not expire) publishes.
* ``instagram-standalone``: Instagram Login (no Facebook page needed); the short-lived token is
  traded for a long-lived one (``ig_exchange_token``, 60 days) renewed by ``ig_refresh_token``.

Publishing creates a media container (``POST /{ig-user}/media``) that Instagram fetches from
the media's public URL, waits until its ``status_code`` is ``FINISHED`` and publishes it
(``POST /{ig-user}/media_publish``). A carousel is a container of up to 10 item containers.
Videos are published as reels. Replies are comments: the first one on the post, the next ones
as replies to that comment (Instagram threads comments one level deep).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import httpx
import regex
from pydantic import BaseModel, Field, field_validator

from tidings.channels.providers._common import authorization_request, recent, total_media_violations
from tidings.channels.providers._graph import (
    ContainerPublishing,
    FacebookLogin,
    LongLivedLogin,
    graph_error,
)
from tidings.channels.providers.base import (
    AuthorizationRequest,
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
    response_excerpt,
    response_json,
)

MAX_CAROUSEL = 10
MAX_HASHTAGS = 30
MAX_MENTIONS = 20
HASHTAG = regex.compile(r"(?<![\w#&])#[\p{L}\p{N}_]+")
MENTION = regex.compile(r"(?<![\w@])@[A-Za-z0-9_.]+")
PUBLISH_LIMIT_SUBCODE = 2207042  # 25 API-published posts per 24 hours
IG_ACCOUNT_FIELDS = (
    "id,name,access_token,instagram_business_account{id,username,name,profile_picture_url}"
)


class InstagramSettings(ProviderSettings):
    """Instagram post settings."""

    post_type: Literal["post", "story"] = Field(
        default="post", description="A feed post / reel / carousel, or a story"
    )
    collaborators: list[str] = Field(
        default_factory=list, max_length=3, description="Usernames invited as collaborators"
    )

    @field_validator("collaborators", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        # Postiz sends [{"label": "name"}, ...].
        if isinstance(value, list):
            return [
                str(v.get("label") or v.get("value") or "") if isinstance(v, dict) else v
                for v in value
            ]
        return value


class InstagramPublishing(ContainerPublishing[InstagramSettings]):
    """Limits, errors, publishing and comments shared by both Instagram providers."""

    default_max_length = 2200
    media_rules = MediaRules(
        max_images=MAX_CAROUSEL,
        max_videos=MAX_CAROUSEL,
        allow_mixed=True,
        min_media=1,
        replies_allow_media=False,
        # The content publishing API takes JPEG images only.
        image_mime_types=frozenset({"image/jpeg"}),
        video_mime_types=frozenset({"video/mp4", "video/quicktime"}),
    )
    settings_model = InstagramSettings
    can_check_published = True
    platform = "Instagram"
    container_status_field = "status_code"
    container_error_field = "status"
    container_poll_interval = 3.0
    container_poll_timeout = 300.0

    # ---- limits and errors ----------------------------------------------------------------

    def validate(
        self,
        parts: Sequence[PostPart],
        settings: Mapping[str, Any] | BaseModel | None = None,
        credentials: ChannelCredentials | None = None,
    ) -> list[RuleViolation]:
        violations = super().validate(parts, settings, credentials)
        violations.extend(
            total_media_violations(parts, MAX_CAROUSEL, self.display_name, first_only=True)
        )
        try:
            story = self.parse_settings(settings).post_type == "story"
        except ValueError:
            story = False
        if parts and story and len(parts[0].media) != 1:
            violations.append(
                RuleViolation(
                    code="story_media",
                    message="An Instagram story is exactly one photo or video",
                    part_index=0,
                )
            )
        for index, part in enumerate(parts):
            for pattern, limit, what in (
                (HASHTAG, MAX_HASHTAGS, "hashtags"),
                (MENTION, MAX_MENTIONS, "mentions"),
            ):
                count = len(pattern.findall(part.content))
                if count > limit:
                    violations.append(
                        RuleViolation(
                            code=f"too_many_{what}",
                            message=f"Instagram allows {limit} {what}; this part has {count}",
                            part_index=index,
                        )
                    )
        return violations

    def classify_error(self, response: httpx.Response) -> ProviderError | None:
        error = graph_error(response, self.display_name)
        if isinstance(error, BadBodyError):
            body = response_json(response)
            detail = body.get("error") if isinstance(body, dict) else None
            detail = detail if isinstance(detail, dict) else {}
            if detail.get("code") == 9 or detail.get("error_subcode") == PUBLISH_LIMIT_SUBCODE:
                # The daily publishing quota: it frees up within 24 hours.
                return RetryableError(
                    error.message,
                    status_code=response.status_code,
                    excerpt=response_excerpt(response),
                    retry_after=3600.0,
                )
        return error

    # ---- publishing -----------------------------------------------------------------------

    def _ig_user(self, credentials: ChannelCredentials) -> str:
        return credentials.internal_id

    @staticmethod
    def _media_params(item: MediaItem, *, carousel_item: bool = False) -> dict[str, Any]:
        if item.type == "video":
            params: dict[str, Any] = {
                "media_type": "VIDEO" if carousel_item else "REELS",
                "video_url": item.url,
            }
            if not carousel_item and item.thumbnail_url:
                params["cover_url"] = item.thumbnail_url
        else:
            params = {"image_url": item.url}
            if item.alt:
                params["alt_text"] = item.alt
        if carousel_item:
            params["is_carousel_item"] = True
        return params

    async def publish(
        self, credentials: ChannelCredentials, part: PostPart, settings: InstagramSettings
    ) -> PublishResult:
        """Create the container(s), wait until Instagram has processed them, publish."""
        if not part.media:
            raise BadBodyError("An Instagram post needs at least one photo or video")
        ig, token = self._ig_user(credentials), credentials.access_token
        if settings.post_type == "story":
            item = part.media[0]
            key = "video_url" if item.type == "video" else "image_url"
            params: dict[str, Any] = {"media_type": "STORIES", key: item.url}
        elif len(part.media) == 1:
            params = self._media_params(part.media[0])
            if part.media[0].type == "video":
                params["share_to_feed"] = True
        else:
            children = await self._carousel_children(
                f"{ig}/media",
                token,
                [self._media_params(item, carousel_item=True) for item in part.media],
            )
            params = {"media_type": "CAROUSEL", "children": children}
        if settings.post_type != "story":
            if part.content:
                params["caption"] = part.content
            if settings.collaborators:
                params["collaborators"] = settings.collaborators
        media_id = await self._publish_container(f"{ig}/media", token, params)
        return PublishResult(
            id=media_id,
            url=await self._permalink(media_id, token, "permalink"),
            data={"kind": "media"},
        )

    async def _thread_root(self, token: str, parent: PublishResult) -> str | None:
        """The top-level comment ``parent`` belongs to; None when ``parent`` is the post."""
        kind = parent.data.get("kind")
        if kind == "media":
            return None
        if kind == "comment":
            return str(parent.data.get("root") or parent.id)
        # Nothing stored: ask. Comments have a ``parent_id`` field (replies) or not (top
        # level); media answer that the field does not exist.
        try:
            data = await self._get(parent.id, token, {"fields": "id,parent_id"})
        except BadBodyError:
            return None
        return str(data.get("parent_id") or parent.id)

    async def reply(
        self,
        credentials: ChannelCredentials,
        parent: PublishResult,
        part: PostPart,
        settings: InstagramSettings,
    ) -> PublishResult:
        """Comment on the post, or reply to the comment thread of ``parent``."""
        token = credentials.access_token
        root = await self._thread_root(token, parent)
        if root is None:
            data = await self._post(f"{parent.id}/comments", token, {"message": part.content})
        else:
            data = await self._post(f"{root}/replies", token, {"message": part.content})
        comment_id = str(data["id"])
        return PublishResult(
            id=comment_id,
            url=parent.url,
            data={"kind": "comment", "root": root or comment_id},
        )

    async def find_published(
        self,
        credentials: ChannelCredentials,
        part: PostPart,
        settings: InstagramSettings,
        *,
        parent: PublishResult | None,
        since: datetime,
    ) -> PublishResult | None:
        """Look for the part among the account's latest media since ``since`` (same caption),
        or among its own comments in the parent's comment thread. Stories are not listed
        with the media: they cannot be checked."""
        token = credentials.access_token
        if parent is None:
            if settings.post_type == "story":
                raise ProviderError("Instagram stories are not listed: cannot check")
            data = await self._get(
                f"{self._ig_user(credentials)}/media",
                token,
                {"fields": "id,caption,timestamp,permalink", "limit": 25},
            )
            for media in data.get("data") or []:
                if (
                    recent(media.get("timestamp"), since)
                    and (media.get("caption") or "") == part.content
                ):
                    link = media.get("permalink")
                    return PublishResult(
                        id=str(media["id"]),
                        url=str(link) if link else None,
                        data={"kind": "media"},
                    )
            return None
        root = await self._thread_root(token, parent)
        edge = f"{parent.id}/comments" if root is None else f"{root}/replies"
        data = await self._get(edge, token, {"fields": "id,text,timestamp,username"})
        for comment in data.get("data") or []:
            if credentials.profile and comment.get("username") not in (None, credentials.profile):
                continue
            if recent(comment.get("timestamp"), since) and comment.get("text") == part.content:
                comment_id = str(comment["id"])
                return PublishResult(
                    id=comment_id,
                    url=parent.url,
                    data={"kind": "comment", "root": root or comment_id},
                )
        return None


class InstagramProvider(InstagramPublishing, FacebookLogin[InstagramSettings]):
    identifier = "instagram"
    display_name = "Instagram"
    scopes = (
        "instagram_basic",
        "instagram_content_publish",
        "instagram_manage_comments",
        "pages_show_list",
        "pages_read_engagement",
        "business_management",
    )

    async def _accounts(self, token: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(page, Instagram account) for every page with a linked professional account."""
        pages = await self._list("me/accounts", token, {"fields": IG_ACCOUNT_FIELDS, "limit": 100})
        return [
            (page, page["instagram_business_account"])
            for page in pages
            if isinstance(page.get("instagram_business_account"), dict)
        ]

    async def list_choices(self, credentials: ChannelCredentials) -> list[Choice]:
        """The Instagram accounts linked to the user's pages."""
        return [
            Choice(
                id=str(ig["id"]),
                name=str(ig.get("name") or ig.get("username") or ig["id"]),
                picture=ig.get("profile_picture_url"),
                username=ig.get("username"),
            )
            for _, ig in await self._accounts(credentials.access_token)
        ]

    async def select_choice(
        self, credentials: ChannelCredentials, choice_id: str
    ) -> ConnectedAccount:
        """Publish as Instagram account ``choice_id``, with its page's token."""
        for page, ig in await self._accounts(credentials.access_token):
            if str(ig["id"]) == choice_id:
                if not page.get("access_token"):
                    raise ConnectError(f"Facebook gave no access to page {page.get('name')}")
                return ConnectedAccount(
                    internal_id=choice_id,
                    name=str(ig.get("name") or ig.get("username") or choice_id),
                    picture=ig.get("profile_picture_url"),
                    username=ig.get("username"),
                    tokens=TokenSet(access_token=str(page["access_token"])),
                    custom_instance_details={"page_id": str(page["id"])},
                    in_between_steps=False,
                )
        raise ConnectError(
            f"Instagram account {choice_id} is not linked to any of your Facebook pages"
        )


class InstagramStandaloneProvider(InstagramPublishing, LongLivedLogin[InstagramSettings]):
    identifier = "instagram-standalone"
    display_name = "Instagram (standalone)"
    scopes = (
        "instagram_business_basic",
        "instagram_business_content_publish",
        "instagram_business_manage_comments",
    )
    api_version = "v21.0"
    grant_prefix = "ig"
    code_host = "api"
    default_urls = {
        "graph": "https://graph.instagram.com",
        "api": "https://api.instagram.com",
        "web": "https://www.instagram.com",
    }

    async def authorization_url(
        self,
        redirect_uri: str,
        state: str,
        code_verifier: str,
        custom_instance: Mapping[str, Any] | None = None,
    ) -> AuthorizationRequest:
        """Instagram Login's authorization window."""
        return authorization_request(
            self,
            f"{self.config.url('web')}/oauth/authorize",
            {
                "redirect_uri": redirect_uri,
                "response_type": "code",
                "scope": ",".join(self.scopes),
                "state": state,
            },
            name=self.platform,
        )

    async def exchange_code(
        self,
        code: str,
        redirect_uri: str,
        code_verifier: str,
        custom_instance_details: Mapping[str, Any] | None = None,
    ) -> ConnectedAccount:
        """Code -> short-lived token -> long-lived token, then the professional account."""
        tokens = await self._long_lived_tokens(code, redirect_uri)
        me = await self._get(
            "me", tokens.access_token, {"fields": "user_id,username,name,profile_picture_url"}
        )
        user_id = str(me.get("user_id") or me["id"])
        return ConnectedAccount(
            internal_id=user_id,
            name=str(me.get("name") or me.get("username") or user_id),
            username=me.get("username"),
            picture=me.get("profile_picture_url"),
            tokens=tokens,
        )

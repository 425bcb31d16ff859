"""Glue between the Public API's Postiz wire shapes and the domain services.

Every function takes the API key's :data:`~tidings.core.tenancy.OrgId` and calls the channels,
posts, media or notifications services, which own the rules, the transactions (they flush; the
request commits) and the tenant scoping (another organization's row is a 404). What is added
here is only the translation: Postiz field names and answers, dotted field paths in errors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.channels import customers as customers_service
from tidings.channels import service as channels
from tidings.core.enums import CreationMethod
from tidings.core.errors import BadRequest, NotFound, TidingsError
from tidings.core.tenancy import OrgId, owned_by, select_owned
from tidings.notifications.models import Notifications
from tidings.orgs.models import Customer
from tidings.posts import service as posts
from tidings.posts import slots
from tidings.posts.schemas import CreatedPost, CreatePostsRequest, PostList
from tidings.public_api.schemas import (
    CreatePostsIn,
    CustomerRef,
    IntegrationOut,
    IntegrationSettings,
    IntegrationSettingsOut,
    NotificationItem,
    NotificationsPage,
)

#: Notifications per page, as Postiz pages them.
NOTIFICATIONS_PER_PAGE = 100
#: Query parameters of ``/social/{provider}`` that are not the provider's instance inputs.
_SOCIAL_RESERVED = frozenset({"refresh", "customer"})
_INDEX = re.compile(r"\[(\d+)\]")


def dotted(field: str) -> str:
    """``posts[0].value[1].content`` -> ``posts.0.value.1.content`` (the validation errors'
    style, so every error of the Public API names fields one way)."""
    return _INDEX.sub(r".\1", field)


def _dotted_error(exc: TidingsError) -> TidingsError:
    if exc.field:
        exc.field = dotted(exc.field)
    violations = exc.extra.get("violations")
    if isinstance(violations, list):
        for item in violations:
            if isinstance(item, dict) and isinstance(item.get("field"), str):
                item["field"] = dotted(item["field"])
    return exc


# ---- channels ------------------------------------------------------------------------------


def integration_out(channel: Any) -> IntegrationOut:
    """A channel as ``GET /integrations`` lists it."""
    customer = channels.customer_of(channel)
    return IntegrationOut(
        id=channel.id,
        name=channel.name,
        identifier=channel.provider_identifier,
        picture=channel.picture,
        disabled=channel.disabled,
        profile=channel.profile,
        customer=CustomerRef(id=customer.id, name=customer.name) if customer else None,
    )


async def list_integrations(
    session: AsyncSession, org_id: OrgId, *, customer_id: str | None = None
) -> list[IntegrationOut]:
    """The organization's channels, optionally only those of one customer."""
    rows = await channels.list_channels(session, org_id, customer_id=customer_id)
    return [integration_out(row) for row in rows]


def rules_text(display_name: str, rules: Mapping[str, Any]) -> str:
    """A channel's rules in words, for people and agents writing posts for it."""
    media = rules["media_rules"]
    lines = [f"{display_name}: at most {rules['max_length']} characters per post."]
    if rules["supports_replies"]:
        lines.append("Comments (thread replies) are supported: every value after the first.")
    else:
        lines.append("Only one value per post: comments/thread replies are not supported.")
    kinds = []
    if media["max_images"]:
        kinds.append(f"up to {media['max_images']} image(s)")
    if media["max_videos"]:
        kinds.append(f"up to {media['max_videos']} video(s)")
    if kinds:
        mixed = "" if media["allow_mixed"] else " (not both in one post)"
        lines.append(f"Media per post: {' or '.join(kinds)}{mixed}.")
    else:
        lines.append("No media.")
    if media["min_media"]:
        lines.append(f"The first post needs at least {media['min_media']} media file(s).")
    if kinds and not media["replies_allow_media"]:
        lines.append("Comments must be text only.")
    types = media["image_mime_types"] + media["video_mime_types"]
    if types and kinds:
        lines.append(f"Accepted types: {', '.join(types)}.")
    return " ".join(lines)


async def integration_settings(
    session: AsyncSession, org_id: OrgId, channel_id: str
) -> IntegrationSettingsOut:
    """What a post must respect on a channel: rules in words, max length, settings schema,
    tool names."""
    channel = await channels.get_channel(session, org_id, channel_id)
    try:
        cls = channels.provider_class(channel.provider_identifier)
    except NotFound:
        # A channel of a provider this server no longer has: nothing to respect, nothing to run.
        empty = IntegrationSettings(rules="", max_length=0, settings={}, tools=[])
        return IntegrationSettingsOut(output=empty)
    rules = await channels.channel_rules(channel)
    return IntegrationSettingsOut(
        output=IntegrationSettings(
            rules=rules_text(cls.display_name, rules),
            max_length=rules["max_length"],
            settings=rules["settings_schema"],
            tools=rules["tools"],
        )
    )


async def trigger_tool(
    session: AsyncSession, org_id: OrgId, channel_id: str, method: str, data: Mapping[str, Any]
) -> Any:
    """Run the provider tool ``method`` of a channel; 400 naming ``methodName`` when the
    channel's provider has no such tool."""
    channel = await channels.get_channel(session, org_id, channel_id)
    try:
        cls = channels.provider_class(channel.provider_identifier)
    except NotFound as exc:
        raise BadRequest(
            f"the channel's provider {channel.provider_identifier!r} has no tools",
            field="methodName",
        ) from exc
    if method not in cls.tool_names():
        known = ", ".join(cls.tool_names()) or "none"
        raise BadRequest(
            f"{cls.display_name} has no tool {method!r} (tools: {known})", field="methodName"
        )
    try:
        return await channels.run_tool(session, org_id, channel_id, method, data)
    except TidingsError as exc:
        if exc.field == "args":
            exc.field = "data"
        raise


async def connect_url(
    session: AsyncSession, org_id: OrgId, provider: str, query: Mapping[str, str]
) -> str:
    """The URL that starts connecting a channel of ``provider`` (OAuth). Query parameters other
    than ``refresh``/``customer`` are the provider's instance inputs (e.g. Mastodon's
    ``instance_url``); ``customer`` names the customer the channel joins."""
    instance = {k: v for k, v in query.items() if k not in _SOCIAL_RESERVED}
    start = await channels.start_connect(
        session,
        org_id,
        provider,
        user_id=None,
        instance=instance,
        customer=query.get("customer") or None,
    )
    return start.url


async def list_groups(session: AsyncSession, org_id: OrgId) -> list[CustomerRef]:
    """The organization's customers (Postiz calls them groups)."""
    rows: list[Customer] = await customers_service.list_customers(session, org_id)
    return [CustomerRef(id=row.id, name=row.name) for row in rows]


# ---- posts ---------------------------------------------------------------------------------


def posts_request(body: CreatePostsIn) -> CreatePostsRequest:
    """The posts service's request for a Postiz ``POST /posts`` body."""
    return CreatePostsRequest(
        type=body.type,
        date=body.date,
        short_link=body.short_link,
        tags=body.tags,
        inter=body.inter,
        posts=body.posts,
        republish=body.republish,
    )


async def create_posts(
    session: AsyncSession, org_id: OrgId, body: CreatePostsIn
) -> list[CreatedPost]:
    """Validate (per channel, before storing anything) and store a Postiz submission, recorded
    as created through the API (or the CLI when the body says so). One ``{postId,
    integration}`` per channel."""
    method = CreationMethod.CLI if body.creation_method == "CLI" else CreationMethod.API
    try:
        result = await posts.create_posts(
            session, org_id, posts_request(body), creation_method=method
        )
    except TidingsError as exc:
        raise _dotted_error(exc) from None
    return result.posts


async def list_posts(
    session: AsyncSession,
    org_id: OrgId,
    *,
    start: datetime,
    end: datetime,
    customer_id: str | None = None,
) -> PostList:
    """Posts (thread heads) published or planned in ``[start, end)``, recurring posts expanded
    into their occurrences."""
    return await posts.list_posts(session, org_id, start=start, end=end, customer_id=customer_id)


async def change_settings(
    session: AsyncSession, org_id: OrgId, post_id: str, settings: dict[str, Any]
) -> Any:
    """Merge provider settings into a queued or draft post."""
    try:
        return await posts.update_settings(session, org_id, post_id, settings)
    except TidingsError as exc:
        raise _dotted_error(exc) from None


async def change_status(session: AsyncSession, org_id: OrgId, post_id: str, status: str) -> Any:
    """Move a post's group between draft and queued."""
    try:
        return await posts.change_status(session, org_id, post_id, status)
    except TidingsError as exc:
        raise _dotted_error(exc) from None


async def find_slot(session: AsyncSession, org_id: OrgId, channel_id: str) -> datetime:
    """The channel's next free posting slot."""
    return await slots.find_slot(session, org_id, channel_id)


# ---- notifications -------------------------------------------------------------------------


async def notifications_page(session: AsyncSession, org_id: OrgId, page: int) -> NotificationsPage:
    """Page ``page`` (from 0) of the organization's notifications, newest first, 100 a page."""
    total = int(
        (
            await session.execute(
                select(func.count(Notifications.id)).where(
                    owned_by(Notifications, org_id), Notifications.deleted_at.is_(None)
                )
            )
        ).scalar_one()
    )
    rows = await session.execute(
        select_owned(Notifications, org_id)
        .order_by(Notifications.created_at.desc(), Notifications.id.desc())
        .offset(page * NOTIFICATIONS_PER_PAGE)
        .limit(NOTIFICATIONS_PER_PAGE)
    )
    items = [
        NotificationItem(id=n.id, content=n.content, link=n.link, created_at=n.created_at)
        for n in rows.scalars()
    ]
    return NotificationsPage(
        notifications=items,
        total=total,
        page=page,
        limit=NOTIFICATIONS_PER_PAGE,
        has_more=page * NOTIFICATIONS_PER_PAGE + len(items) < total,
    )

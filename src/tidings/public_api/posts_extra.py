"""Public API reads about published posts that the posts service does not offer: content to
connect a post published without a platform id (``/posts/{id}/missing``) and analytics.

Built on the posts models and the providers; nothing here writes (connecting the id found is
``PUT /posts/{id}/release-id``, which the posts service does).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.channels.providers import PostPart, ProviderError, PublishResult
from tidings.channels.service import (
    connect_failure,
    credentials_of,
    get_channel,
    provider_class,
    provider_for,
)
from tidings.core.enums import State
from tidings.core.errors import NotFound
from tidings.core.tenancy import OrgId, select_owned
from tidings.posts.models import Post
from tidings.public_api.schemas import AnalyticsOut, MissingItem, MissingOut

logger = logging.getLogger("tidings.public_api")

#: A release id Postiz stores for "published, but the platform gave no id".
MISSING_RELEASE_ID = "missing"
#: How long before its publish date a post may have appeared on the platform (clock skew, a
#: manual post by the user).
LOOKBACK = timedelta(hours=1)


def has_platform_id(post: Post) -> bool:
    """Whether the post is connected to its platform content."""
    return bool(post.release_id) and post.release_id != MISSING_RELEASE_ID


async def _post(session: AsyncSession, org_id: OrgId, post_id: str) -> Post:
    stmt = select_owned(Post, org_id).where(Post.id == post_id)
    post = (await session.execute(stmt)).scalar_one_or_none()
    if post is None:
        raise NotFound("post not found", field="id")
    return post


async def missing_content(session: AsyncSession, org_id: OrgId, post_id: str) -> list[MissingItem]:
    """Platform content that may be this post, for a post published (or failed with an unknown
    outcome) without a platform id: the channel's matching content found by the provider's
    published-post lookup, as ``[{id, url}]``. Empty when the post has its id already, was not
    published, or the provider cannot look content up."""
    post = await _post(session, org_id, post_id)
    if has_platform_id(post) or post.state not in (State.PUBLISHED, State.ERROR):
        return []
    channel = await get_channel(session, org_id, post.integration_id)
    cls = provider_class(channel.provider_identifier)
    if not cls.can_check_published:
        return []
    parent: PublishResult | None = None
    if post.parent_post_id is not None:
        parent_row = await _post(session, org_id, post.parent_post_id)
        if not has_platform_id(parent_row):
            return []
        assert parent_row.release_id is not None
        parent = PublishResult(id=parent_row.release_id, url=parent_row.release_url)
    provider = provider_for(channel)
    try:
        settings = provider.parse_settings(post.settings or {})
    except ValueError:
        settings = provider.parse_settings({})
    try:
        found = await provider.find_published(
            credentials_of(channel),
            PostPart(content=post.content),
            settings,
            parent=parent,
            since=post.publish_date - LOOKBACK,
        )
    except ProviderError as exc:
        raise connect_failure(exc, field="id") from exc
    if found is None or not found.url:
        return []
    return [MissingItem(id=found.id, url=found.url)]


async def channel_analytics(
    session: AsyncSession, org_id: OrgId, channel_id: str, days: int
) -> list[AnalyticsOut]:
    """Analytics of a channel over the last ``days`` days. No provider of Tidings reads
    platform statistics yet, so this is ``[]`` for every existing channel (404 for others)."""
    await get_channel(session, org_id, channel_id)
    return []


async def post_analytics(
    session: AsyncSession, org_id: OrgId, post_id: str, days: int
) -> list[AnalyticsOut] | MissingOut:
    """Analytics of a post: ``{missing: true}`` when it has no platform id (not published yet,
    or published without one: see :func:`missing_content`), else its statistics -- ``[]``, as
    no provider of Tidings reads platform statistics yet."""
    post = await _post(session, org_id, post_id)
    if not has_platform_id(post):
        return MissingOut()
    return []

"""Turning a feed item into posts, through the posts service (so every post gets its publish
job, its ``post.created`` event and the channel's validation in the caller's transaction)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.channels.models import Integration
from tidings.core.enums import CreationMethod
from tidings.core.tenancy import OrgId, owned_by
from tidings.posts import service as posts
from tidings.posts.models import Post
from tidings.posts.schemas import ChannelPostsIn, ChannelRef, CreatePostsRequest, PartIn
from tidings.posts.timeplan import posting_time_slots

#: How far ahead a free slot is looked for.
SLOT_HORIZON = timedelta(days=366)


async def next_free_slot(
    session: AsyncSession, org_id: OrgId, channel: Integration, *, after: datetime | None = None
) -> datetime | None:
    """The channel's next posting time (its ``posting_times``) with no live post on it yet;
    None when the channel has no posting times."""
    start = after or posts.now_utc()
    horizon = start + SLOT_HORIZON
    taken = set(
        (
            await session.execute(
                select(Post.publish_date).where(
                    owned_by(Post, org_id),
                    Post.integration_id == channel.id,
                    Post.parent_post_id.is_(None),
                    Post.deleted_at.is_(None),
                    Post.publish_date > start,
                    Post.publish_date <= horizon,
                )
            )
        ).scalars()
    )
    for slot in posting_time_slots(channel.posting_times or [], start):
        if slot > horizon:
            return None
        if slot not in taken:
            return slot
    return None


def _entry(channel: Integration, content: str) -> ChannelPostsIn:
    return ChannelPostsIn(
        integration=ChannelRef(id=channel.id), value=[PartIn(content=content)], settings={}
    )


async def create_posts(
    session: AsyncSession,
    org_id: OrgId,
    *,
    channels: list[Integration],
    contents: dict[str, str],
    on_slot: bool,
) -> int:
    """Create one post per channel for a feed item; returns how many were created.

    Drafts form one group (one submission across the channels, reviewed together). With
    ``on_slot`` each channel's post is scheduled into that channel's next free slot (its own
    group, as the dates differ); a channel without posting times gets a draft instead.
    Raises the posts service's errors (e.g. a channel rule) unchanged.
    """
    drafts: list[Integration] = []
    created = 0
    for channel in channels:
        slot = await next_free_slot(session, org_id, channel) if on_slot else None
        if slot is None:
            drafts.append(channel)
            continue
        request = CreatePostsRequest(
            type="schedule", date=slot, posts=[_entry(channel, contents[channel.id])]
        )
        result = await posts.create_posts(
            session, org_id, request, creation_method=CreationMethod.AUTOPOST
        )
        created += len(result.posts)
    if drafts:
        request = CreatePostsRequest(
            type="draft", posts=[_entry(channel, contents[channel.id]) for channel in drafts]
        )
        result = await posts.create_posts(
            session, org_id, request, creation_method=CreationMethod.AUTOPOST
        )
        created += len(result.posts)
    return created

"""Turning a feed item into posts, through the posts service (so every post gets its publish
job, its ``post.created`` event and the channel's validation in the caller's transaction)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.channels.models import Integration
from tidings.core.enums import CreationMethod
from tidings.core.tenancy import OrgId
from tidings.posts import service as posts
from tidings.posts.schemas import ChannelPostsIn, ChannelRef, CreatePostsRequest, PartIn
from tidings.posts.slots import find_slot


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
    ``on_slot`` each channel's post is scheduled into that channel's next free slot (the posts
    service's find-slot: its posting times, skipping taken minutes), each in its own group as
    the dates differ. Raises the posts service's errors (a channel rule, no free slot within a
    year) unchanged.
    """
    drafts: list[Integration] = []
    created = 0
    for channel in channels:
        if not on_slot:
            drafts.append(channel)
            continue
        slot = await find_slot(session, org_id, channel.id)
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

"""Isolation-test registrations of the posts routes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.isolation_fixtures import OwnerContext, isolation_factory
from tests.posts.factories import make_channel, make_post
from tidings.posts.models import Comments, Sets, Signatures, Tags


async def _post(ctx: OwnerContext) -> tuple[str, str]:
    channel = await make_channel(ctx.db, ctx.org_id, name="Isolated posts")
    post = await make_post(
        ctx.db, ctx.org_id, channel.id, publish_date=datetime.now(UTC) + timedelta(days=2)
    )
    return post.id, post.group


@isolation_factory("post_id", prefix="/api/posts")
async def post_of_a(ctx: OwnerContext) -> dict[str, str]:
    post_id, _ = await _post(ctx)
    return {"post_id": post_id}


@isolation_factory("group", prefix="/api/posts")
async def group_of_a(ctx: OwnerContext) -> dict[str, str]:
    _, group = await _post(ctx)
    return {"group": group}


@isolation_factory("tag_id", prefix="/api/posts")
async def tag_of_a(ctx: OwnerContext) -> dict[str, str]:
    tag = Tags(org_id=ctx.org_id, name="isolated", color="#123456")
    ctx.db.add(tag)
    await ctx.db.flush()
    return {"tag_id": tag.id}


@isolation_factory("signature_id", prefix="/api/posts")
async def signature_of_a(ctx: OwnerContext) -> dict[str, str]:
    row = Signatures(organization_id=ctx.org_id, content="-- A")
    ctx.db.add(row)
    await ctx.db.flush()
    return {"signature_id": row.id}


@isolation_factory("set_id", prefix="/api/posts")
async def set_of_a(ctx: OwnerContext) -> dict[str, str]:
    row = Sets(
        organization_id=ctx.org_id,
        name="A's mornings",
        times=[{"day": 1, "time": "09:00"}],
        timezone="Europe/Berlin",
    )
    ctx.db.add(row)
    await ctx.db.flush()
    return {"set_id": row.id}


@isolation_factory("comment_id", prefix="/api/posts")
async def comment_of_a(ctx: OwnerContext) -> dict[str, str]:
    post_id, _ = await _post(ctx)
    row = Comments(organization_id=ctx.org_id, post_id=post_id, user_id=ctx.user_id, content="hi")
    ctx.db.add(row)
    await ctx.db.flush()
    return {"comment_id": row.id}

"""Isolation-test registrations of the Public API routes under /api/public/v1 (the global test
walks /api/ routes; the same handlers also serve /public/v1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.channels.factories import make_channel
from tests.isolation_fixtures import (
    OwnerContext,
    isolation_body,
    isolation_factory,
    not_tenant_scoped,
)
from tidings.core.enums import State
from tidings.posts.models import Post

P = "/api/public/v1"

not_tenant_scoped(f"{P}/social/{{provider}}", "a provider identifier, not a row")


@isolation_factory("id", "integrationId", prefix=f"{P}/")
async def public_channel_of_a(ctx: OwnerContext) -> dict[str, str]:
    channel = await make_channel(ctx.db, ctx.org_id, provider="reddit", name="Public API channel")
    return {"id": channel.id, "integrationId": channel.id}


@isolation_factory("id", "postId", "group", prefix=f"{P}/posts")
async def public_post_of_a(ctx: OwnerContext) -> dict[str, str]:
    channel = await make_channel(ctx.db, ctx.org_id, provider="mastodon", name="Public API posts")
    post = Post(
        organization_id=ctx.org_id,
        integration_id=channel.id,
        group=f"isolation-{channel.id}",
        content="A's plans",
        publish_date=datetime.now(UTC) + timedelta(days=2),
        state=State.QUEUE,
    )
    ctx.db.add(post)
    await ctx.db.flush()
    return {"id": post.id, "postId": post.id, "group": post.group}


@isolation_factory("postId", prefix=f"{P}/analytics/post")
async def public_analytics_post_of_a(ctx: OwnerContext) -> dict[str, str]:
    return {"postId": (await public_post_of_a(ctx))["postId"]}


@isolation_body("POST", f"{P}/integration-trigger/{{id}}")
def trigger(ids: dict[str, str]) -> dict[str, object]:
    return {"methodName": "flairs", "data": {"subreddit": "python"}}


@isolation_body("PUT", f"{P}/posts/{{id}}/settings")
def settings(ids: dict[str, str]) -> dict[str, object]:
    return {"settings": {}}


@isolation_body("PUT", f"{P}/posts/{{id}}/status")
def status(ids: dict[str, str]) -> dict[str, object]:
    return {"status": "draft"}


@isolation_body("PUT", f"{P}/posts/{{id}}/release-id")
def release_id(ids: dict[str, str]) -> dict[str, object]:
    return {"releaseId": "taken-over"}

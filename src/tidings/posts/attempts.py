"""A post's publish attempts: the engine's audit trail, read by the API and the web app."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.core.tenancy import OrgId, get_owned, select_owned
from tidings.posts.models import Post, PostAttempt


async def list_attempts(session: AsyncSession, org_id: OrgId, post_id: str) -> list[PostAttempt]:
    """The publish attempts of a post of ``org_id``, oldest first (another org's post: 404)."""
    await get_owned(session, Post, post_id, org_id, what="post")
    rows = await session.execute(
        select_owned(PostAttempt, org_id)
        .where(PostAttempt.post_id == post_id)
        .order_by(PostAttempt.attempt)
    )
    return list(rows.scalars())

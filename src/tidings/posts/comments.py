"""Team comments on a post."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.auth import Caller
from tidings.core.errors import Forbidden
from tidings.core.tenancy import OrgId, get_owned, select_owned
from tidings.posts.models import Comments, Post


async def list_comments(session: AsyncSession, org_id: OrgId, post_id: str) -> list[Comments]:
    """Comments of a post, oldest first."""
    await get_owned(session, Post, post_id, org_id, what="post")
    rows = await session.execute(
        select_owned(Comments, org_id)
        .where(Comments.post_id == post_id)
        .order_by(Comments.created_at, Comments.id)
    )
    return list(rows.scalars())


async def add_comment(
    session: AsyncSession, caller: Caller, post_id: str, content: str
) -> Comments:
    """A new comment by the caller on a post of their organization."""
    if caller.user_id is None:
        raise Forbidden("comments are written by signed-in members")
    await get_owned(session, Post, post_id, caller.organization_id, what="post")
    comment = Comments(
        organization_id=caller.organization_id,
        post_id=post_id,
        user_id=caller.user_id,
        content=content.strip(),
    )
    session.add(comment)
    await session.flush()
    return comment


async def _own_comment(session: AsyncSession, caller: Caller, comment_id: str) -> Comments:
    comment = await get_owned(session, Comments, comment_id, caller.organization_id, what="comment")
    if comment.user_id != caller.user_id and not caller.is_admin:
        raise Forbidden("only its author or an admin may change a comment")
    return comment


async def edit_comment(
    session: AsyncSession, caller: Caller, comment_id: str, content: str
) -> Comments:
    """Change a comment's text (its author or an admin)."""
    comment = await _own_comment(session, caller, comment_id)
    comment.content = content.strip()
    await session.flush()
    await session.refresh(comment, ["updated_at"])
    return comment


async def delete_comment(session: AsyncSession, caller: Caller, comment_id: str) -> None:
    """Soft-delete a comment (its author or an admin)."""
    comment = await _own_comment(session, caller, comment_id)
    comment.deleted_at = datetime.now(UTC)
    await session.flush()

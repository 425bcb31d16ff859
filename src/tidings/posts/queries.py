"""The read queries behind the calendar and the post list, kept lean on purpose.

The calendar of a busy organization holds thousands of rows a week; loading them as full ORM
entities (plus a second query for tags) costs several times the SQL itself. These queries select
just the columns a calendar shows, with the channel joined and the tags aggregated in the same
statement, and return plain rows. ``bench/calendar_query.py`` holds them to 1.5x of raw SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, literal, select, tuple_, type_coerce
from sqlalchemy.dialects.postgresql import JSON
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.channels.models import Integration
from tidings.core.tenancy import OrgId
from tidings.posts.models import Post, Tags, TagsPosts


def _tags_column() -> Any:
    tag_object = func.json_build_object(
        literal("id"), Tags.id, literal("name"), Tags.name, literal("color"), Tags.color
    )
    return (
        select(
            func.coalesce(
                func.json_agg(tag_object),
                type_coerce("[]", JSON),
            )
        )
        .select_from(TagsPosts)
        .join(Tags, Tags.id == TagsPosts.tag_id)
        .where(TagsPosts.post_id == Post.id)
        .correlate(Post)
        .scalar_subquery()
        .label("tags")
    )


CALENDAR_COLUMNS = (
    Post.id,
    Post.content,
    Post.publish_date,
    Post.state,
    Post.group,
    Post.release_url,
    Post.parent_post_id,
    Post.interval_in_days,
    Integration.id.label("integration_id"),
    Integration.name.label("integration_name"),
    Integration.picture.label("integration_picture"),
    Integration.provider_identifier,
)


async def calendar_rows(
    session: AsyncSession,
    org_id: OrgId,
    start: datetime,
    end: datetime,
    *,
    integration_ids: Sequence[str] | None = None,
    customer_id: str | None = None,
    tag_ids: Sequence[str] | None = None,
) -> Sequence[Any]:
    """An organization's live posts with ``start <= publish_date < end``, with their channel and
    tags (``[{id, name, color}]``), ordered by publish date then id."""
    stmt = (
        select(*CALENDAR_COLUMNS, _tags_column())
        .join(Integration, Integration.id == Post.integration_id)
        .where(
            Post.organization_id == org_id,
            Post.publish_date >= start,
            Post.publish_date < end,
        )
        .order_by(Post.publish_date, Post.id)
    )
    if integration_ids is not None:
        stmt = stmt.where(Post.integration_id.in_(list(integration_ids)))
    if customer_id is not None:
        stmt = stmt.where(Integration.customer_id == customer_id)
    if tag_ids:
        stmt = stmt.where(
            select(TagsPosts.post_id)
            .where(and_(TagsPosts.post_id == Post.id, TagsPosts.tag_id.in_(list(tag_ids))))
            .exists()
        )
    return (await session.execute(stmt)).all()


async def list_page(
    session: AsyncSession,
    org_id: OrgId,
    *,
    after: tuple[datetime, str] | None,
    limit: int,
) -> Sequence[Any]:
    """One page of an organization's live posts by (publish_date, id), after the cursor."""
    stmt = select(
        Post.id, Post.content, Post.publish_date, Post.state, Post.group, Post.integration_id
    ).where(Post.organization_id == org_id)
    if after is not None:
        stmt = stmt.where(tuple_(Post.publish_date, Post.id) > tuple_(*after))
    stmt = stmt.order_by(Post.publish_date, Post.id).limit(limit)
    return (await session.execute(stmt)).all()

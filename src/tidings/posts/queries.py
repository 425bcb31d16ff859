"""The read queries behind the calendar and the post list, kept lean on purpose.

The calendar of a busy organization holds thousands of rows a week; loading them as full ORM
entities (plus a query for their channels, which decrypts every channel's tokens, and one for
their tags) costs several times the SQL itself. These queries select just the columns a list
shows, with the channel and its customer joined and the ids of the tags aggregated in the same
statement (the few tags themselves come in one more), and return plain rows.
``bench/calendar_query.py`` holds the service's list to 1.5x of the same SQL sent raw.

Soft-deleted posts, tags and customers are filtered here explicitly; the ORM's automatic filter
is not used (plain Core execution): it would also hide the posts of a deleted channel, which the
calendar keeps showing, and it costs a criteria rewrite per statement.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    DateTime,
    Integer,
    Select,
    Text,
    and_,
    bindparam,
    exists,
    func,
    literal_column,
    select,
    tuple_,
    type_coerce,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import NullType

from tidings.channels.models import Integration
from tidings.core.enums import State
from tidings.core.tenancy import OrgId, org_column
from tidings.orgs.models import Customer
from tidings.posts.models import Post, Tags, TagsPosts

#: States whose recurring posts repeat (their future occurrences are listed).
REPEATING_STATES: Final = (State.QUEUE, State.DRAFT)
_MOMENT = DateTime(timezone=True)
#: "The post still repeats", written with literals, not parameters, so that the planner can
#: match the partial index ``ix_post_recurring`` whatever plan it caches.
REPEATING = Post.state.in_([literal_column(f"'{s.value}'") for s in REPEATING_STATES])


def _tag_ids_column() -> Any:
    # Ids only (deleted tags' too, the caller drops them with :func:`live_tags`): building the
    # tags as JSON in every row costs more than the rest of the statement. The driver already
    # returns a list: no per-row conversion on top.
    ids = (
        select(func.array_agg(TagsPosts.tag_id))
        .where(TagsPosts.post_id == Post.id)
        .correlate(Post)
        .scalar_subquery()
    )
    return type_coerce(ids, NullType()).label("tag_ids")


#: What a list shows of a post (``PostOut``), its channel and the channel's live customer, in
#: this order (rows are unpacked by position). Enum columns come as their text (the labels
#: ``PostOut`` carries), sparing a per-row conversion.
LIST_COLUMNS = (
    Post.id,
    Post.group,
    Post.content,
    Post.publish_date,
    type_coerce(Post.state, Text).label("state"),
    Post.release_url,
    Post.release_id,
    Post.error,
    Post.image,
    Post.settings,
    Post.interval_in_days,
    Post.parent_post_id,
    type_coerce(Post.creation_method, Text).label("creation_method"),
    Post.recurring_anchor,
    Post.timezone,
    Integration.id.label("integration_id"),
    Integration.name.label("integration_name"),
    Integration.provider_identifier.label("integration_provider"),
    Integration.picture.label("integration_picture"),
    Customer.id.label("customer_id"),
    Customer.name.label("customer_name"),
)


# A SELECT of LIST_COLUMNS and tags (its row type spelled out would be 22 columns long).
_Rows = Select[*tuple[Any, ...]]

# Statements are built once per shape of filters, with every value a bound parameter: building
# a SELECT of this size costs about as much as running it for a short list. The organization is
# always bound (``org_id``): these are tenant queries like any other.
_ORG = bindparam("org_id", type_=Text)


def _heads() -> _Rows:
    """An organization's live thread heads with their channel, customer and tag ids."""
    return (
        select(*LIST_COLUMNS, _tag_ids_column())
        .join(Integration, Integration.id == Post.integration_id)
        .outerjoin(
            Customer, and_(Customer.id == Integration.customer_id, Customer.deleted_at.is_(None))
        )
        .where(org_column(Post) == _ORG, Post.deleted_at.is_(None), Post.parent_post_id.is_(None))
        .execution_options(include_deleted=True)
    )


def _filtered(stmt: _Rows, *, customer: bool, integrations: bool, tags: bool) -> _Rows:
    if integrations:
        stmt = stmt.where(Post.integration_id.in_(bindparam("integration_ids", expanding=True)))
    if customer:
        stmt = stmt.where(Integration.customer_id == bindparam("customer_id", type_=Text))
    if tags:
        stmt = stmt.where(
            exists().where(
                TagsPosts.post_id == Post.id,
                TagsPosts.tag_id == Tags.id,
                Tags.deleted_at.is_(None),
                func.lower(Tags.name).in_(bindparam("tag_names", expanding=True)),
            )
        )
    return stmt


@functools.cache
def _calendar_statement(
    *, customer: bool, integrations: bool, tags: bool, states: bool, after: bool, limit: bool
) -> _Rows:
    stmt = _heads().where(
        Post.publish_date >= bindparam("start", type_=_MOMENT),
        Post.publish_date < bindparam("end", type_=_MOMENT),
    )
    stmt = _filtered(stmt, customer=customer, integrations=integrations, tags=tags)
    if states:
        stmt = stmt.where(Post.state.in_(bindparam("states", expanding=True)))
    if after:
        cursor = tuple_(bindparam("after_date", type_=_MOMENT), bindparam("after_id", type_=Text))
        stmt = stmt.where(tuple_(Post.publish_date, Post.id) > cursor)
    stmt = stmt.order_by(Post.publish_date, Post.id)
    if limit:
        stmt = stmt.limit(bindparam("limit", type_=Integer))
    return stmt


@functools.cache
def _recurring_statement(*, customer: bool, integrations: bool, tags: bool) -> _Rows:
    stmt = _heads().where(
        Post.interval_in_days.is_not(None),
        REPEATING,
        Post.publish_date < bindparam("end", type_=_MOMENT),
    )
    return _filtered(stmt, customer=customer, integrations=integrations, tags=tags)


_TAGS = (
    select(Tags.id, Tags.name, Tags.color)
    .where(
        org_column(Tags) == _ORG,
        Tags.id.in_(bindparam("tag_ids", expanding=True)),
        Tags.deleted_at.is_(None),
    )
    .order_by(Tags.name)
)


def _filter_params(
    org_id: OrgId,
    customer_id: str | None,
    integration_ids: Sequence[str] | None,
    tag_names: Sequence[str] | None,
) -> dict[str, Any]:
    params: dict[str, Any] = {"org_id": org_id}
    if customer_id:
        params["customer_id"] = customer_id
    if integration_ids:
        params["integration_ids"] = list(integration_ids)
    if tag_names:
        params["tag_names"] = sorted({name.casefold() for name in tag_names})
    return params


async def calendar_rows(
    session: AsyncSession,
    org_id: OrgId,
    start: datetime,
    end: datetime,
    *,
    customer_id: str | None = None,
    integration_ids: Sequence[str] | None = None,
    tag_names: Sequence[str] | None = None,
    states: Sequence[State] | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int | None = None,
) -> Sequence[Any]:
    """An organization's live thread heads with ``start <= publish_date < end`` (and after the
    ``(publish_date, id)`` cursor), filtered, ordered by publish date then id: rows of
    :data:`LIST_COLUMNS` plus ``tag_ids`` (or None)."""
    params = _filter_params(org_id, customer_id, integration_ids, tag_names)
    params |= {"start": start, "end": end}
    if states:
        params["states"] = list(states)
    if after is not None:
        params["after_date"], params["after_id"] = after
    if limit is not None:
        params["limit"] = limit
    stmt = _calendar_statement(
        customer="customer_id" in params,
        integrations="integration_ids" in params,
        tags="tag_names" in params,
        states="states" in params,
        after=after is not None,
        limit=limit is not None,
    )
    return await _rows(session, stmt, params)


async def recurring_rows(
    session: AsyncSession,
    org_id: OrgId,
    end: datetime,
    *,
    customer_id: str | None = None,
    integration_ids: Sequence[str] | None = None,
    tag_names: Sequence[str] | None = None,
) -> Sequence[Any]:
    """The organization's live recurring thread heads that still repeat (QUEUE or DRAFT) and
    start before ``end``, filtered like :func:`calendar_rows` (same columns)."""
    params = _filter_params(org_id, customer_id, integration_ids, tag_names) | {"end": end}
    stmt = _recurring_statement(
        customer="customer_id" in params,
        integrations="integration_ids" in params,
        tags="tag_names" in params,
    )
    return await _rows(session, stmt, params)


async def live_tags(
    session: AsyncSession, org_id: OrgId, tag_ids: Iterable[str]
) -> dict[str, tuple[int, str, str]]:
    """The organization's live tags among ``tag_ids``: ``{id: (rank by name, name, color)}``."""
    wanted = sorted(set(tag_ids))
    if not wanted:
        return {}
    rows = await _rows(session, _TAGS, {"org_id": org_id, "tag_ids": wanted})
    return {tag_id: (rank, name, color) for rank, (tag_id, name, color) in enumerate(rows)}


async def _rows(session: AsyncSession, stmt: _Rows, params: dict[str, Any]) -> Sequence[Any]:
    # Plain Core execution on the session's connection: no ORM statement machinery for rows
    # that are not entities (so flush pending changes first, as the ORM's autoflush would).
    if session.sync_session.autoflush:
        await session.flush()
    connection = await session.connection()
    return (await connection.execute(stmt, params)).all()

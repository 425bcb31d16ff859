"""Find slot: the next free posting time of a channel.

Candidates come from the channel's posting times (minutes after 00:00 UTC, the spec's
``postingTimes``) or from a set's weekday times in the set's zone (DST-correct, see
:mod:`tidings.posts.timeplan`). A candidate is taken when a live post of the channel -- or a
future occurrence of a recurring one -- is planned in that minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.channels.models import DEFAULT_POSTING_TIMES, Integration
from tidings.core.enums import State
from tidings.core.errors import Conflict
from tidings.core.tenancy import OrgId, get_owned, owned_by
from tidings.posts.models import Post
from tidings.posts.queries import REPEATING
from tidings.posts.sets import get_set
from tidings.posts.timeplan import (
    as_utc,
    occurrences_between,
    planned,
    posting_time_slots,
    set_slots,
    zone_of,
)

#: How far ahead a free slot is looked for.
HORIZON = timedelta(days=366)


def _minute(moment: datetime) -> datetime:
    return as_utc(moment).replace(second=0, microsecond=0)


async def taken_minutes(
    session: AsyncSession, org_id: OrgId, integration_id: str, start: datetime, end: datetime
) -> set[datetime]:
    """Minutes in ``[start, end)`` at which the channel has a post planned."""
    columns = (
        Post.publish_date,
        Post.state,
        Post.interval_in_days,
        Post.recurring_anchor,
        Post.timezone,
    )
    heads = (
        owned_by(Post, org_id),
        Post.integration_id == integration_id,
        Post.parent_post_id.is_(None),
        Post.deleted_at.is_(None),
    )
    # The posts planned in the window, and the recurring posts (from any time) that repeat
    # into it: never the channel's whole history (ix_post_calendar, ix_post_recurring).
    in_window = select(*columns).where(*heads, Post.publish_date >= start, Post.publish_date < end)
    repeating = select(*columns).where(
        *heads,
        Post.interval_in_days.is_not(None),
        REPEATING,
        Post.publish_date < start,
    )
    rows = await session.execute(union_all(in_window, repeating))
    taken: set[datetime] = set()
    for publish_date, state, interval, anchor, zone in rows:
        if publish_date >= start:
            taken.add(_minute(publish_date))
        if interval and state in (State.QUEUE, State.DRAFT):
            for moment in occurrences_between(
                anchor or publish_date, zone_of(zone), interval, start, end, first=publish_date
            ):
                taken.add(_minute(moment))
    return taken


async def find_slot(
    session: AsyncSession,
    org_id: OrgId,
    integration_id: str,
    *,
    set_id: str | None = None,
    after: datetime | None = None,
) -> datetime:
    """The channel's next free slot strictly after ``after`` (default: now): from a set's times
    when ``set_id`` is given, else from the channel's posting times (the defaults when it has
    none). 409 when no slot is free within a year."""
    channel = await get_owned(session, Integration, integration_id, org_id, what="channel")
    start = planned(after, field="after") if after is not None else datetime.now(UTC)
    candidates: Iterator[datetime]
    if set_id is not None:
        plan = await get_set(session, org_id, set_id)
        candidates = set_slots(plan.times, zone_of(plan.timezone), start)
    else:
        times = channel.posting_times or [dict(t) for t in DEFAULT_POSTING_TIMES]
        candidates = posting_time_slots(times, start)
    end = start + HORIZON
    taken = await taken_minutes(session, org_id, channel.id, start, end)
    for slot in candidates:
        if slot >= end:
            break
        if _minute(slot) not in taken:
            return slot
    raise Conflict("no free posting slot within a year", field="integration")

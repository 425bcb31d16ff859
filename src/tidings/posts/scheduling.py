"""The outbox side of publishing: the job that wakes the engine for one post.

Every write that leaves a post in QUEUE defers :data:`PUBLISH_TASK` in the same transaction, with
``schedule_at`` = the post's publish date and a queueing lock naming the post *and that date*:
rescheduling defers a new job for the new date while the old one, when it runs, finds the row no
longer due at its date and does nothing. The engine deletes a post's waiting job when it claims
the post, so a burst handled in batches does not leave thousands of no-op jobs behind.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.core.jobs import defer_in_session
from tidings.posts.timeplan import as_utc

PUBLISH_TASK = "posts.publish"
#: The publish job runs this long before the post's date: the job queue only polls for
#: scheduled jobs every few seconds, so the engine is woken early and then waits for the exact
#: second itself (it never claims a post before its date).
ALARM_LEAD = timedelta(seconds=5)
RECONCILE_TASK = "posts.reconcile"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_us(moment: datetime) -> int:
    """Microseconds since the epoch (exact for timestamptz values)."""
    return (as_utc(moment) - EPOCH) // timedelta(microseconds=1)


def from_epoch_us(value: int) -> datetime:
    """The inverse of :func:`epoch_us`."""
    return EPOCH + timedelta(microseconds=value)


def alarm_lock(post_id: str, publish_date: datetime) -> str:
    """The queueing lock of a post's publish job for one publish date."""
    return f"publish:{post_id}:{epoch_us(publish_date)}"


async def schedule_publish(
    session: AsyncSession,
    post_id: str,
    publish_date: datetime,
    *,
    run_at: datetime | None = None,
) -> int | None:
    """Defer the publish job of a QUEUE post (in the caller's transaction).

    ``run_at`` (default: :data:`ALARM_LEAD` before the publish date) is when the job runs: a
    retry after a transient failure keeps the post's date but runs later. Returns None when that
    job is already waiting.
    """
    return await defer_in_session(
        session,
        PUBLISH_TASK,
        schedule_at=as_utc(run_at or publish_date - ALARM_LEAD),
        queueing_lock=alarm_lock(post_id, publish_date),
        post_id=post_id,
        at=epoch_us(publish_date),
    )

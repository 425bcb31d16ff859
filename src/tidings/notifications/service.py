"""Notifications: what the members of an organization should know (a post failed, a channel
needs reconnecting, a webhook was disabled)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User
from tidings.core.tenancy import OrgId, owned_by, select_owned
from tidings.notifications.models import Notifications

MAX_CONTENT_LENGTH = 2000


async def notify(
    session: AsyncSession, org_id: OrgId | str, content: str, *, link: str | None = None
) -> Notifications:
    """Add a notification for every member of the organization (in the caller's transaction)."""
    # The wall clock, not the transaction's start: notifications written in one transaction
    # (a run failing several posts) keep their order, and the ``before`` cursor of
    # :func:`list_notifications` never skips one sharing a timestamp with the page's end.
    row = Notifications(
        organization_id=org_id,
        content=content[:MAX_CONTENT_LENGTH],
        link=link,
        created_at=func.clock_timestamp(),
    )
    session.add(row)
    await session.flush()
    await session.refresh(row, ["created_at"])
    return row


async def list_notifications(
    session: AsyncSession,
    org_id: OrgId,
    *,
    limit: int,
    before: datetime | None = None,
) -> list[Notifications]:
    """The organization's notifications, newest first (``before``: older than that instant)."""
    stmt = select_owned(Notifications, org_id)
    if before is not None:
        stmt = stmt.where(Notifications.created_at < before)
    rows = await session.execute(
        stmt.order_by(Notifications.created_at.desc(), Notifications.id.desc()).limit(limit)
    )
    return list(rows.scalars())


async def unread_count(session: AsyncSession, org_id: OrgId, user: User) -> int:
    """How many of the organization's notifications arrived after the user last read them."""
    return int(
        (
            await session.execute(
                select(func.count(Notifications.id)).where(
                    owned_by(Notifications, org_id),
                    Notifications.deleted_at.is_(None),
                    Notifications.created_at > user.last_read_notifications,
                )
            )
        ).scalar_one()
    )


async def mark_read(session: AsyncSession, user: User) -> datetime:
    """Mark everything read up to now (the user's ``last_read_notifications``)."""
    # The database's wall clock, the one notifications are stamped with (see :func:`notify`).
    now: datetime = (
        await session.execute(select(func.clock_timestamp().cast(DateTime(timezone=True))))
    ).scalar_one()
    user.last_read_notifications = now
    await session.flush()
    return now

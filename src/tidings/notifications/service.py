"""Notifications: what the members of an organization should know (a post failed, a channel
needs reconnecting, a webhook was disabled)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User
from tidings.core.tenancy import OrgId, owned_by, select_owned
from tidings.notifications.models import Notifications

MAX_CONTENT_LENGTH = 2000


async def notify(
    session: AsyncSession, org_id: OrgId | str, content: str, *, link: str | None = None
) -> Notifications:
    """Add a notification for every member of the organization (in the caller's transaction)."""
    row = Notifications(organization_id=org_id, content=content[:MAX_CONTENT_LENGTH], link=link)
    session.add(row)
    await session.flush()
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
    # The transaction's clock, so a notification written in this same instant counts as read.
    now = (await session.execute(select(func.now()))).scalar_one()
    user.last_read_notifications = now
    await session.flush()
    return now

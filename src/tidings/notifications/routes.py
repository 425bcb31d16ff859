"""The notifications API: the current organization's notifications and their read state."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from tidings.accounts.auth import DbSession, Member
from tidings.notifications import service
from tidings.notifications.schemas import NotificationList, NotificationOut, UnreadCount

router = APIRouter(prefix="/api/notifications", tags=["notifications"])


@router.get("")
async def list_notifications(
    caller: Member,
    db: DbSession,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: datetime | None = None,
) -> NotificationList:
    """Notifications of the current organization, newest first, with the unread count."""
    assert caller.user is not None
    user = caller.user
    rows = await service.list_notifications(db, caller.organization_id, limit=limit, before=before)
    return NotificationList(
        items=[
            NotificationOut(
                id=n.id,
                content=n.content,
                link=n.link,
                created_at=n.created_at,
                read=n.created_at <= user.last_read_notifications,
            )
            for n in rows
        ],
        unread_count=await service.unread_count(db, caller.organization_id, user),
        next_before=rows[-1].created_at if len(rows) == limit else None,
    )


@router.get("/unread-count")
async def unread_count(caller: Member, db: DbSession) -> UnreadCount:
    """How many notifications arrived since I last read them."""
    assert caller.user is not None
    count = await service.unread_count(db, caller.organization_id, caller.user)
    return UnreadCount(unread_count=count)


@router.post("/mark-read")
async def mark_read(caller: Member, db: DbSession) -> UnreadCount:
    """Mark every notification read (read state is per user, as the data model keeps it)."""
    assert caller.user is not None
    await service.mark_read(db, caller.user)
    count = await service.unread_count(db, caller.organization_id, caller.user)
    return UnreadCount(unread_count=count)

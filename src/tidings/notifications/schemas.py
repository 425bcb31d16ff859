"""JSON shapes of the notifications API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class NotificationOut(BaseModel):
    id: str
    content: str
    link: str | None
    created_at: datetime
    read: bool


class NotificationList(BaseModel):
    """A page of notifications, newest first; pass ``next_before`` as ``before`` for the next."""

    items: list[NotificationOut]
    unread_count: int
    next_before: datetime | None


class UnreadCount(BaseModel):
    unread_count: int

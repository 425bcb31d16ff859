"""Notifications: what the members of an organization should know (a post failed, a channel
needs reconnecting, a webhook was disabled)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.core.tenancy import OrgId
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

"""Sets: named posting schedules (times by weekday in a time zone)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.core.tenancy import OrgId, get_owned, select_owned
from tidings.posts.models import Sets
from tidings.posts.schemas import SetIn, SetTime, SetUpdate


def _times(times: list[SetTime]) -> list[dict[str, object]]:
    unique = {(t.day, t.time) for t in times}
    return [{"day": day, "time": time} for day, time in sorted(unique)]


async def list_sets(session: AsyncSession, org_id: OrgId) -> list[Sets]:
    """The organization's sets by name."""
    rows = await session.execute(select_owned(Sets, org_id).order_by(Sets.name, Sets.id))
    return list(rows.scalars())


async def get_set(session: AsyncSession, org_id: OrgId, set_id: str) -> Sets:
    """One set of the organization (404 otherwise)."""
    return await get_owned(session, Sets, set_id, org_id, what="set")


async def create_set(session: AsyncSession, org_id: OrgId, data: SetIn) -> Sets:
    """A new set."""
    row = Sets(
        organization_id=org_id,
        name=data.name.strip(),
        times=_times(data.times),
        timezone=data.timezone,
    )
    session.add(row)
    await session.flush()
    return row


async def update_set(session: AsyncSession, org_id: OrgId, set_id: str, data: SetUpdate) -> Sets:
    """Change a set's name, times or zone."""
    row = await get_set(session, org_id, set_id)
    if data.name is not None:
        row.name = data.name.strip()
    if data.times is not None:
        row.times = _times(data.times)
    if data.timezone is not None:
        row.timezone = data.timezone
    await session.flush()
    return row


async def delete_set(session: AsyncSession, org_id: OrgId, set_id: str) -> None:
    """Soft-delete a set."""
    row = await get_set(session, org_id, set_id)
    row.deleted_at = datetime.now(UTC)
    await session.flush()

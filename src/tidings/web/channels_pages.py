"""The channels page: connect (OAuth redirect or credential fields), pick a page, manage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from tidings.accounts.auth import DbSession
from tidings.channels import customers as customers_service
from tidings.channels import service as channels
from tidings.channels.schemas import ChannelRead
from tidings.web.context import Page, render

router = APIRouter()


def status_of(channel: ChannelRead) -> tuple[str, str]:
    """The status a channel shows: (machine name, label)."""
    if channel.disabled:
        return "disabled", "Disabled"
    if channel.refresh_needed:
        return "reconnect", "Needs reconnect"
    if channel.in_between_steps:
        return "pick", "Pick a page"
    return "active", "Active"


def utc_offset_minutes(page: Page) -> int:
    """Minutes the viewer's zone is ahead of UTC today (posting times are kept in UTC)."""
    offset = datetime.now(UTC).astimezone(page.tz).utcoffset()
    return int(offset.total_seconds() // 60) if offset is not None else 0


def local_slot(minute_utc: int, offset: int) -> str:
    """A UTC posting time (minutes after 00:00 UTC) as ``HH:MM`` in the viewer's zone."""
    minute = (minute_utc + offset) % 1440
    return f"{minute // 60:02d}:{minute % 60:02d}"


@dataclass(frozen=True)
class OffsetChange:
    """The next time the viewer's clocks change: from ``on`` (a local date) posting times,
    which are kept in UTC, show ``minutes`` later (negative: earlier) than today."""

    on: date
    minutes: int

    @property
    def shift(self) -> str:
        """``"an hour later"``, ``"30 minutes earlier"``..."""
        size = abs(self.minutes)
        if size == 60:
            amount = "an hour"
        elif size % 60 == 0:
            amount = f"{size // 60} hours"
        else:
            amount = f"{size} minutes"
        return f"{amount} {'later' if self.minutes > 0 else 'earlier'}"


def next_offset_change(tz: ZoneInfo, now: datetime | None = None) -> OffsetChange | None:
    """When ``tz``'s UTC offset next changes within a year (daylight saving), or None."""
    start = (now or datetime.now(UTC)).astimezone(UTC)
    today = start.astimezone(tz).utcoffset()
    step = timedelta(hours=6)
    moment = start
    for _ in range(366 * 4):
        later = moment + step
        offset = later.astimezone(tz).utcoffset()
        if offset != today and offset is not None and today is not None:
            # Narrow the six hours down to the minute the clocks change.
            low, high = moment, later
            while high - low > timedelta(minutes=1):
                mid = low + (high - low) / 2
                if mid.astimezone(tz).utcoffset() == today:
                    low = mid
                else:
                    high = mid
            minutes = int((offset - today).total_seconds() // 60)
            return OffsetChange(on=high.astimezone(tz).date(), minutes=minutes)
        moment = later
    return None


@router.get("/channels")
async def channels_page(
    request: Request,
    page: Page,
    db: DbSession,
    channel: Annotated[str | None, Query(max_length=100)] = None,
    choose: Annotated[str | None, Query(max_length=5)] = None,
    welcome: Annotated[str | None, Query(max_length=5)] = None,
    connect_error: Annotated[str | None, Query(max_length=400)] = None,
) -> Response:
    """The organization's channels grouped by customer, and the providers to connect."""
    org_id = page.caller.organization_id
    rows = [
        ChannelRead.of(c, channels.customer_of(c)) for c in await channels.list_channels(db, org_id)
    ]
    offset = utc_offset_minutes(page)
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        key = row.customer.name if row.customer else ""
        status, label = status_of(row)
        groups.setdefault(key, []).append(
            {
                "channel": row,
                "status": status,
                "status_label": label,
                "slots": [local_slot(t.time, offset) for t in row.posting_times],
                "utc_slots": [local_slot(t.time, 0) for t in row.posting_times],
            }
        )
    providers = channels.list_providers()
    names = {p["identifier"]: p["display_name"] for p in providers}
    pick = None
    if channel:
        pick = next((r for r in rows if r.id == channel and r.in_between_steps), None)
    return render(
        request,
        "channels.html",
        page,
        groups=sorted(groups.items(), key=lambda kv: (kv[0] != "", kv[0].lower())),
        count=len(rows),
        providers=sorted(providers, key=lambda p: str(p["display_name"]).lower()),
        provider_names=names,
        customers=await customers_service.list_customers(db, org_id),
        pick=pick,
        connected=channel if channel and not choose else None,
        welcome=bool(welcome),
        connect_error=connect_error,
        utc_offset=offset,
        utc_offset_label=_offset_label(offset),
        offset_change=next_offset_change(page.tz),
        shows_utc=offset != 0 or page.tz.key != "UTC",
    )


def _offset_label(minutes: int) -> str:
    return f"UTC{'+' if minutes >= 0 else '-'}{local_slot(abs(minutes), 0)}"

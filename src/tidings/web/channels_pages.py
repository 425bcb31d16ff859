"""The channels page: connect (OAuth redirect or credential fields), pick a page, manage."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

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
    )

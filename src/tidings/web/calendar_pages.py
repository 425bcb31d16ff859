"""The calendar: week (default), month, day and list views of the organization's posts, in the
viewer's time zone, filtered by customer and channel."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from tidings.accounts.auth import DbSession
from tidings.channels import customers as customers_service
from tidings.channels import service as channels_service
from tidings.core.tenancy import OrgId
from tidings.posts import service as posts_service
from tidings.posts.schemas import PostOut
from tidings.posts.timeplan import localize
from tidings.web.context import Page, render

router = APIRouter()

View = Literal["week", "month", "day", "list"]
LIST_DAYS = 28
PREVIEW_LENGTH = 140

STATE_LABELS = {
    "QUEUE": "Scheduled",
    "PUBLISHED": "Published",
    "ERROR": "Error",
    "DRAFT": "Draft",
}


@dataclass
class CalendarPost:
    """A post as the calendar draws it."""

    post: PostOut
    local: datetime
    seconds_into_hour: int
    seconds_into_day: int

    @property
    def state(self) -> str:
        return self.post.state.lower()

    @property
    def state_label(self) -> str:
        return STATE_LABELS.get(self.post.state, self.post.state.title())

    @property
    def preview(self) -> str:
        text = " ".join(self.post.content.split())
        return text if len(text) <= PREVIEW_LENGTH else text[: PREVIEW_LENGTH - 1] + "…"

    @property
    def movable(self) -> bool:
        # Published posts move only by republishing (from the post page); a repetition of a
        # recurring post is not a row of its own.
        return self.post.state in ("QUEUE", "ERROR", "DRAFT") and not self.post.occurrence


@dataclass
class Slot:
    """One hour of one day (week and day views), a drop target."""

    hour: int
    start: datetime
    posts: list[CalendarPost] = field(default_factory=list)


@dataclass
class Day:
    day: date
    start: datetime
    is_today: bool
    in_month: bool = True
    slots: list[Slot] = field(default_factory=list)
    posts: list[CalendarPost] = field(default_factory=list)


def parse_day(value: str | None, today: date) -> date:
    """``YYYY-MM-DD`` (today when missing or malformed)."""
    if value:
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            pass
    return today


def period(view: View, anchor: date) -> tuple[date, int]:
    """First day and number of days a view shows around ``anchor`` (weeks start on Monday)."""
    if view == "day":
        return anchor, 1
    if view == "week":
        return anchor - timedelta(days=anchor.weekday()), 7
    if view == "month":
        first = anchor.replace(day=1)
        return first - timedelta(days=first.weekday()), 42
    return anchor, LIST_DAYS


def shift(view: View, anchor: date, steps: int) -> date:
    """``anchor`` moved by ``steps`` periods of ``view``."""
    if view == "day":
        return anchor + timedelta(days=steps)
    if view == "week":
        return anchor + timedelta(days=7 * steps)
    if view == "list":
        return anchor + timedelta(days=LIST_DAYS * steps)
    month = anchor.month - 1 + steps
    return date(anchor.year + month // 12, month % 12 + 1, 1)


def title_of(view: View, first: date, days: int, anchor: date) -> str:
    if view == "month":
        return anchor.strftime("%B %Y")
    if view == "day":
        return anchor.strftime("%A %d %B %Y")
    last = first + timedelta(days=days - 1)
    if first.year != last.year:
        return f"{first:%d %b %Y} \u2013 {last:%d %b %Y}"
    if first.month != last.month:
        return f"{first:%d %b} \u2013 {last:%d %b %Y}"
    return f"{first:%d} \u2013 {last:%d %B %Y}"


@router.get("/calendar")
async def calendar_page(
    request: Request,
    page: Page,
    db: DbSession,
    view: View = "week",
    date_: Annotated[str | None, Query(alias="date", max_length=20)] = None,
    customer: Annotated[str | None, Query(max_length=100)] = None,
    channel: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    """The calendar of the current organization."""
    tz = page.tz
    org_id = OrgId(page.caller.organization_id)
    now = datetime.now(UTC)
    today = now.astimezone(tz).date()
    anchor = parse_day(date_, today)
    first, count = period(view, anchor)
    start = localize(first, time(0), tz)
    end = localize(first + timedelta(days=count), time(0), tz)

    channels = await channels_service.list_channels(db, org_id)
    customers = await customers_service.list_customers(db, org_id)
    customer = customer if any(c.id == customer for c in customers) else None
    channel = channel if any(c.id == channel for c in channels) else None
    listed = await posts_service.list_posts(
        db,
        org_id,
        start=start,
        end=end,
        customer_id=customer,
        integration_ids=[channel] if channel else None,
    )

    days: list[Day] = []
    by_day: dict[date, Day] = {}
    for offset in range(count):
        day = first + timedelta(days=offset)
        entry = Day(
            day=day,
            start=localize(day, time(0), tz),
            is_today=day == today,
            in_month=view != "month" or day.month == anchor.month,
        )
        if view in ("week", "day"):
            entry.slots = [Slot(hour=h, start=localize(day, time(h), tz)) for h in range(24)]
        days.append(entry)
        by_day[day] = entry
    for post in listed.posts:
        local = post.publish_date.astimezone(tz)
        item = CalendarPost(
            post=post,
            local=local,
            seconds_into_hour=local.minute * 60 + local.second,
            seconds_into_day=local.hour * 3600 + local.minute * 60 + local.second,
        )
        target = by_day.get(local.date())
        if target is None:
            continue
        target.posts.append(item)
        if target.slots:
            target.slots[local.hour].posts.append(item)

    def link(**changes: Any) -> str:
        params = {
            "view": view,
            "date": anchor.isoformat(),
            "customer": customer,
            "channel": channel,
        }
        params.update(changes)
        return "/calendar?" + urlencode({k: v for k, v in params.items() if v})

    visible_channels = [c for c in channels if customer is None or c.customer_id == customer]
    return render(
        request,
        "calendar.html",
        page,
        view=view,
        days=days,
        weeks=[days[i : i + 7] for i in range(0, len(days), 7)] if view == "month" else [],
        title=title_of(view, first, count, anchor),
        anchor=anchor,
        today=today,
        prev_link=link(date=shift(view, anchor, -1).isoformat()),
        next_link=link(date=shift(view, anchor, 1).isoformat()),
        today_link=link(date=today.isoformat()),
        view_links={v: link(view=v) for v in ("day", "week", "month", "list")},
        customers=customers,
        channels=visible_channels,
        customer=customer,
        channel=channel,
        post_count=len(listed.posts),
        now_iso=now.isoformat(),
        hours=list(range(24)),
    )

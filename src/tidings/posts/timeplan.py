"""Wall-clock arithmetic: recurring posts and posting slots, DST-correct.

All stored times are UTC instants; a zone matters only when a time is a *wall-clock* time (a set's
"Monday 09:00 in Europe/Berlin", a weekly post at the time its author chose). Conventions:

- A wall-clock time that does not exist on a day (skipped by a spring-forward change) moves forward
  by the length of the gap (02:30 -> 03:30); an ambiguous one (repeated by a fall-back change) is
  its first occurrence. Both are what ``zoneinfo`` gives with ``fold=0``.
- A recurring post repeats every N *calendar days* in its zone at its anchor's wall-clock time, so
  a 09:00 post stays at 09:00 across DST changes (its UTC instant moves by an hour).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tidings.core.errors import Unprocessable

#: Years a date given by a client may fall in. Far beyond any plan either way, and every later
#: computation (reply delays, recurrences, alarm leads, a year of slots) stays within the years a
#: ``datetime`` holds; a date outside is answered 422 instead of failing deep inside.
EARLIEST_YEAR = 1970
LATEST_YEAR = 8999


def zone_of(name: str | None) -> ZoneInfo:
    """The zone ``name`` (UTC when unset or unknown)."""
    if not name:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (naive values are taken as UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def planned(value: datetime, *, field: str) -> datetime:
    """A client's date as aware UTC, refused (422 naming ``field``) outside
    :data:`EARLIEST_YEAR` .. :data:`LATEST_YEAR`."""
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise Unprocessable(
            f"{field} must be between the years {EARLIEST_YEAR} and {LATEST_YEAR}", field=field
        )
    return as_utc(value)


def localize(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of wall-clock ``wall`` on ``day`` in ``zone`` (see module docstring)."""
    naive = datetime.combine(day, wall.replace(tzinfo=None))
    return naive.replace(tzinfo=zone, fold=0).astimezone(UTC)


# ---- recurring posts ------------------------------------------------------------------------


def occurrence(anchor: datetime, zone: ZoneInfo, interval_days: int, index: int) -> datetime:
    """The ``index``-th occurrence (0 = the anchor itself) of a post repeating every
    ``interval_days`` days at the anchor's wall-clock time in ``zone``."""
    local = as_utc(anchor).astimezone(zone)
    return localize(local.date() + timedelta(days=index * interval_days), local.time(), zone)


def next_occurrence(
    anchor: datetime, zone: ZoneInfo, interval_days: int, after: datetime
) -> datetime:
    """The first occurrence strictly after ``after``.

    Missed occurrences (a worker down for days) are skipped, never returned one after another:
    the series resumes from ``after``.
    """
    anchor = as_utc(anchor)
    after = as_utc(after)
    if interval_days < 1:
        raise ValueError("interval_days must be at least 1")
    elapsed_days = (after - anchor).total_seconds() / 86400
    index = max(1, math.floor(elapsed_days / interval_days))
    # The estimate can be off by one around DST changes; step until strictly after.
    while index > 1 and occurrence(anchor, zone, interval_days, index - 1) > after:
        index -= 1
    while True:
        candidate = occurrence(anchor, zone, interval_days, index)
        if candidate > after:
            return candidate
        index += 1


def occurrences_between(
    anchor: datetime,
    zone: ZoneInfo,
    interval_days: int,
    start: datetime,
    end: datetime,
    *,
    first: datetime | None = None,
    limit: int = 1000,
) -> list[datetime]:
    """Occurrences in ``[start, end)`` that are not before ``first`` (default: the anchor)."""
    anchor = as_utc(anchor)
    start, end = as_utc(start), as_utc(end)
    floor_at = as_utc(first) if first is not None else anchor
    begin = max(start, floor_at)
    if begin >= end:
        return []
    if begin <= anchor:
        index = 0
    else:
        index = max(0, math.floor((begin - anchor).total_seconds() / 86400 / interval_days) - 1)
    # :func:`occurrence`, with the anchor's wall clock worked out once (the calendar expands
    # every recurring post on each read).
    local = anchor.astimezone(zone)
    day, wall = local.date(), local.time()
    out: list[datetime] = []
    while len(out) < limit:
        candidate = localize(day + timedelta(days=index * interval_days), wall, zone)
        if candidate >= end:
            break
        if candidate >= begin:
            out.append(candidate)
        index += 1
    return out


# ---- posting slots --------------------------------------------------------------------------


def js_weekday(day: date) -> int:
    """JavaScript's ``getDay()``: 0 = Sunday ... 6 = Saturday (the Sets' convention)."""
    return (day.weekday() + 1) % 7


def posting_time_slots(posting_times: Sequence[Any], after: datetime) -> Iterator[datetime]:
    """A channel's posting slots strictly after ``after``, in order, without end.

    ``posting_times`` is the channel's ``[{"time": minutes after 00:00 UTC}]``.
    """
    minutes = sorted(
        {
            int(item["time"]) % 1440
            for item in posting_times
            if isinstance(item, dict) and isinstance(item.get("time"), int | float)
        }
    )
    if not minutes:
        return
    after = as_utc(after)
    day = after.date()
    while True:
        midnight = datetime.combine(day, time(), tzinfo=UTC)
        for minute in minutes:
            slot = midnight + timedelta(minutes=minute)
            if slot > after:
                yield slot
        day += timedelta(days=1)


def parse_wall(value: str) -> time:
    """``"HH:MM"`` as a time."""
    hours, _, minutes = value.partition(":")
    return time(int(hours), int(minutes or 0))


def set_slots(times: Sequence[Any], zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """A set's slots (``[{"day": 0-6, "time": "HH:MM"}]`` in ``zone``) strictly after
    ``after``, in order, without end."""
    by_day: dict[int, list[time]] = {}
    for item in times:
        if not isinstance(item, dict):
            continue
        try:
            by_day.setdefault(int(item["day"]) % 7, []).append(parse_wall(str(item["time"])))
        except (KeyError, ValueError, TypeError):
            continue
    if not by_day:
        return
    after = as_utc(after)
    day = after.astimezone(zone).date()
    while True:
        walls = sorted(set(by_day.get(js_weekday(day), [])))
        for slot in sorted(localize(day, wall, zone) for wall in walls):
            if slot > after:
                yield slot
        day += timedelta(days=1)

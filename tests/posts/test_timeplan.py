"""Wall-clock arithmetic across DST changes (Europe/Berlin, America/New_York)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import islice
from zoneinfo import ZoneInfo

from tidings.posts.timeplan import (
    next_occurrence,
    occurrence,
    occurrences_between,
    posting_time_slots,
    set_slots,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_weekly_post_keeps_its_wall_clock_time_across_spring_forward() -> None:
    anchor = datetime(2031, 3, 24, 9, 0, tzinfo=BERLIN)  # Monday, CET (UTC+1)
    assert anchor.astimezone(UTC) == utc(2031, 3, 24, 8, 0)
    # Europe moves to CEST on Sunday 30 March 2031: 09:00 is now 07:00 UTC.
    assert occurrence(anchor, BERLIN, 7, 1) == utc(2031, 3, 31, 7, 0)
    assert occurrence(anchor, BERLIN, 7, 2) == utc(2031, 4, 7, 7, 0)
    assert [
        o.astimezone(BERLIN).hour for o in (occurrence(anchor, BERLIN, 7, i) for i in range(5))
    ] == [9] * 5


def test_daily_post_across_fall_back_in_new_york() -> None:
    anchor = datetime(2031, 10, 31, 8, 30, tzinfo=NEW_YORK)  # EDT (UTC-4)
    got = [occurrence(anchor, NEW_YORK, 1, i) for i in range(4)]
    assert got == [
        utc(2031, 10, 31, 12, 30),
        utc(2031, 11, 1, 12, 30),
        utc(2031, 11, 2, 13, 30),  # EST (UTC-5) from Sunday 2 November
        utc(2031, 11, 3, 13, 30),
    ]


def test_time_skipped_by_dst_moves_forward_without_drifting() -> None:
    # 02:30 does not exist in Berlin on 30 March 2031: that occurrence is at 03:30 CEST; the
    # next day is 02:30 again.
    anchor = datetime(2031, 3, 29, 2, 30, tzinfo=BERLIN)
    got = [occurrence(anchor, BERLIN, 1, i).astimezone(BERLIN) for i in range(3)]
    assert [(o.day, o.hour, o.minute) for o in got] == [(29, 2, 30), (30, 3, 30), (31, 2, 30)]
    # An ambiguous time (repeated at fall back) is its first occurrence.
    anchor = datetime(2031, 10, 25, 2, 30, tzinfo=BERLIN)
    assert occurrence(anchor, BERLIN, 1, 1) == utc(2031, 10, 26, 0, 30)


def test_next_occurrence_after_downtime_skips_the_missed_ones() -> None:
    anchor = datetime(2031, 3, 3, 9, 0, tzinfo=BERLIN)  # weekly on Mondays
    back_up = utc(2031, 4, 2, 12, 0)  # a Wednesday, four weeks later
    nxt = next_occurrence(anchor, BERLIN, 7, back_up)
    assert nxt == utc(2031, 4, 7, 7, 0)  # the coming Monday at 09:00 CEST, only that one
    # Exactly at an occurrence: the next one is strictly after.
    assert next_occurrence(anchor, BERLIN, 7, utc(2031, 4, 7, 7, 0)) == utc(2031, 4, 14, 7, 0)
    assert next_occurrence(anchor, BERLIN, 7, anchor - timedelta(days=30)) == occurrence(
        anchor, BERLIN, 7, 1
    )


def test_occurrences_between_bounds() -> None:
    anchor = datetime(2031, 3, 17, 9, 0, tzinfo=BERLIN)
    got = occurrences_between(
        anchor, BERLIN, 7, utc(2031, 3, 20), utc(2031, 4, 8), first=anchor + timedelta(seconds=1)
    )
    assert got == [utc(2031, 3, 24, 8, 0), utc(2031, 3, 31, 7, 0), utc(2031, 4, 7, 7, 0)]
    assert occurrences_between(anchor, BERLIN, 7, utc(2031, 4, 8), utc(2031, 4, 8)) == []


def test_posting_time_slots_are_utc_minutes() -> None:
    slots = list(islice(posting_time_slots([{"time": 400}, {"time": 120}], utc(2031, 3, 30, 5)), 3))
    assert slots == [utc(2031, 3, 30, 6, 40), utc(2031, 3, 31, 2, 0), utc(2031, 3, 31, 6, 40)]
    assert list(posting_time_slots([], utc(2031, 1, 1))) == []


def test_set_slots_follow_the_zone_across_dst() -> None:
    times = [{"day": 1, "time": "09:00"}, {"day": 3, "time": "14:00"}]  # Monday, Wednesday
    before = list(islice(set_slots(times, BERLIN, utc(2031, 3, 23, 12)), 2))
    assert before == [utc(2031, 3, 24, 8, 0), utc(2031, 3, 26, 13, 0)]
    after = list(islice(set_slots(times, BERLIN, utc(2031, 3, 30, 12)), 2))
    assert after == [utc(2031, 3, 31, 7, 0), utc(2031, 4, 2, 12, 0)]
    sunday = [{"day": 0, "time": "01:30"}]
    fall_back = list(islice(set_slots(sunday, NEW_YORK, utc(2031, 10, 27)), 2))
    # 01:30 happens twice on 2 November in New York: the first (EDT) one counts.
    assert fall_back == [utc(2031, 11, 2, 5, 30), utc(2031, 11, 9, 6, 30)]

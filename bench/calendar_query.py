"""Calendar benchmark: the posts service's list over 1,000,000 posts on 200 channels.

    .venv/bin/python bench/calendar_query.py --data-dir /tmp/bench-embedded   # embedded PostgreSQL
    TIDINGS_DATABASE_URL=postgresql://... .venv/bin/python bench/calendar_query.py

Measures, as medians over repeated runs (the service and raw SQL interleaved, so that a noisy
machine slows both alike):
- one week of an organization's calendar through ``tidings.posts.service.list_posts`` (what
  GET /api/posts, the Public API's GET /posts and the web calendar call: the posts with their
  channel, customer and tags, recurring posts expanded, shaped as ``PostOut``) against the same
  statements sent through the raw driver (rows fetched, nothing shaped), and their ratio;
- the same week filtered by a customer;
- the week's statement alone through SQLAlchemy (``queries.calendar_rows``) against raw SQL;
- a cursor page of 100 deep in the list, service against raw SQL.

Targets (issue 2): service within 1.5x of raw SQL; a week under 20 ms on the embedded database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tidings.core.tenancy import OrgId
from tidings.db import Database, start_embedded, to_libpq_url
from tidings.migrations import upgrade
from tidings.posts.queries import calendar_rows
from tidings.posts.service import encode_cursor, list_posts

ORG = OrgId("bench-org")
CUSTOMER = "bench-customer"
RECURRING = 50  # weekly QUEUE posts, expanded into the calendar
START = datetime(2020, 1, 6, tzinfo=UTC)  # a Monday


def _load(url: str, posts: int, channels: int, weeks: int, tags: int) -> None:
    """Fill the database with one organization's posts (idempotent by row count)."""
    with psycopg.connect(url, autocommit=True) as conn:
        have = conn.execute(
            "SELECT count(*) FROM post WHERE organization_id = %s AND id NOT LIKE 'rec%%'", (ORG,)
        )
        if (row := have.fetchone()) and row[0] == posts:
            return
        print(f"loading {posts:,} posts over {channels} channels and {weeks} weeks ...", flush=True)
        started = time.perf_counter()
        conn.execute("DELETE FROM organization WHERE id IN (%s, 'bench-other')", (ORG,))
        conn.execute(
            "INSERT INTO organization (id, name) VALUES (%s, 'Bench'), ('bench-other', 'Other')",
            (ORG,),
        )
        conn.execute(
            """
            INSERT INTO integration (id, internal_id, organization_id, name, picture,
                                     provider_identifier, type, token)
            SELECT 'ch' || i, 'acct' || i, %s, 'Channel ' || i, 'https://p/' || i || '.png',
                   (ARRAY['x','mastodon','bluesky','linkedin'])[1 + i %% 4], 'social', 'enc'
            FROM generate_series(1, %s) AS i
            """,
            (ORG, channels),
        )
        conn.execute(
            "INSERT INTO tags (id, name, color, org_id) "
            "SELECT 'tag' || i, 'tag ' || i, '#00aa' || lpad(i::text, 2, '0'), %s "
            "FROM generate_series(1, %s) AS i",
            (ORG, tags),
        )
        span = weeks * 7 * 86400
        conn.execute(
            """
            INSERT INTO post (id, state, publish_date, organization_id, integration_id, content,
                              "group", deleted_at)
            SELECT 'p' || lpad(i::text, 8, '0'),
                   (ARRAY['QUEUE','PUBLISHED','ERROR','DRAFT']::state[])[1 + i %% 4],
                   %s::timestamptz + ((i::bigint * 7919) %% %s) * interval '1 second',
                   %s, 'ch' || (1 + i %% %s),
                   'Post number ' || i || ': an update for our followers with a link '
                     || 'https://example.com/' || i,
                   'g' || (i / 2),
                   CASE WHEN i %% 50 = 0 THEN now() ELSE NULL END
            FROM generate_series(1, %s) AS i
            """,
            (START, span, ORG, channels, posts),
        )
        conn.execute(
            """
            INSERT INTO tags_posts (post_id, tag_id)
            SELECT 'p' || lpad(i::text, 8, '0'), 'tag' || (1 + i %% %s)
            FROM generate_series(1, %s) AS i WHERE i %% 3 <> 0
            """,
            (tags, posts),
        )
        conn.execute("VACUUM ANALYZE")
        print(f"loaded in {time.perf_counter() - started:.1f} s", flush=True)


def _load_extras(url: str, channels: int) -> None:
    """A customer owning a tenth of the channels, and recurring posts (idempotent)."""
    with psycopg.connect(url, autocommit=True) as conn:
        have = conn.execute("SELECT count(*) FROM post WHERE id LIKE 'rec%%'").fetchone()
        if have and have[0] == RECURRING:
            return
        conn.execute("DELETE FROM post WHERE id LIKE 'rec%%'")
        conn.execute("DELETE FROM customer WHERE id = %s", (CUSTOMER,))
        conn.execute(
            "INSERT INTO customer (id, name, org_id) VALUES (%s, 'Bench customer', %s)",
            (CUSTOMER, ORG),
        )
        conn.execute(
            "UPDATE integration SET customer_id = %s "
            "WHERE organization_id = %s AND substr(id, 3)::int %% 10 = 0",
            (CUSTOMER, ORG),
        )
        conn.execute(
            """
            INSERT INTO post (id, state, publish_date, organization_id, integration_id, content,
                              "group", interval_in_days, timezone, recurring_anchor)
            SELECT 'rec' || lpad(i::text, 5, '0'), 'QUEUE', %s::timestamptz + i * interval '1 hour',
                   %s, 'ch' || (1 + i %% %s), 'Weekly update ' || i, 'rec-g' || i, 7,
                   'Europe/Paris', %s::timestamptz + i * interval '1 hour'
            FROM generate_series(1, %s) AS i
            """,
            (START, ORG, channels, START, RECURRING),
        )
        conn.execute(
            "INSERT INTO tags_posts (post_id, tag_id) "
            "SELECT id, 'tag1' FROM post WHERE id LIKE 'rec%%' ON CONFLICT DO NOTHING"
        )
        conn.execute("ANALYZE post, integration, customer, tags_posts")


# The statements the service sends (``tidings.posts.queries``), written by hand.
_RAW_SELECT = """
SELECT p.id, p."group", p.content, p.publish_date, p.state, p.release_url, p.release_id, p.error,
       p.image, p.settings, p.interval_in_days, p.parent_post_id, p.creation_method,
       p.recurring_anchor, p.timezone, i.id, i.name, i.provider_identifier, i.picture, c.id,
       c.name, (SELECT array_agg(tp.tag_id) FROM tags_posts tp WHERE tp.post_id = p.id)
FROM post p
JOIN integration i ON i.id = p.integration_id
LEFT JOIN customer c ON c.id = i.customer_id AND c.deleted_at IS NULL
WHERE p.organization_id = %(org)s AND p.deleted_at IS NULL AND p.parent_post_id IS NULL
"""
RAW_WEEK = (
    _RAW_SELECT
    + " AND p.publish_date >= %(start)s AND p.publish_date < %(end)s"
    + " {extra} ORDER BY p.publish_date, p.id {limit}"
)
RAW_RECURRING = (
    _RAW_SELECT
    + " AND p.interval_in_days IS NOT NULL AND p.state IN ('QUEUE', 'DRAFT')"
    + " AND p.publish_date < %(end)s {extra}"
)
RAW_TAGS = """
SELECT id, name, color FROM tags
WHERE org_id = %(org)s AND id = ANY(%(ids)s) AND deleted_at IS NULL ORDER BY name
"""
BY_CUSTOMER = "AND i.customer_id = %(customer)s"
AFTER = "AND (p.publish_date, p.id) > (%(after_date)s, %(after_id)s)"


async def _raw_list(
    raw: psycopg.AsyncConnection[Any], params: dict[str, Any], *, extra: str = "", limit: str = ""
) -> list[Any]:
    """The service's three statements through the raw driver: rows fetched, nothing shaped."""
    week = RAW_WEEK.format(extra=extra, limit=limit)
    rows = await (await raw.execute(week, params)).fetchall()  # type: ignore[arg-type]
    recurring_extra = BY_CUSTOMER if BY_CUSTOMER in extra else ""
    recurring = RAW_RECURRING.format(extra=recurring_extra)
    more = await (await raw.execute(recurring, params)).fetchall()  # type: ignore[arg-type]
    ids = sorted({t for row in rows + more for t in row[-1] or ()})
    await (await raw.execute(RAW_TAGS, params | {"ids": ids})).fetchall()
    return rows


async def _medians(
    runs: dict[str, Callable[[], Awaitable[Any]]], repeats: int
) -> tuple[dict[str, float], dict[str, Any]]:
    """Median milliseconds of each run, the runs interleaved (after a warm-up of each)."""
    results = {name: await run() for name, run in runs.items()}  # warm-up (plans, caches)
    for _ in range(5):
        for run in runs.values():
            await run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            results[name] = await run()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(t) * 1000 for name, t in times.items()}, results


def _report(title: str, service_ms: float, raw_ms: float, label: str = "service") -> None:
    print(title)
    print(f"  {label:<8} median {service_ms:7.2f} ms")
    print(f"  {'raw SQL':<8} median {raw_ms:7.2f} ms")
    print(f"  ratio {label}/raw {service_ms / raw_ms:5.2f}")


async def _bench(url: str, repeats: int, weeks: int) -> None:
    database = Database(url, pool_size=1)
    raw = await psycopg.AsyncConnection.connect(to_libpq_url(url), autocommit=True)
    week_start = START + timedelta(weeks=weeks // 2)
    week_end = week_start + timedelta(days=7)
    params = {"org": ORG, "start": week_start, "end": week_end, "customer": CUSTOMER}
    try:
        async with database.sessionmaker() as session:

            async def service_week() -> Any:
                return (await list_posts(session, ORG, start=week_start, end=week_end)).posts

            async def raw_week() -> Any:
                return await _raw_list(raw, params)

            ms, got = await _medians({"service": service_week, "raw": raw_week}, repeats)
            listed, rows = got["service"], got["raw"]
            occurrences = sum(1 for p in listed if p.occurrence)
            assert len(listed) - occurrences == len(rows), (len(listed), len(rows))
            assert all(p.integration.name for p in listed)
            tagged = sum(1 for p in listed if p.tags)
            _report(
                f"week calendar (list_posts): {len(rows)} posts + {occurrences} recurring "
                f"occurrences, {tagged} with tags",
                ms["service"],
                ms["raw"],
            )
            print("  targets: ratio <= 1.5, service < 20 ms")

            async def service_customer() -> Any:
                return (
                    await list_posts(
                        session, ORG, start=week_start, end=week_end, customer_id=CUSTOMER
                    )
                ).posts

            async def raw_customer() -> Any:
                return await _raw_list(raw, params, extra=BY_CUSTOMER)

            ms, got = await _medians({"service": service_customer, "raw": raw_customer}, repeats)
            listed = got["service"]
            assert all(p.integration.customer is not None for p in listed)
            _report(f"week calendar of one customer: {len(listed)} posts", ms["service"], ms["raw"])

            async def orm_rows() -> Any:
                return await calendar_rows(session, ORG, week_start, week_end)

            async def raw_rows() -> Any:
                week = RAW_WEEK.format(extra="", limit="")
                return await (await raw.execute(week, params)).fetchall()  # type: ignore[arg-type]

            ms, got = await _medians({"ORM": orm_rows, "raw": raw_rows}, repeats)
            assert len(got["ORM"]) == len(got["raw"])
            _report(
                "the week's statement alone (queries.calendar_rows)", ms["ORM"], ms["raw"], "ORM"
            )

            # A cursor page three quarters into the table, within a 400-day range.
            page_start = START + timedelta(weeks=weeks * 3 // 4)
            page_end = page_start + timedelta(days=400)
            after = (page_start + timedelta(days=3), "p")
            cursor = encode_cursor(*after)
            page_params = params | {
                "start": page_start,
                "end": page_end,
                "after_date": after[0],
                "after_id": after[1],
            }

            async def service_page() -> Any:
                return await list_posts(
                    session, ORG, start=page_start, end=page_end, cursor=cursor, limit=100
                )

            async def raw_page() -> Any:
                return await _raw_list(raw, page_params, extra=AFTER, limit="LIMIT 101")

            ms, got = await _medians({"service": service_page, "raw": raw_page}, repeats)
            assert len(got["service"].posts) == 100 and got["service"].next_cursor
            _report("cursor page of 100, three quarters into the table", ms["service"], ms["raw"])
    finally:
        await raw.close()
        await database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--channels", type=int, default=200)
    parser.add_argument(
        "--weeks",
        type=int,
        default=1000,
        help="history spanned by the posts (1000 weeks: about 5 posts per channel per week)",
    )
    parser.add_argument("--tags", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--data-dir", default=None, help="embedded database location")
    args = parser.parse_args()
    url = os.environ.get("TIDINGS_DATABASE_URL")
    if url:
        print("database: TIDINGS_DATABASE_URL")
    else:
        data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="tidings-bench-"))
        url = start_embedded(data_dir)
        print(f"database: embedded PostgreSQL in {data_dir}")
    upgrade(url)
    _load(to_libpq_url(url), args.posts, args.channels, args.weeks, args.tags)
    _load_extras(to_libpq_url(url), args.channels)
    asyncio.run(_bench(url, args.repeats, args.weeks))


if __name__ == "__main__":
    main()

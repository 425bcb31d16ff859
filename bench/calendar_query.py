"""Calendar benchmark: the spec's calendar query over 1,000,000 posts on 200 channels.

    .venv/bin/python bench/calendar_query.py            # embedded PostgreSQL in a temp dir
    TIDINGS_DATABASE_URL=postgresql://... .venv/bin/python bench/calendar_query.py

Measures, as medians over repeated runs:
- one week of an organization's live posts with their channel and tags, by publish date, through
  the ORM (the service's query) and the same SQL through the raw driver, and their ratio;
- a page of the cursor-paginated post list deep in the table (keyset on publish_date, id).

Targets (issue 2): ORM within 1.5x of raw SQL; a week under 20 ms on the embedded database.
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

from tidings.db import Database, start_embedded, to_libpq_url
from tidings.migrations import upgrade
from tidings.posts.queries import calendar_rows, list_page

ORG = "bench-org"
START = datetime(2020, 1, 6, tzinfo=UTC)  # a Monday


def _load(url: str, posts: int, channels: int, weeks: int, tags: int) -> None:
    """Fill the database with one organization's posts (idempotent by row count)."""
    with psycopg.connect(url, autocommit=True) as conn:
        have = conn.execute("SELECT count(*) FROM post WHERE organization_id = %s", (ORG,))
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


RAW_CALENDAR = """
SELECT p.id, p.content, p.publish_date, p.state, p."group", p.release_url, p.parent_post_id,
       p.interval_in_days, i.id, i.name, i.picture, i.provider_identifier,
       (SELECT coalesce(json_agg(json_build_object('id', t.id, 'name', t.name, 'color', t.color)),
                        '[]'::json)
        FROM tags_posts tp JOIN tags t ON t.id = tp.tag_id AND t.deleted_at IS NULL
        WHERE tp.post_id = p.id)
FROM post p JOIN integration i ON i.id = p.integration_id AND i.deleted_at IS NULL
WHERE p.organization_id = %s AND p.publish_date >= %s AND p.publish_date < %s
  AND p.deleted_at IS NULL
ORDER BY p.publish_date, p.id
"""

RAW_PAGE = """
SELECT p.id, p.content, p.publish_date, p.state, p."group", p.integration_id
FROM post p
WHERE p.organization_id = %s AND p.deleted_at IS NULL
  AND (p.publish_date, p.id) > (%s, %s)
ORDER BY p.publish_date, p.id
LIMIT %s
"""


async def _median(run: Callable[[], Awaitable[Any]], repeats: int) -> tuple[float, Any]:
    result = await run()  # warm-up (plans, caches)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = await run()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000, result


async def _bench(url: str, repeats: int, weeks: int) -> None:
    database = Database(url, pool_size=1)
    raw = await psycopg.AsyncConnection.connect(to_libpq_url(url), autocommit=True)
    week_start = START + timedelta(weeks=weeks // 2)
    week_end = week_start + timedelta(days=7)
    try:
        async with database.sessionmaker() as session:

            async def orm_week() -> Any:
                return await calendar_rows(session, ORG, week_start, week_end)  # type: ignore[arg-type]

            async def raw_week() -> Any:
                cursor = await raw.execute(RAW_CALENDAR, (ORG, week_start, week_end))
                return await cursor.fetchall()

            orm_ms, orm_rows = await _median(orm_week, repeats)
            raw_ms, raw_rows = await _median(raw_week, repeats)
            assert len(orm_rows) == len(raw_rows), (len(orm_rows), len(raw_rows))
            print(f"week calendar: {len(raw_rows)} posts with channel and tags")
            print(f"  ORM  median {orm_ms:7.2f} ms")
            print(f"  raw  median {raw_ms:7.2f} ms")
            print(f"  ratio ORM/raw {orm_ms / raw_ms:5.2f}  (target <= 1.5; week target < 20 ms)")

            cursor_at = (START + timedelta(weeks=weeks * 3 // 4), "")

            async def orm_page() -> Any:
                return await list_page(session, ORG, after=cursor_at, limit=100)  # type: ignore[arg-type]

            async def raw_page() -> Any:
                cursor = await raw.execute(RAW_PAGE, (ORG, cursor_at[0], cursor_at[1], 100))
                return await cursor.fetchall()

            orm_ms, orm_rows = await _median(orm_page, repeats)
            raw_ms, raw_rows = await _median(raw_page, repeats)
            assert [r[0] for r in orm_rows] == [r[0] for r in raw_rows]
            print("cursor page of 100, three quarters into the table:")
            print(f"  ORM  median {orm_ms:7.2f} ms")
            print(f"  raw  median {raw_ms:7.2f} ms")
            print(f"  ratio ORM/raw {orm_ms / raw_ms:5.2f}")
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
    asyncio.run(_bench(url, args.repeats, args.weeks))


if __name__ == "__main__":
    main()

"""Rate limits shared by every server process, counted in PostgreSQL.

A sliding-window approximation over two fixed windows: the previous window's hits count in
proportion to how much of it still overlaps the sliding window. Hits are counted in their own
transaction, so a request that fails (a wrong password, say) still counts.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from tidings.core.errors import RateLimited
from tidings.db import Database

_HIT = text(
    """
    INSERT INTO rate_limit_counter (key, window_start, hits)
    VALUES (:key, :window_start, 1)
    ON CONFLICT (key, window_start) DO UPDATE SET hits = rate_limit_counter.hits + 1
    RETURNING hits
    """
)
_PREVIOUS = text("SELECT hits FROM rate_limit_counter WHERE key = :key AND window_start = :ws")


def _window_start(now: datetime, window: int) -> datetime:
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % window, tz=UTC)


async def hit(
    database: Database,
    key: str,
    *,
    limit: int,
    window_seconds: int,
    message: str = "too many requests, try again later",
    now: datetime | None = None,
) -> None:
    """Count one hit of ``key``; raise :class:`RateLimited` (429 + Retry-After) past ``limit``."""
    now = now or datetime.now(UTC)
    start = _window_start(now, window_seconds)
    async with database.session() as session:
        current = (await session.execute(_HIT, {"key": key, "window_start": start})).scalar_one()
        previous = (
            await session.execute(
                _PREVIOUS, {"key": key, "ws": start - timedelta(seconds=window_seconds)}
            )
        ).scalar_one_or_none() or 0
    elapsed = (now - start).total_seconds() / window_seconds
    estimate = previous * (1 - elapsed) + current
    if estimate > limit:
        retry_after = math.ceil((start + timedelta(seconds=window_seconds) - now).total_seconds())
        raise RateLimited(message, retry_after=retry_after)


async def purge_expired(database: Database, *, older_than: timedelta) -> int:
    """Delete counters of windows that ended more than ``older_than`` ago."""
    async with database.session() as session:
        result = await session.execute(
            text("DELETE FROM rate_limit_counter WHERE window_start < :t"),
            {"t": datetime.now(UTC) - older_than},
        )
    return int(getattr(result, "rowcount", 0) or 0)

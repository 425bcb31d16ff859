"""The per-organization limit on ``POST /posts`` (``TIDINGS_PUBLIC_API_POSTS_PER_HOUR``).

Counted in PostgreSQL by :func:`tidings.core.ratelimit.hit`, or in Redis when
``TIDINGS_REDIS_URL`` is set; both are shared by every server process, so the limit holds for the
organization however many processes serve it. Redis uses the same sliding-window approximation
as the PostgreSQL counter (the previous hour's hits weigh in proportion to how much of it is
still inside the last hour). When Redis cannot be reached, PostgreSQL counts instead: a Redis
outage never turns into failed requests nor into an unlimited API.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any, Final

from tidings.config import Settings
from tidings.core.errors import RateLimited
from tidings.core.ratelimit import hit
from tidings.db import Database

logger = logging.getLogger("tidings.public_api")

WINDOW_SECONDS: Final = 3600
_PREFIX: Final = "tidings:ratelimit:"

# One Redis client per (URL, event loop): an asyncio connection pool belongs to its loop.
_clients: dict[tuple[str, int], Any] = {}


def _key(org_id: str) -> str:
    return f"public_api:posts:{org_id}"


def _message(limit: int) -> str:
    return f"too many posts created through the Public API: at most {limit} per hour"


def _redis_client(url: str) -> Any:
    import redis.asyncio as redis_asyncio

    index = (url, id(asyncio.get_running_loop()))
    client = _clients.get(index)
    if client is None:
        client = redis_asyncio.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=2, decode_responses=True
        )
        _clients[index] = client
    return client


async def close_redis_clients() -> None:
    """Close the Redis clients of this process (tests and shutdown)."""
    clients = list(_clients.values())
    _clients.clear()
    for client in clients:
        await client.aclose()


async def redis_hit(
    url: str, key: str, *, limit: int, window_seconds: int, now: float | None = None
) -> None:
    """Count one hit of ``key`` in Redis; :class:`RateLimited` past ``limit`` per window."""
    now = time.time() if now is None else now
    start = int(now) - int(now) % window_seconds
    current_key = f"{_PREFIX}{key}:{start}"
    previous_key = f"{_PREFIX}{key}:{start - window_seconds}"
    client = _redis_client(url)
    async with client.pipeline(transaction=True) as pipe:
        pipe.incr(current_key)
        pipe.expire(current_key, window_seconds * 2)
        pipe.get(previous_key)
        current, _, previous = await pipe.execute()
    elapsed = (now - start) / window_seconds
    estimate = int(previous or 0) * (1 - elapsed) + int(current)
    if estimate > limit:
        retry_after = math.ceil(start + window_seconds - now)
        raise RateLimited(_message(limit), retry_after=retry_after)


async def count_post_creation(database: Database, settings: Settings, org_id: str) -> None:
    """Count one ``POST /posts`` of ``org_id``; 429 with Retry-After past the hourly limit.

    A limit of 0 or less turns the limit off.
    """
    limit = settings.public_api_posts_per_hour
    if limit <= 0:
        return
    key = _key(org_id)
    if settings.redis_url:
        try:
            await redis_hit(settings.redis_url, key, limit=limit, window_seconds=WINDOW_SECONDS)
            return
        except RateLimited:
            raise
        except Exception as exc:  # any Redis failure: count in PostgreSQL instead
            logger.warning("Redis rate limit unavailable, counting in PostgreSQL: %s", exc)
    await hit(database, key, limit=limit, window_seconds=WINDOW_SECONDS, message=_message(limit))

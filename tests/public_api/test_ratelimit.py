"""The per-organization limit on POST /posts: 429 with Retry-After past it, counted in
PostgreSQL or Redis so that it holds across server processes."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.channels.factories import make_channel
from tests.conftest import asgi_client, build_app, make_tenant
from tests.public_api.conftest import ApiKey
from tidings.config import get_settings
from tidings.core.ratelimit_models import RateLimitCounter
from tidings.core.tenancy import OrgId
from tidings.db import Database
from tidings.orgs.service import rotate_api_key

BASE = "/public/v1"
REDIS_URL = "redis://127.0.0.1:6379/0"


def draft(channel_id: str, content: str = "hello") -> dict[str, Any]:
    return {
        "type": "draft",
        "posts": [{"integration": {"id": channel_id}, "value": [{"content": content}]}],
    }


@pytest.fixture
def limit(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Three posts per hour (set before the app reads its settings)."""
    monkeypatch.setenv("TIDINGS_PUBLIC_API_POSTS_PER_HOUR", "3")
    get_settings.cache_clear()
    yield 3
    get_settings.cache_clear()


async def test_limit_per_organization_with_retry_after(
    limit: int, client: httpx.AsyncClient, db: AsyncSession, api: ApiKey, other_api: ApiKey
) -> None:
    mine = await make_channel(db, api.org_id, provider="mastodon")
    theirs = await make_channel(db, other_api.org_id, provider="mastodon")
    # A body refused before it reaches the service does not count.
    invalid = await client.post(f"{BASE}/posts", json={"type": "draft"}, headers=api.headers)
    assert invalid.status_code == 422
    for i in range(limit):
        ok = await client.post(f"{BASE}/posts", json=draft(mine.id, f"p{i}"), headers=api.headers)
        assert ok.status_code == 201, ok.text
    over = await client.post(f"{BASE}/posts", json=draft(mine.id), headers=api.headers)
    assert over.status_code == 429, over.text
    assert over.json()["error"] == "rate_limited" and "3 per hour" in over.json()["message"]
    assert 1 <= int(over.headers["Retry-After"]) <= 3600
    # Another organization has its own budget; reading is not limited.
    other = await client.post(f"{BASE}/posts", json=draft(theirs.id), headers=other_api.headers)
    assert other.status_code == 201
    assert (await client.get(f"{BASE}/integrations", headers=api.headers)).status_code == 200


async def _setup(database: Database) -> tuple[str, str, str]:
    tenant = await make_tenant(database)
    async with database.session() as session:
        key = await rotate_api_key(session, OrgId(tenant.org_id))
        channel = await make_channel(session, tenant.org_id, provider="mastodon")
    return tenant.org_id, key, channel.id


async def _burst(database: Database, key: str, channel_id: str, count: int) -> list[int]:
    """``count`` concurrent POST /posts through two apps with their own connection pools, as
    two server processes would send them."""
    other = Database(database.url, pool_size=5)
    try:
        apps = [build_app(database), build_app(other)]
        async with asgi_client(apps[0]) as first, asgi_client(apps[1]) as second:
            clients = [first, second]
            responses = await asyncio.gather(
                *(
                    clients[i % 2].post(
                        f"{BASE}/posts",
                        json=draft(channel_id, f"n{i}"),
                        headers={"Authorization": key},
                    )
                    for i in range(count)
                )
            )
    finally:
        await other.dispose()
    return sorted(r.status_code for r in responses)


async def test_the_limit_holds_across_processes_in_postgresql(
    limit: int, fresh_database: Database
) -> None:
    org_id, key, channel_id = await _setup(fresh_database)
    statuses = await _burst(fresh_database, key, channel_id, 8)
    assert statuses == [201] * limit + [429] * (8 - limit)
    async with fresh_database.session() as session:
        hits = await session.scalar(
            select(func.sum(RateLimitCounter.hits)).where(
                RateLimitCounter.key == f"public_api:posts:{org_id}"
            )
        )
    assert hits == 8


def _redis_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


async def test_the_limit_holds_across_processes_in_redis(
    limit: int, monkeypatch: pytest.MonkeyPatch, fresh_database: Database
) -> None:
    if not _redis_answers():
        pytest.skip("no Redis server on 127.0.0.1:6379")
    monkeypatch.setenv("TIDINGS_REDIS_URL", REDIS_URL)
    get_settings.cache_clear()
    org_id, key, channel_id = await _setup(fresh_database)
    statuses = await _burst(fresh_database, key, channel_id, 7)
    assert statuses == [201] * limit + [429] * (7 - limit)
    # Counted in Redis, not in PostgreSQL.
    async with fresh_database.session() as session:
        rows = await session.scalar(text("SELECT count(*) FROM rate_limit_counter"))
    assert rows == 0
    import redis.asyncio as redis_asyncio

    probe = redis_asyncio.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        keys = [k async for k in probe.scan_iter(f"tidings:ratelimit:public_api:posts:{org_id}:*")]
        assert len(keys) == 1
        assert int(await probe.get(keys[0]) or 0) == 7
        await probe.delete(*keys)
    finally:
        await probe.aclose()


async def test_an_unreachable_redis_falls_back_to_postgresql(
    limit: int, monkeypatch: pytest.MonkeyPatch, fresh_database: Database
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("TIDINGS_REDIS_URL", f"redis://127.0.0.1:{port}/0")
    get_settings.cache_clear()
    org_id, key, channel_id = await _setup(fresh_database)
    app = build_app(fresh_database)
    async with asgi_client(app) as client:
        statuses = [
            (
                await client.post(
                    f"{BASE}/posts", json=draft(channel_id), headers={"Authorization": key}
                )
            ).status_code
            for _ in range(limit + 1)
        ]
    assert statuses == [201] * limit + [429]
    async with fresh_database.session() as session:
        hits = await session.scalar(
            select(func.sum(RateLimitCounter.hits)).where(
                RateLimitCounter.key == f"public_api:posts:{org_id}"
            )
        )
    assert hits == limit + 1

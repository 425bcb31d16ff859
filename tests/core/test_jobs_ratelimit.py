"""Jobs are deferred inside the caller's transaction; the worker runs them; rate limits are
shared through PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from tidings.channels.models import OAuthState
from tidings.core import ratelimit
from tidings.core.errors import RateLimited
from tidings.core.jobs import close_jobs, defer_in_session, job_app, load_tasks, open_jobs
from tidings.db import Database


async def _jobs(database: Database) -> list[tuple[str, str | None, str]]:
    async with database.session() as session:
        rows = await session.execute(
            text("SELECT task_name, queueing_lock, status FROM procrastinate_jobs ORDER BY id")
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_a_job_deferred_in_a_rolled_back_transaction_never_exists(
    fresh_database: Database,
) -> None:
    with pytest.raises(RuntimeError):
        async with fresh_database.session() as session:
            await defer_in_session(session, "core.housekeeping", timestamp=0)
            raise RuntimeError("the caller's write failed")
    assert await _jobs(fresh_database) == []

    when = datetime.now(UTC) + timedelta(hours=1)
    async with fresh_database.session() as session:
        job_id = await defer_in_session(
            session, "core.housekeeping", schedule_at=when, queueing_lock="lock-1", timestamp=0
        )
        assert job_id is not None
        # A second job with the same queueing lock is refused without breaking the transaction.
        assert (
            await defer_in_session(
                session, "core.housekeeping", queueing_lock="lock-1", timestamp=0
            )
            is None
        )
        assert await session.scalar(select(func.count()).select_from(OAuthState)) == 0
    assert await _jobs(fresh_database) == [("core.housekeeping", "lock-1", "todo")]


async def test_the_worker_runs_deferred_jobs(fresh_database: Database) -> None:
    async with fresh_database.session() as session:
        session.add(
            OAuthState(
                state="expired",
                purpose="channel",
                provider="x",
                expires_at=datetime.now(UTC) - timedelta(minutes=1),
            )
        )
        session.add(
            OAuthState(
                state="live",
                purpose="channel",
                provider="x",
                expires_at=datetime.now(UTC) + timedelta(minutes=10),
            )
        )
        await defer_in_session(session, "core.housekeeping", timestamp=0)
    load_tasks()
    pool = await open_jobs(fresh_database.url, max_size=3)
    try:
        worker = asyncio.create_task(
            job_app.run_worker_async(wait=False, install_signal_handlers=False, concurrency=1)
        )
        await asyncio.wait_for(worker, timeout=30)
    finally:
        await close_jobs(pool)
    housekeeping = [job for job in await _jobs(fresh_database) if job[0] == "core.housekeeping"]
    assert housekeeping and all(status == "succeeded" for _, _, status in housekeeping)
    async with fresh_database.session() as session:
        states = (await session.execute(select(OAuthState.state))).scalars().all()
    assert states == ["live"]


async def test_rate_limit_counts_across_transactions_and_answers_retry_after(
    fresh_database: Database,
) -> None:
    now = datetime(2026, 11, 25, 12, 0, 30, tzinfo=UTC)
    for _ in range(3):
        await ratelimit.hit(fresh_database, "login:ip:1.2.3.4", limit=3, window_seconds=60, now=now)
    with pytest.raises(RateLimited) as info:
        await ratelimit.hit(fresh_database, "login:ip:1.2.3.4", limit=3, window_seconds=60, now=now)
    assert info.value.status_code == 429
    assert info.value.headers["Retry-After"] == "30"
    # Another key is independent.
    await ratelimit.hit(fresh_database, "login:ip:5.6.7.8", limit=3, window_seconds=60, now=now)
    # The previous window still weighs on the next one, then fades.
    later = now + timedelta(seconds=45)  # 15 s into the next window: 4 * 0.75 + 1 > 3
    with pytest.raises(RateLimited):
        await ratelimit.hit(
            fresh_database, "login:ip:1.2.3.4", limit=3, window_seconds=60, now=later
        )
    much_later = now + timedelta(seconds=200)
    await ratelimit.hit(
        fresh_database, "login:ip:1.2.3.4", limit=3, window_seconds=60, now=much_later
    )


async def test_jobs_can_be_reopened_in_one_process(fresh_database: Database) -> None:
    for _ in range(2):
        pool = await open_jobs(fresh_database.url, max_size=2)
        try:
            async with fresh_database.session() as session:
                await defer_in_session(session, "core.housekeeping", timestamp=0)
            # The app's own connection (not the session's) must be the live pool.
            job = await job_app.job_manager.list_jobs_async()
            assert job
        finally:
            await close_jobs(pool)

"""The job queue: one Procrastinate app over the same PostgreSQL as the data.

Domains declare their tasks in their ``tasks.py`` with ``@job_app.task(...)`` and list the module
in :data:`TASK_MODULES`. Jobs that concern rows are deferred with :func:`defer_in_session`, inside
the transaction that writes those rows: either both commit or neither does (the transactional
outbox), so a post can never be saved without its publish job, nor a job run for a post that was
never saved.
"""

from __future__ import annotations

import importlib.util
import logging
from datetime import datetime
from typing import Any

import procrastinate
from procrastinate import exceptions as procrastinate_exceptions
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.db import to_libpq_url

logger = logging.getLogger("tidings.jobs")

#: Every module that declares tasks; the worker imports them all.
TASK_MODULES = [
    "tidings.core.tasks",
    "tidings.channels.tasks",
    "tidings.posts.tasks",
    "tidings.media.tasks",
    "tidings.automation.tasks",
    "tidings.notifications.tasks",
]


def _existing(modules: list[str]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is not None]


job_app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(),
    import_paths=_existing(TASK_MODULES),
    # New jobs wake workers through LISTEN/NOTIFY; jobs scheduled for later are found by
    # polling, so a post due at 12:00:00 should not wait Procrastinate's default 5 s.
    worker_defaults={"fetch_job_polling_interval": 1.0},
)

AlreadyEnqueued = procrastinate_exceptions.AlreadyEnqueued


async def open_jobs(database_url: str, *, max_size: int = 10) -> AsyncConnectionPool:
    """Connect the job app to the database; returns the pool (closed by :func:`close_jobs`)."""
    pool = AsyncConnectionPool(
        to_libpq_url(database_url),
        open=False,
        min_size=1,
        max_size=max_size,
        check=AsyncConnectionPool.check_connection,
    )
    await pool.open(wait=True)
    await job_app.open_async(pool)
    return pool


async def close_jobs(pool: AsyncConnectionPool | None) -> None:
    """Disconnect the job app, so that a later :func:`open_jobs` starts afresh."""
    await job_app.close_async()
    if pool is not None:
        await pool.close()
    # Procrastinate leaves a pool it was given in place on close (it does not own it); forget it,
    # or the next open_jobs of this process would silently keep using the closed one.
    connector = job_app.connector
    if isinstance(connector, procrastinate.PsycopgConnector):
        connector._async_pool = None
        connector._pool_externally_set = False


def load_tasks() -> None:
    """Import every task module, so tasks can be deferred by name and run by the worker."""
    for module in _existing(TASK_MODULES):
        importlib.import_module(module)


async def defer_in_session(
    session: AsyncSession,
    task_name: str,
    *,
    schedule_at: datetime | None = None,
    queueing_lock: str | None = None,
    lock: str | None = None,
    queue: str | None = None,
    priority: int | None = None,
    **task_kwargs: Any,
) -> int | None:
    """Defer ``task_name`` on the session's own connection, inside its transaction.

    Returns the job id, or ``None`` when ``queueing_lock`` already has a waiting job (the
    savepoint keeps that refusal from aborting the caller's transaction).
    """
    load_tasks()
    task = job_app.tasks[task_name]
    options: dict[str, Any] = {
        "schedule_at": schedule_at,
        "queueing_lock": queueing_lock,
        "lock": lock,
    }
    if queue is not None:
        options["queue"] = queue
    if priority is not None:
        options["priority"] = priority
    try:
        async with session.begin_nested():
            # Asking for the connection inside the nested transaction emits the SAVEPOINT.
            connection = await session.connection()
            raw = await connection.get_raw_connection()
            options["connection"] = raw.driver_connection
            job_id: int = await task.configure(**options).defer_async(**task_kwargs)
    except AlreadyEnqueued:
        return None
    return job_id

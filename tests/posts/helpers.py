"""Helpers of the engine tests: real Procrastinate workers, a media file server, waiting."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from starlette.responses import Response

from tests.channels.providers.helpers import PNG
from tests.channels.providers.servers.base import FakePlatform, RecordedRequest
from tests.channels.providers.servers.mastodon import FakeMastodon
from tidings.channels.models import Integration
from tidings.db import Database


class MediaFiles(FakePlatform):
    """Serves ``/files/<name>`` (a PNG) as a public media URL would."""

    def setup_routes(self) -> None:
        self.add("GET", "/files/{name}", self.file)

    async def file(self, request: RecordedRequest) -> Response:
        return Response(PNG, media_type="image/png")


def mastodon_account(fake: FakeMastodon) -> dict[str, Any]:
    """Tokens and instance details of a connected account on ``fake`` (refreshable)."""
    fake.oauth.add_client("cid-test", "csecret-test", [])
    issued = fake.oauth.issue("109", "write:statuses", refresh=True)
    return {
        "token": issued["access_token"],
        "refresh_token": issued["refresh_token"],
        "internal_id": "109@127.0.0.1",
        "custom_instance_details": json.dumps(
            {
                "instance_url": fake.base_url,
                "client_id": "cid-test",
                "client_secret": "csecret-test",
            }
        ),
    }


async def add_mastodon_channel(
    database: Database, org_id: str, fake: FakeMastodon, *, name: str = "Alice M", **fields: Any
) -> str:
    """A committed Mastodon channel on ``fake``; returns its id."""
    account = mastodon_account(fake)
    async with database.session() as session:
        row = Integration(
            organization_id=org_id,
            name=name,
            provider_identifier="mastodon",
            type="social",
            **(account | {"internal_id": f"109@{name.replace(' ', '')}"} | fields),
        )
        session.add(row)
        await session.flush()
        return row.id


@contextlib.asynccontextmanager
async def running_workers(
    database: Database,
    *,
    count: int = 1,
    concurrency: int = 4,
    graceful: float | None = 5.0,
) -> AsyncIterator[list[asyncio.Task[None]]]:
    """``count`` real Procrastinate workers on ``database`` for the duration of the block."""
    from tidings.core.jobs import close_jobs, job_app, load_tasks, open_jobs

    load_tasks()
    pool = await open_jobs(database.url, max_size=count * (concurrency + 2) + 2)
    workers = [
        asyncio.create_task(
            job_app.run_worker_async(
                name=f"test-worker-{i}",
                concurrency=concurrency,
                install_signal_handlers=False,
                wait=True,
                fetch_job_polling_interval=0.05,
                abort_job_polling_interval=0.5,
                shutdown_graceful_timeout=graceful,
            )
        )
        for i in range(count)
    ]
    try:
        yield workers
    finally:
        for worker in workers:
            worker.cancel()
        for worker in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        await close_jobs(pool)
        # Procrastinate keeps a closed external pool after close_async (3.x): forget it.
        connector: Any = job_app.connector
        connector._async_pool = None
        connector._pool_externally_set = False


async def eventually(predicate: Any, *, timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Wait until ``await predicate()`` (or ``predicate()``) is truthy and return it."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


@contextlib.contextmanager
def sql_statements() -> Iterator[list[str]]:
    """The SQL statements every engine sends while the block runs (to count queries)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)

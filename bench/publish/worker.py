"""One Tidings job worker process for the publish benchmark (what ``tidings worker`` runs, with
the job queue's polling interval as an option).

    .venv/bin/python bench/publish/worker.py --database-url postgresql://... --concurrency 20
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))


async def run(url: str, concurrency: int, polling: float) -> None:
    from tidings.core.jobs import close_jobs, job_app, load_tasks, open_jobs
    from tidings.db import Database, set_database

    database = Database(url, pool_size=20)
    set_database(database)
    load_tasks()
    pool = await open_jobs(url, max_size=concurrency + 4)
    try:
        await job_app.run_worker_async(
            concurrency=concurrency,
            wait=True,
            fetch_job_polling_interval=polling,
            install_signal_handlers=True,
            shutdown_graceful_timeout=10,
        )
    finally:
        await close_jobs(pool)
        await database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", default=os.environ.get("TIDINGS_DATABASE_URL"))
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--polling", type=float, default=0.5)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.DEBUG if os.environ.get("BENCH_DEBUG") else logging.WARNING,
        format="worker %(process)d %(message)s",
    )
    if args.uvloop:
        import uvloop

        uvloop.install()
    asyncio.run(run(args.database_url, args.concurrency, args.polling))


if __name__ == "__main__":
    main()

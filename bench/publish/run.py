"""Publishing benchmark: throughput of a burst and lag under steady load.

    .venv/bin/python bench/publish/run.py               # embedded PostgreSQL in a temp dir
    TIDINGS_DATABASE_URL=postgresql://... .venv/bin/python bench/publish/run.py

Against a local Mastodon-like instance answering every status after 50 ms (``server.py``, its
own process), with real Tidings worker processes (``worker.py``, what ``tidings worker`` runs):

1. burst, one worker: 10,000 posts over 100 channels, all due at the same instant;
2. the same burst with two worker processes;
3. steady load: 20 posts/s for 30 s over the same channels, one worker.

Posts are created through the posts service (validation, rows, publish jobs, as the API does)
with a far-away date; the burst's due time is then set in one statement (rows and their jobs
together) so that every post comes due at once, a few seconds after the workers are up.

Printed: posts published per second (from the due time to the provider's receipt of the last
one), the lag from due time to the provider's receipt (p50, p99, max) under steady load, and
checks: every post received once (no idempotency key twice), every post PUBLISHED.
Targets (issue 5): >= 300 posts/s with one worker, near-linear with two; p99 lag < 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from tidings.channels.models import Integration  # noqa: E402
from tidings.core.enums import State  # noqa: E402
from tidings.core.tenancy import OrgId  # noqa: E402
from tidings.db import Database, set_database, start_embedded, to_libpq_url  # noqa: E402
from tidings.migrations import upgrade  # noqa: E402
from tidings.orgs.models import Organization  # noqa: E402
from tidings.posts.scheduling import ALARM_LEAD  # noqa: E402
from tidings.posts.schemas import CreatePostsRequest  # noqa: E402
from tidings.posts.service import create_posts  # noqa: E402

HERE = Path(__file__).resolve().parent
BENCH_DB = "tidings_bench_publish"
SERVER_PID: list[int] = []
FAR = datetime(2099, 1, 1, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def fresh_database(server_url: str) -> str:
    """A new, migrated benchmark database on the server of ``server_url``."""
    admin = with_database(server_url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    url = with_database(server_url, BENCH_DB)
    upgrade(url)
    return url


def start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, *args], env={**os.environ, **(env or {})}, cwd=ROOT)


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy so far (all cores, Linux)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / TICKS


PG_DIRS: list[Path] = []


def postgres_cpu() -> float | None:
    """CPU seconds used by the embedded PostgreSQL (postmaster, its live children, and the
    children it has reaped), or None for an external server."""
    if not PG_DIRS:
        return None
    try:
        postmaster = int((PG_DIRS[0] / "postmaster.pid").read_text().split()[0])
        fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    total = sum(int(v) for v in fields[11:15]) / TICKS
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            child = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(child[1]) == postmaster:
            total += (int(child[11]) + int(child[12])) / TICKS
    return total


def cpu_report(
    posts: int,
    workers: dict[int, float],
    server: tuple[int, float],
    postgres: float | None,
    busy: float,
    seconds: float,
) -> None:
    """Print CPU milliseconds per post: the workers, PostgreSQL, the provider, the rest."""
    used_workers = sum(process_cpu(pid) - before for pid, before in workers.items())
    used_server = process_cpu(server[0]) - server[1]
    pg_now = postgres_cpu()
    used_pg = pg_now - postgres if pg_now is not None and postgres is not None else 0.0
    used_all = machine_busy() - busy
    other = used_all - used_workers - used_server - used_pg
    cores = os.cpu_count() or 1

    def ms(value: float) -> str:
        return f"{value / posts * 1000:.2f} ms"

    print(
        f"  CPU per post: workers {ms(used_workers)}, PostgreSQL "
        f"{ms(used_pg) if pg_now is not None else 'n/a'}, provider {ms(used_server)}, other "
        f"processes on the machine {ms(other)} (machine {used_all / seconds / cores:.0%} busy)",
        flush=True,
    )


def start_workers(url: str, count: int, concurrency: int) -> list[subprocess.Popen[bytes]]:
    return [
        start(
            [str(HERE / "worker.py"), "--database-url", url, "--concurrency", str(concurrency)],
            env={"TIDINGS_DATABASE_URL": url},
        )
        for _ in range(count)
    ]


async def load(
    database: Database, server: str, channels: int, per_channel: int, content: Any
) -> tuple[str, list[str]]:
    """One organization, ``channels`` Mastodon channels on ``server`` and ``per_channel`` posts
    on each (created through the service at a far date); returns org id and channel ids."""
    async with database.session() as session:
        org = Organization(name="Bench")
        session.add(org)
        await session.flush()
        rows = [
            Integration(
                organization_id=org.id,
                internal_id=f"{i}@bench",
                name=f"Bench {i}",
                provider_identifier="mastodon",
                type="social",
                token="bench-token",
                custom_instance_details=json.dumps({"instance_url": server}),
            )
            for i in range(channels)
        ]
        session.add_all(rows)
        await session.flush()
        org_id, channel_ids = org.id, [r.id for r in rows]
    for k in range(per_channel):
        async with database.session() as session:
            request = CreatePostsRequest.model_validate(
                {
                    "type": "schedule",
                    "date": FAR.isoformat(),
                    "posts": [
                        {"integration": {"id": c}, "value": [{"content": content(k, i)}]}
                        for i, c in enumerate(channel_ids)
                    ],
                }
            )
            await create_posts(session, OrgId(org_id), request)
    return org_id, channel_ids


def set_due(url: str, org_id: str, due: list[datetime] | datetime) -> None:
    """Move the organization's posts (and their publish jobs) to their due times: one instant
    for all, or one per post in creation order (as the service would have scheduled them)."""
    with psycopg.connect(url, autocommit=False) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM post WHERE organization_id = %s ORDER BY id", (org_id,)
            )
        ]
        dates = [due] * len(ids) if isinstance(due, datetime) else list(due)
        conn.execute("CREATE TEMP TABLE moved (id text, at timestamptz) ON COMMIT DROP")
        with conn.cursor().copy("COPY moved (id, at) FROM STDIN") as copy:
            for post_id, at in zip(ids, dates, strict=True):
                copy.write_row((post_id, at))
        conn.execute("UPDATE post p SET publish_date = m.at FROM moved m WHERE p.id = m.id")
        conn.execute(
            """
            UPDATE procrastinate_jobs j
            SET scheduled_at = m.at - make_interval(secs => %s),
                queueing_lock = 'publish:' || m.id || ':'
                    || (extract(epoch FROM m.at) * 1000000)::bigint,
                args = jsonb_set(j.args, '{at}',
                                 to_jsonb((extract(epoch FROM m.at) * 1000000)::bigint))
            FROM moved m
            WHERE j.status = 'todo' AND j.task_name = 'posts.publish'
              AND j.args->>'post_id' = m.id
            """,
            (ALARM_LEAD.total_seconds(),),
        )
        conn.commit()


async def wait_for(server: str, count: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            stats: dict[str, Any] = (await client.get(f"{server}/stats")).json()
            if stats["count"] >= count or time.monotonic() > deadline:
                return stats
            await asyncio.sleep(0.2)


async def reset(server: str) -> None:
    async with httpx.AsyncClient() as client:
        await client.post(f"{server}/reset")


def published(url: str, org_id: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM post WHERE organization_id = %s AND state = %s",
            (org_id, State.PUBLISHED.value),
        ).fetchone()
    return int(row[0]) if row else 0


async def wait_published(url: str, org_id: str, count: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while True:
        done = published(url, org_id)
        if done >= count or time.monotonic() > deadline:
            return done
        await asyncio.sleep(0.2)


async def burst(
    server_url: str, server: str, workers: int, channels: int, per_channel: int, concurrency: int
) -> float:
    url = fresh_database(server_url)
    database = Database(url, pool_size=4)
    set_database(database)
    total = channels * per_channel
    started = time.perf_counter()
    org_id, _ = await load(database, server, channels, per_channel, lambda k, i: f"burst {k}/{i}")
    print(
        f"  loaded {total:,} posts through the service in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    await database.dispose()
    await reset(server)
    processes = start_workers(url, workers, concurrency)
    try:
        await asyncio.sleep(4)  # workers up and idle
        due = datetime.now(UTC) + timedelta(seconds=1)
        before = {p.pid: process_cpu(p.pid) for p in processes}
        server_before = (SERVER_PID[0], process_cpu(SERVER_PID[0]))
        pg_before = postgres_cpu()
        busy = machine_busy()
        clock = time.monotonic()
        set_due(url, org_id, due)
        stats = await wait_for(server, total, timeout=600)
        done = await wait_published(url, org_id, total)
        cpu_report(total, before, server_before, pg_before, busy, time.monotonic() - clock)
    finally:
        stop(processes)
    arrivals = sorted(a for _, a in stats["receipts"])
    span = arrivals[-1] - due.timestamp()
    rate = len(arrivals) / span
    print(
        f"  {workers} worker process(es): {len(arrivals):,} received in {span:.2f} s after due "
        f"-> {rate:,.0f} posts/s (first after {arrivals[0] - due.timestamp():.2f} s); "
        f"PUBLISHED {done:,}/{total:,}; duplicates {stats['duplicates']}; "
        f"max in flight {stats['max_in_flight']}",
        flush=True,
    )
    return rate


async def steady(
    server_url: str, server: str, rate: float, seconds: float, channels: int, concurrency: int
) -> tuple[float, float, float]:
    url = fresh_database(server_url)
    database = Database(url, pool_size=4)
    set_database(database)
    total = int(rate * seconds)
    per_channel = -(-total // channels)
    org_id, _ = await load(
        database, server, channels, per_channel, lambda k, i: f"steady {k}/{i} due=DUE"
    )
    await database.dispose()
    await reset(server)
    processes = start_workers(url, 1, concurrency)
    try:
        await asyncio.sleep(4)
        start_at = datetime.now(UTC) + timedelta(seconds=2)
        dues = [start_at + timedelta(seconds=i / rate) for i in range(per_channel * channels)]
        # The due time goes into the text, so the provider can tell the lag itself.
        with psycopg.connect(url, autocommit=True) as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM post WHERE organization_id = %s ORDER BY id", (org_id,)
                )
            ]
            with conn.cursor() as cur:
                cur.executemany(
                    "UPDATE post SET content = replace(content, 'DUE', %s) WHERE id = %s",
                    [
                        (str(int(due.timestamp() * 1000)), post_id)
                        for post_id, due in zip(ids, dues, strict=True)
                    ],
                )
        set_due(url, org_id, dues)
        stats = await wait_for(server, len(dues), timeout=seconds + 120)
        done = await wait_published(url, org_id, len(dues))
    finally:
        stop(processes)
    by_due = sorted(
        (due_ms / 1000, arrived - due_ms / 1000) for due_ms, arrived in stats["receipts"]
    )
    if os.environ.get("BENCH_DEBUG"):
        first_due = by_due[0][0]
        slow = [(round(d - first_due, 2), round(lag, 3)) for d, lag in by_due if lag > 0.3]
        print(f"  slow (seconds after the first due, lag): {slow}")
    lags = sorted(lag for _, lag in by_due)
    p50 = statistics.median(lags)
    p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
    print(
        f"  {len(lags)} posts at {rate:g}/s: lag p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
        f"max {lags[-1] * 1000:.0f} ms; PUBLISHED {done}/{len(dues)}; "
        f"duplicates {stats['duplicates']}",
        flush=True,
    )
    return p50, p99, lags[-1]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--per-channel", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=10, help="job slots per worker")
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--skip", action="append", default=[], help="burst1, burst2 or steady")
    args = parser.parse_args()

    # As a production deployment would: with the key in the environment (a generated key is
    # read back from the data dir on every encryption and decryption).
    os.environ.setdefault("TIDINGS_SECRET_KEY", "bench-publish-secret-key")
    # The provider is a loopback server: allowed the way a LAN setup allows its own instance.
    os.environ.setdefault("TIDINGS_ALLOW_PRIVATE_URLS", "true")
    server_url = os.environ.get("TIDINGS_DATABASE_URL")
    if server_url:
        server_url = to_libpq_url(server_url)
    else:
        data_dir = Path(tempfile.mkdtemp(prefix="tidings-bench-publish-"))
        server_url = start_embedded(data_dir)
        PG_DIRS.append(data_dir / "postgres")
        print(f"embedded PostgreSQL in {data_dir}", flush=True)
    port = free_port()
    server = f"http://127.0.0.1:{port}"
    platform = start([str(HERE / "server.py"), "--port", str(port), "--latency", str(args.latency)])
    SERVER_PID.append(platform.pid)
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                try:
                    await client.get(f"{server}/stats")
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
        print(
            f"provider answering after {args.latency * 1000:.0f} ms; "
            f"{args.channels} channels; {os.cpu_count()} CPUs",
            flush=True,
        )
        rates: dict[int, float] = {}
        for workers in (1, 2):
            if f"burst{workers}" in args.skip:
                continue
            print(f"burst of {args.channels * args.per_channel:,} posts, {workers} worker(s):")
            rates[workers] = await burst(
                server_url, server, workers, args.channels, args.per_channel, args.concurrency
            )
        if len(rates) == 2:
            print(f"  scaling with two workers: x{rates[2] / rates[1]:.2f}")
        if "steady" not in args.skip:
            print(f"steady load, {args.rate:g} posts/s for {args.seconds:g} s, 1 worker:")
            await steady(
                server_url, server, args.rate, args.seconds, args.channels, args.concurrency
            )
    finally:
        stop([platform])


if __name__ == "__main__":
    asyncio.run(main())

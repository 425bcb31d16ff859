"""Database wiring: URL handling, the embedded PostgreSQL, engine and sessions.

Sessions commit at the edge: the request dependency (:func:`get_session`) and the job/CLI helper
(:meth:`Database.session`) commit when the unit of work ends without an error and roll back
otherwise. Domain code only flushes.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from fastapi import Request
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

import tidings.all_models  # noqa: F401  (every mapper must be known before the first query)
from tidings.config import Settings

logger = logging.getLogger("tidings.db")

EMBEDDED_DATABASE = "tidings"


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached or started; the message says what to do."""


def to_libpq_url(url: str) -> str:
    """``postgresql://...`` as psycopg and procrastinate expect it (drops a SQLAlchemy driver)."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme == "postgres":
        scheme = "postgresql"
    return urlunsplit(("postgresql", *parts[1:])) if scheme == "postgresql" else url


def to_sqlalchemy_url(url: str) -> str:
    """The same URL with SQLAlchemy's psycopg 3 driver."""
    parts = urlsplit(to_libpq_url(url))
    return urlunsplit(("postgresql+psycopg", *parts[1:]))


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop pids of dead processes from pgserver's list of users of the server.

    pgserver stops the server when its last user exits, but a user killed without running its
    exit hooks stays listed forever and the server would then never stop.
    """
    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _pid_alive(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_embedded(data_dir: Path) -> str:
    """Start (or reuse) the private PostgreSQL in ``data_dir`` and return its libpq URL.

    The server stops when the last Tidings process using it exits.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "postgres"
    _forget_dead_handles(pgdata)
    try:
        server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    except Exception as exc:  # pgserver raises bare subprocess/OS errors
        raise DatabaseUnavailable(
            f"cannot start the embedded PostgreSQL in {pgdata}: {exc}. "
            f"See {pgdata / 'log'} or set TIDINGS_DATABASE_URL."
        ) from exc
    admin_url: str = server.get_uri("postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DATABASE,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{EMBEDDED_DATABASE}"')
    url: str = server.get_uri(EMBEDDED_DATABASE)
    return url


def resolve_database_url(settings: Settings) -> str:
    """The libpq URL to use: the configured one, else the embedded server's (started here)."""
    if settings.database_url:
        return to_libpq_url(settings.database_url)
    return start_embedded(settings.ensure_data_dir())


def check_reachable(url: str) -> None:
    """Raise :class:`DatabaseUnavailable` with a clear message if ``url`` does not answer."""
    try:
        with psycopg.connect(to_libpq_url(url), connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(f"cannot connect to the database: {first_line}") from exc


class Database:
    """An engine and its session factory for one database URL."""

    def __init__(self, url: str, *, pool_size: int = 10, **engine_kwargs: Any) -> None:
        self.url = to_libpq_url(url)
        self.engine: AsyncEngine = create_async_engine(
            to_sqlalchemy_url(url),
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            **engine_kwargs,
        )
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A unit of work: commits at the end, rolls back on error."""
        async with self.sessionmaker() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


_current: Database | None = None


def set_database(database: Database | None) -> None:
    """Make ``database`` the process's database (for jobs and other code outside requests)."""
    global _current
    _current = database


def get_database() -> Database:
    """The process's database; set at startup by the app, the worker or the CLI."""
    if _current is None:
        raise RuntimeError("the database is not initialised (set_database was not called)")
    return _current


def request_database(request: Request) -> Database:
    """The app's database (the one :func:`get_session` uses), else the process's: for routes
    that open short units of work of their own instead of the request's session."""
    database: Database | None = getattr(request.app.state, "database", None)
    return database or get_database()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """FastAPI dependency: one session per request, committed before the answer is sent."""
    database: Database = request.app.state.database
    async with database.session() as session:
        yield session

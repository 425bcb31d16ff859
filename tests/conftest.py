"""Test harness: real PostgreSQL, each test isolated.

- The server on 127.0.0.1:5432 is used when it answers, else an embedded one (pgserver).
- A template database is migrated once per test session.
- ``db``: a session inside a transaction that is rolled back after the test (fast; the default).
- ``app`` / ``client``: the ASGI app and an httpx client on that same transaction.
- ``fresh_database``: a whole database cloned from the template, for code that commits, listens
  or runs a worker; dropped after the test.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

_TEST_ENV = {
    "TIDINGS_SECRET_KEY": "test-secret-key-not-for-production",
    "TIDINGS_PUBLIC_URL": "http://testserver",
}
os.environ.update(_TEST_ENV)
os.environ.pop("TIDINGS_DATABASE_URL", None)
os.environ.setdefault("TIDINGS_DATA_DIR", tempfile.mkdtemp(prefix="tidings-test-data-"))

from tidings.config import get_settings  # noqa: E402
from tidings.db import Database, set_database, to_libpq_url  # noqa: E402

get_settings.cache_clear()

SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_DB_PREFIX = "tidings_t"


def _server_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
        with psycopg.connect(SERVER_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except (OSError, psycopg.Error):
        return False


def _with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` (works for TCP and socket URLs)."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _drop_stale_databases(admin_url: str) -> None:
    """Drop test databases left by killed runs of this machine (their pid is gone)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{_DB_PREFIX}_%",)
            )
        ]
        for name in names:
            match = re.match(rf"{_DB_PREFIX}_(\d+)_", name)
            if not match:
                continue
            pid = int(match.group(1))
            try:
                os.kill(pid, 0)
                continue
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def admin_url() -> Iterator[str]:
    """A URL to the maintenance database of the test server."""
    if _server_answers():
        yield SERVER_URL
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        pgdata = Path(tempfile.mkdtemp(prefix="tidings-test-pg-")) / "pg"
        server = pgserver.get_server(pgdata, cleanup_mode="delete")
    yield server.get_uri("postgres")


@dataclass
class DatabaseFactory:
    """Creates databases on the test server, cloned from the migrated template."""

    admin_url: str
    template: str

    def url_of(self, name: str) -> str:
        return _with_database(self.admin_url, name)

    def create(self) -> str:
        name = f"{_DB_PREFIX}_{os.getpid()}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return name

    def drop(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_factory(admin_url: str) -> Iterator[DatabaseFactory]:
    """Migrates a template database once per session."""
    from tidings.migrations import upgrade

    _drop_stale_databases(admin_url)
    template = f"{_DB_PREFIX}_{os.getpid()}_template"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{template}"')
    factory = DatabaseFactory(admin_url, template)
    upgrade(factory.url_of(template))
    yield factory
    factory.drop(template)


@pytest.fixture(scope="session")
def shared_db_url(database_factory: DatabaseFactory) -> Iterator[str]:
    """One database for all rolled-back tests of the session."""
    name = database_factory.create()
    yield database_factory.url_of(name)
    database_factory.drop(name)


class TransactionalDatabase(Database):
    """A :class:`Database` whose sessions all live inside one outer transaction.

    ``commit()`` releases a savepoint; the outer transaction is rolled back after the test.
    """

    def __init__(self, url: str, connection: AsyncConnection) -> None:
        self.url = to_libpq_url(url)
        self.engine = connection.engine
        self.connection = connection
        self.sessionmaker = async_sessionmaker(
            bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
        )

    async def dispose(self) -> None:  # the engine belongs to the fixture
        return None


@pytest.fixture(scope="session")
async def shared_database(shared_db_url: str) -> AsyncIterator[Database]:
    database = Database(shared_db_url, pool_size=2)
    yield database
    await database.dispose()


@pytest.fixture
async def test_database(shared_database: Database) -> AsyncIterator[TransactionalDatabase]:
    """The rolled-back database of one test (also set as the process's database)."""
    async with shared_database.engine.connect() as connection:
        transaction = await connection.begin()
        database = TransactionalDatabase(shared_database.url, connection)
        set_database(database)
        try:
            yield database
        finally:
            set_database(None)
            if transaction.is_active:
                await transaction.rollback()


@pytest.fixture
async def db(test_database: TransactionalDatabase) -> AsyncIterator[AsyncSession]:
    """A session inside the test's transaction (rolled back after the test)."""
    async with test_database.sessionmaker() as session:
        yield session


@pytest.fixture
async def fresh_database(database_factory: DatabaseFactory) -> AsyncIterator[Database]:
    """A whole migrated database for this test only (real commits), set as current."""
    name = await asyncio.to_thread(database_factory.create)
    database = Database(database_factory.url_of(name), pool_size=5)
    set_database(database)
    try:
        yield database
    finally:
        set_database(None)
        await database.dispose()
        await asyncio.to_thread(database_factory.drop, name)


def build_app(database: Database, **kwargs: Any) -> Any:
    """The ASGI app on ``database`` (no lifespan: tests drive jobs explicitly)."""
    from tidings.app import create_app

    get_settings.cache_clear()
    return create_app(database_url=database.url, database=database, **kwargs)


@pytest.fixture
def app(test_database: TransactionalDatabase) -> Any:
    return build_app(test_database)


@asynccontextmanager
async def asgi_client(app: Any, **kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client calling ``app`` in-process."""
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", **kwargs
    ) as client:
        yield client


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as c:
        yield c


@pytest.fixture
def allow_private(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """TIDINGS_ALLOW_PRIVATE_URLS for this test: user-given URLs (instances, media, feeds) may
    point at the loopback test servers."""
    monkeypatch.setenv("TIDINGS_ALLOW_PRIVATE_URLS", "true")
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("TIDINGS_ALLOW_PRIVATE_URLS")
    get_settings.cache_clear()


@dataclass
class Tenant:
    """A user with their own organization (ADMIN), signed in."""

    user_id: str
    email: str
    password: str
    org_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        """Headers of the app API for this user in this organization."""
        return {"Authorization": f"Bearer {self.token}", "X-Tidings-Org": self.org_id}


async def make_tenant(
    database: Database, *, email: str | None = None, org_name: str = "Org"
) -> Tenant:
    """Create a user, their organization and a session, committed in ``database``."""
    from tidings.accounts.service import create_local_user_with_org
    from tidings.accounts.sessions import create_session

    email = email or f"user-{uuid.uuid4().hex[:8]}@example.com"
    password = "correct horse battery"
    async with database.session() as session:
        user, org = await create_local_user_with_org(
            session, email=email, password=password, org_name=org_name
        )
        token, _ = await create_session(session, user.id, organization_id=org.id)
    return Tenant(user.id, user.email, password, org.id, token)


@pytest.fixture
async def tenant(test_database: TransactionalDatabase) -> Tenant:
    """A signed-in ADMIN of organization A."""
    return await make_tenant(test_database, org_name="Org A")


@pytest.fixture
async def other_tenant(test_database: TransactionalDatabase) -> Tenant:
    """A signed-in ADMIN of another organization, B (for isolation tests)."""
    return await make_tenant(test_database, org_name="Org B")

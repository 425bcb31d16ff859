"""A request's writes are committed before its answer is sent, and rolled back on error."""

from __future__ import annotations

import psycopg
from fastapi import APIRouter
from sqlalchemy import text

from tests.conftest import asgi_client, build_app
from tidings.accounts.auth import DbSession
from tidings.core.errors import BadRequest
from tidings.db import Database
from tidings.orgs.models import Organization


async def test_commit_happens_before_the_answer(fresh_database: Database) -> None:
    router = APIRouter()

    @router.post("/_test/orgs/{name}")
    async def create(name: str, session: DbSession) -> dict[str, str]:
        org = Organization(name=name)
        session.add(org)
        await session.flush()
        if name == "fail":
            raise BadRequest("refused after writing", field="name")
        return {"id": org.id}

    app = build_app(fresh_database)
    app.include_router(router)
    async with asgi_client(app) as client:
        ok = await client.post("/_test/orgs/kept")
        # Read from another connection the moment the answer arrives.
        with psycopg.connect(fresh_database.url) as conn:
            row = conn.execute(
                "SELECT name FROM organization WHERE id = %s", (ok.json()["id"],)
            ).fetchone()
        assert row == ("kept",)
        failed = await client.post("/_test/orgs/fail")
        assert failed.status_code == 400
        assert failed.json()["field"] == "name"
    with psycopg.connect(fresh_database.url) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM organization ORDER BY name")]
    assert names == ["kept"]


async def test_a_failed_commit_is_answered_as_an_error_not_a_success(
    fresh_database: Database,
) -> None:
    """The commit runs before the answer: a constraint checked only at commit time turns the
    answer into a 409 instead of a 200 for lost data."""
    with psycopg.connect(fresh_database.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE _deferred (k int UNIQUE DEFERRABLE INITIALLY DEFERRED)")
    router = APIRouter()

    @router.post("/_test/deferred")
    async def write_twice(session: DbSession) -> dict[str, bool]:
        await session.execute(text("INSERT INTO _deferred VALUES (1), (1)"))
        return {"ok": True}

    app = build_app(fresh_database)
    app.include_router(router)
    async with asgi_client(app) as client:
        response = await client.post("/_test/deferred")
    assert response.status_code == 409
    assert response.json()["error"] == "conflict"


async def test_a_value_the_database_refuses_is_a_400(fresh_database: Database) -> None:
    router = APIRouter()

    @router.post("/_test/nul/{name}")
    async def create(name: str, session: DbSession) -> dict[str, str]:
        session.add(Organization(name=name))
        await session.flush()
        return {"ok": "no"}

    app = build_app(fresh_database)
    app.include_router(router)
    async with asgi_client(app) as client:
        response = await client.post("/_test/nul/a%00b")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_value"


async def test_concurrent_writers_failing_is_a_409_to_retry(fresh_database: Database) -> None:
    """A deadlock or serialization failure (PostgreSQL's own error codes) means nothing was
    stored and the request may be sent again: 409 with Retry-After, not a 500. Other
    operational errors stay 5xx."""
    router = APIRouter()

    @router.post("/_test/raise/{code}")
    async def fail(code: str, session: DbSession) -> dict[str, str]:
        session.add(Organization(name=f"lost-{code}"))
        await session.flush()
        await session.execute(
            text(f"DO $$ BEGIN RAISE EXCEPTION 'concurrent' USING ERRCODE = '{code}'; END $$")
        )
        return {"ok": "no"}

    app = build_app(fresh_database)
    app.include_router(router)
    async with asgi_client(app) as client:
        for code in ("40P01", "40001", "55P03"):
            response = await client.post(f"/_test/raise/{code}")
            assert response.status_code == 409, code
            assert response.headers["retry-after"] == "1"
            assert "try again" in response.json()["message"]
        canceled = await client.post("/_test/raise/57014")  # query_canceled
        assert canceled.status_code == 500
    with psycopg.connect(fresh_database.url) as conn:
        assert conn.execute("SELECT count(*) FROM organization").fetchone() == (0,)

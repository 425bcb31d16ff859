"""The health endpoint answers the database state."""

from __future__ import annotations

import httpx

from tests.conftest import asgi_client, build_app
from tidings.db import Database


async def test_health_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["schema_revision"]


async def test_health_reports_unreachable_database() -> None:
    # A port nothing listens on: the answer must be a clear 503, not a crash.
    database = Database("postgresql://postgres@127.0.0.1:1/nowhere", pool_size=1)
    try:
        async with asgi_client(build_app(database)) as client:
            response = await client.get("/health")
    finally:
        await database.dispose()
    assert response.status_code == 503
    assert response.json() == {
        "status": "error",
        "database": "unreachable",
        "version": response.json()["version"],
    }

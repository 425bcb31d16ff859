"""Uploads hold no pooled database connection while their bytes arrive.

Authentication is a short unit of work of its own, the body (or the download) is streamed and
ingested with no connection checked out, and the media row is written in a second short unit of
work at the end. Checked on a real connection pool (not the tests' shared transaction): while an
upload is paused mid-body the pool has nothing checked out, and with a pool of 2 connections
many slow uploads at once all succeed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.conftest import Tenant, asgi_client, build_app, make_tenant
from tidings.core.tenancy import OrgId
from tidings.db import Database
from tidings.media.models import Media
from tidings.orgs.service import rotate_api_key

from .helpers import BOUNDARY, CONTENT_TYPE, configure_media
from .http_server import NOISE_PNG

# Noise does not compress: the file is far longer than the part sent before the pause.
PNG = NOISE_PNG
HEAD = 4096  # bytes of the file sent before the upload pauses
assert len(PNG) > 10 * HEAD


@dataclass
class Setup:
    database: Database
    app: Any
    tenant: Tenant
    key: str

    def checked_out(self) -> int:
        return int(self.database.engine.pool.checkedout())  # type: ignore[attr-defined]

    async def media_count(self) -> int:
        async with self.database.session() as session:
            stmt = select(func.count()).select_from(Media)
            return int((await session.execute(stmt)).scalar_one())


@pytest.fixture
async def setup(fresh_database: Database, tmp_path: Path) -> AsyncIterator[Setup]:
    """An app on a real pool of at most 2 connections (1 + 1 overflow), failing fast when
    exhausted, with a tenant and its Public API key."""
    tenant = await make_tenant(fresh_database)
    async with fresh_database.session() as session:
        key = await rotate_api_key(session, OrgId(tenant.org_id))
    database = Database(fresh_database.url, pool_size=1, pool_timeout=3)
    app = build_app(database)
    configure_media(app, tmp_path / "data", allow_private_urls=True)
    try:
        yield Setup(database, app, tenant, key)
    finally:
        await database.dispose()


def file_head(filename: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{filename}"\r\nContent-Type: image/png\r\n\r\n'
    ).encode()


async def paused_body(pause: Any) -> AsyncIterator[bytes]:
    """A multipart upload of ``PNG`` that awaits ``pause()`` after its first ``HEAD`` bytes."""
    yield file_head("slow.png") + PNG[:HEAD]
    await pause()
    yield PNG[HEAD:]
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


UPLOADS = [
    pytest.param("/api/media", "app", id="app-api"),
    pytest.param("/public/v1/upload", "key", id="public-api"),
]


def auth(setup: Setup, how: str) -> dict[str, str]:
    return setup.tenant.headers if how == "app" else {"Authorization": setup.key}


@pytest.mark.parametrize(("url", "how"), UPLOADS)
async def test_no_connection_is_held_while_the_body_streams(
    setup: Setup, url: str, how: str
) -> None:
    seen: list[int] = []

    async def pause() -> None:
        await asyncio.sleep(0.05)  # a slow client
        seen.append(setup.checked_out())

    async with asgi_client(setup.app) as client:
        response = await client.post(
            url,
            content=paused_body(pause),
            headers={**auth(setup, how), "Content-Type": CONTENT_TYPE},
        )
    assert response.status_code == 201, response.text
    assert seen == [0]  # mid-upload: nothing checked out of the pool
    assert setup.checked_out() == 0
    # The row was written (committed) by the upload's own unit of work, in the caller's org.
    async with setup.database.session() as session:
        row = await session.get(Media, response.json()["id"])
    assert row is not None and row.organization_id == setup.tenant.org_id
    assert row.file_size == len(PNG)


@pytest.mark.parametrize(("url", "how"), UPLOADS)
async def test_many_slow_uploads_share_a_pool_of_two(setup: Setup, url: str, how: str) -> None:
    uploads = 8
    streaming = 0
    everyone_in = asyncio.Event()
    held: list[int] = []

    async def pause() -> None:
        nonlocal streaming
        streaming += 1
        if streaming == uploads:
            held.append(setup.checked_out())
            everyone_in.set()
        # Every upload is mid-body at the same time before any may finish.
        await asyncio.wait_for(everyone_in.wait(), timeout=8)

    async with asgi_client(setup.app) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    url,
                    content=paused_body(pause),
                    headers={**auth(setup, how), "Content-Type": CONTENT_TYPE},
                )
                for _ in range(uploads)
            )
        )
    assert [r.status_code for r in responses] == [201] * uploads, [r.text for r in responses]
    assert held == [0]
    assert await setup.media_count() == uploads


class SlowFileServer:
    """Serves ``/photo.png``: its first bytes, then waits for :attr:`release` before the rest."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(PNG)))
                self.end_headers()
                self.wfile.write(PNG[:HEAD])
                self.wfile.flush()
                outer.started.set()
                outer.release.wait(10)
                self.wfile.write(PNG[HEAD:])
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/photo.png"


@pytest.fixture
def slow_server() -> Iterator[SlowFileServer]:
    server = SlowFileServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.server.shutdown()
        server.server.server_close()


@pytest.mark.parametrize(
    ("url", "how"),
    [
        pytest.param("/api/media/from-url", "app", id="app-api"),
        pytest.param("/public/v1/upload-from-url", "key", id="public-api"),
    ],
)
async def test_no_connection_is_held_while_a_url_downloads(
    setup: Setup, slow_server: SlowFileServer, url: str, how: str
) -> None:
    async with asgi_client(setup.app) as client:
        request = asyncio.create_task(
            client.post(url, json={"url": slow_server.url}, headers=auth(setup, how))
        )
        assert await asyncio.to_thread(slow_server.started.wait, 10)
        await asyncio.sleep(0.05)
        mid_download = setup.checked_out()
        slow_server.release.set()
        response = await request
    assert response.status_code == 201, response.text
    assert mid_download == 0
    assert response.json()["name"] == "photo.png"
    assert await setup.media_count() == 1


async def test_a_refused_upload_commits_nothing_and_frees_the_pool(setup: Setup) -> None:
    async with asgi_client(setup.app) as client:
        response = await client.post(
            "/public/v1/upload",
            files={"file": ("a.png", b"#!/bin/sh\nrm -rf /\n", "image/png")},
            headers={"Authorization": setup.key},
        )
        wrong_key = await client.post(
            "/public/v1/upload",
            files={"file": ("a.png", PNG, "image/png")},
            headers={"Authorization": "nope"},
        )
    assert response.status_code == 415 and response.json()["field"] == "file"
    assert wrong_key.status_code == 401 and wrong_key.json()["error"] == "unauthorized"
    assert setup.checked_out() == 0
    assert await setup.media_count() == 0

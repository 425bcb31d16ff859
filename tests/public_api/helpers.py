"""Helpers of the Public API tests: the app served over real HTTP."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field

import uvicorn

from tests.conftest import build_app
from tidings.db import Database


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerThread:
    """The app under uvicorn in a thread of its own (own event loop, own connection pool), so
    that blocking clients (schemathesis) and platforms fetching media URLs can reach it over
    real HTTP. ``port`` 0 picks a free one."""

    database_url: str
    port: int = 0
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None
    error: list[BaseException] = field(default_factory=list)

    def __enter__(self) -> ServerThread:
        self.port = self.port or free_port()
        self.thread = threading.Thread(target=self._run, name="public-api-server", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not (self.server and self.server.started):
            if self.error or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {self.error}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None and self.thread is not None
        self.server.should_exit = True
        self.thread.join(timeout=20)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self.error.append(exc)

    async def _serve(self) -> None:
        database = Database(self.database_url, pool_size=5)
        try:
            app = build_app(database)
            config = uvicorn.Config(
                app, host="127.0.0.1", port=self.port, lifespan="off", log_level="warning"
            )
            self.server = uvicorn.Server(config)
            await self.server.serve()
        finally:
            from tidings.channels.service import close_shared_http_clients

            await close_shared_http_clients()
            await database.dispose()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

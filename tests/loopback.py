"""Runs an ASGI app under uvicorn on 127.0.0.1 (a free port) inside the test's event loop.

The one runner behind every loopback stand-in of an outside service (the fake social platforms,
the webhook receivers and feeds, the identity provider)::

    server = LoopbackServer(Starlette(routes=...))
    base_url = await server.start()
    ...
    await server.stop()

or, for a stand-in class, :class:`LoopbackService`: ``async with Fake() as fake`` serves
``fake.asgi_app()`` at ``fake.base_url`` for the block.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from types import TracebackType
from typing import Self

import uvicorn
from starlette.types import ASGIApp


class _Server(uvicorn.Server):
    """uvicorn, stopped by an event instead of its 0.1 s polling loop (fast test teardown)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.stop = asyncio.Event()

    async def main_loop(self) -> None:
        await self.on_tick(0)  # sets the default headers (date, server)
        await self.stop.wait()


class LoopbackServer:
    """``app`` served on 127.0.0.1 from :meth:`start` until :meth:`stop`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.base_url = ""
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None

    async def start(self) -> str:
        """Listen on a free port; returns the base URL (``http://127.0.0.1:<port>``)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit TCP_NODELAY: no 40 ms Nagle/delayed-ACK stall per answer.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        self._sock = sock
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=1,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        for _ in range(500):
            if self._server.started:
                break
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        """Stop serving and wait for uvicorn to finish."""
        if self._server is not None:
            self._server.should_exit = True
            self._server.stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sock is not None:
            self._sock.close()


class LoopbackService:
    """Base of a stand-in served on 127.0.0.1 for the length of an ``async with`` block.

    Subclasses build their app in :meth:`asgi_app`; :meth:`stopping` runs before the server
    stops (e.g. to release handlers that never answer)."""

    base_url: str
    _loopback: LoopbackServer

    def asgi_app(self) -> ASGIApp:
        """The app to serve."""
        raise NotImplementedError

    def stopping(self) -> None:
        """Called at the end of the block, before the server stops."""

    async def __aenter__(self) -> Self:
        self._loopback = LoopbackServer(self.asgi_app())
        self.base_url = await self._loopback.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stopping()
        await self._loopback.stop()

"""Loopback servers and a real job worker for the automation tests.

- :class:`Loopback`: a Starlette app on 127.0.0.1 (free port), in the test's loop
  (:class:`tests.loopback.LoopbackService`).
- :class:`Receiver`: webhook endpoints ``/hook/<name>`` that check every request with the
  ``standardwebhooks`` package (an implementation independent of ours) and answer as scripted:
  a list of status codes to give first, or never answer at all.
- :class:`FeedServer`: serves RSS/Atom documents with ETag/Last-Modified (answers 304 to a
  matching conditional GET), and can serve garbage or never answer.
- :func:`running_worker`: a Procrastinate worker on the test's database.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import standardwebhooks
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.loopback import LoopbackService
from tidings.db import Database


class Loopback(LoopbackService):
    """Base: subclasses return their routes from :meth:`routes`."""

    def __init__(self) -> None:
        self.base_url = ""
        self.release = asyncio.Event()  # set at exit: hanging handlers give up

    def routes(self) -> list[Route]:
        raise NotImplementedError

    async def hang(self) -> Response:
        """Never answer (until the server stops)."""
        await self.release.wait()
        return Response(status_code=504)

    def asgi_app(self) -> Starlette:
        return Starlette(routes=self.routes())

    def stopping(self) -> None:
        self.release.set()


@dataclass
class Received:
    """One request as a receiver saw it."""

    hook: str
    headers: dict[str, str]
    body: bytes
    at: float
    verified: Any = None  # the payload when the signature checked out
    error: str | None = None  # why verification failed
    status: int = 0  # what we answered


@dataclass
class Hook:
    secret: str | None = None
    script: list[int] = field(default_factory=list)  # statuses answered first, in order
    default: int = 200
    hang: bool = False
    body: bytes | None = None  # answered instead of "answered <status>"
    location: str | None = None  # sent as the Location header (with a 3xx status)
    delay: float = 0.0  # seconds spent before answering


class Receiver(Loopback):
    """Webhook endpoints ``/hook/<name>`` verifying the Standard Webhooks signature."""

    def __init__(self) -> None:
        super().__init__()
        self.hooks: dict[str, Hook] = {}
        self.received: list[Received] = []
        self.in_flight: dict[str, int] = {}
        self.peak: dict[str, int] = {}  # most requests a hook had in flight at once

    def url(self, name: str) -> str:
        self.hooks.setdefault(name, Hook())
        return f"{self.base_url}/hook/{name}"

    def configure(self, name: str, **kwargs: Any) -> None:
        hook = self.hooks.setdefault(name, Hook())
        for key, value in kwargs.items():
            setattr(hook, key, value)

    def of(self, name: str) -> list[Received]:
        return [r for r in self.received if r.hook == name]

    async def _handle(self, request: Request) -> Response:
        name = request.path_params["name"]
        hook = self.hooks.setdefault(name, Hook())
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        received = Received(name, headers, body, time.monotonic())
        if hook.secret is not None:
            try:
                received.verified = standardwebhooks.Webhook(hook.secret).verify(body, headers)
            except standardwebhooks.WebhookVerificationError as exc:
                received.error = str(exc)
        self.received.append(received)
        if hook.hang:
            return await self.hang()
        self.in_flight[name] = self.in_flight.get(name, 0) + 1
        self.peak[name] = max(self.peak.get(name, 0), self.in_flight[name])
        try:
            await asyncio.sleep(hook.delay)
        finally:
            self.in_flight[name] -= 1
        status = hook.script.pop(0) if hook.script else hook.default
        if received.error is not None:
            status = 401
        received.status = status
        body = hook.body if hook.body is not None else f"answered {status}".encode()
        headers = {"location": hook.location} if hook.location else None
        return Response(body, status_code=status, headers=headers)

    def routes(self) -> list[Route]:
        return [Route("/hook/{name}", self._handle, methods=["POST", "GET"])]


@dataclass
class Feed:
    body: bytes
    content_type: str = "application/rss+xml"
    etag: str | None = None
    last_modified: str | None = None
    hang: bool = False
    status: int = 200


class FeedServer(Loopback):
    """Feeds at ``/feed/<name>``; every GET recorded with its conditional headers."""

    def __init__(self) -> None:
        super().__init__()
        self.feeds: dict[str, Feed] = {}
        self.requests: list[tuple[str, dict[str, str], int]] = []

    def url(self, name: str) -> str:
        return f"{self.base_url}/feed/{name}"

    def of(self, name: str) -> list[tuple[dict[str, str], int]]:
        return [(h, s) for n, h, s in self.requests if n == name]

    async def _handle(self, request: Request) -> Response:
        name = request.path_params["name"]
        headers = {k.lower(): v for k, v in request.headers.items()}
        feed = self.feeds.get(name)
        if feed is None:
            self.requests.append((name, headers, 404))
            return Response("no such feed", status_code=404)
        if feed.hang:
            self.requests.append((name, headers, 0))
            return await self.hang()
        answer_headers = {}
        if feed.etag:
            answer_headers["etag"] = feed.etag
        if feed.last_modified:
            answer_headers["last-modified"] = feed.last_modified
        not_modified = (feed.etag is not None and headers.get("if-none-match") == feed.etag) or (
            feed.last_modified is not None
            and feed.etag is None
            and headers.get("if-modified-since") == feed.last_modified
        )
        if not_modified:
            self.requests.append((name, headers, 304))
            return Response(status_code=304, headers=answer_headers)
        self.requests.append((name, headers, feed.status))
        return Response(
            feed.body, status_code=feed.status, media_type=feed.content_type, headers=answer_headers
        )

    def routes(self) -> list[Route]:
        return [Route("/feed/{name}", self._handle, methods=["GET"])]


@contextlib.asynccontextmanager
async def running_worker(
    database: Database, *, concurrency: int = 4, workers: int = 1
) -> AsyncIterator[None]:
    """Real Procrastinate workers (``workers`` of them, as separate processes would be) on
    ``database`` for the duration of the block."""
    from tidings.core.jobs import close_jobs, job_app, load_tasks, open_jobs

    load_tasks()
    pool = await open_jobs(database.url, max_size=workers * (concurrency + 3))
    tasks = [
        asyncio.create_task(
            job_app.run_worker_async(
                concurrency=concurrency,
                install_signal_handlers=False,
                wait=True,
                fetch_job_polling_interval=0.05,
                abort_job_polling_interval=0.5,
            )
        )
        for _ in range(workers)
    ]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await close_jobs(pool)


async def eventually(predicate: Any, *, timeout: float = 10.0, interval: float = 0.05) -> None:
    """Wait until ``await predicate()`` (or ``predicate()``) is truthy, else fail."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)

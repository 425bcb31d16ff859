"""A loopback HTTP server that plays a social platform in tests.

``FakePlatform`` runs a Starlette app on 127.0.0.1 with a free port, inside the test's event
loop (:class:`tests.loopback.LoopbackService`). Every request is recorded
(:class:`RecordedRequest`) before any handler runs, and faults can be scripted per route: an
error answer (``fail``), a read-then-never-answer (``hang``) or a slow answer (``delay``)::

    async with FakeBluesky() as pds:
        pds.fail("POST", "/xrpc/com.atproto.repo.createRecord", 429, headers={"Retry-After": "7"})
        ...
        assert pds.last("POST", "/xrpc/com.atproto.repo.createRecord").json["record"]["text"]

Subclasses register their routes in ``setup_routes`` with ``self.add(method, path, handler)``;
a handler takes the RecordedRequest (with ``path_params``) and returns a Starlette Response.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.loopback import LoopbackService


@dataclass
class UploadedFile:
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class RecordedRequest:
    """One request as the platform saw it."""

    method: str
    path: str  # decoded
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, UploadedFile] = field(default_factory=dict)
    path_params: dict[str, str] = field(default_factory=dict)
    query_list: list[tuple[str, str]] = field(default_factory=list)
    raw_path: str = ""  # as sent, percent-encoding kept

    @property
    def auth(self) -> str | None:
        return self.headers.get("authorization")

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


Handler = Callable[[RecordedRequest], Awaitable[Response]]


@dataclass
class Fault:
    method: str
    path: str
    times: int
    status: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    process: bool = False  # with hang: do the work, then never answer
    delay: float = 0.0
    text: str | None = None


def _path_regex(path: str) -> re.Pattern[str]:
    # "/api/v1/media/{id}" -> any single segment; faults may use templates or concrete paths.
    pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path))
    return re.compile(f"^{pattern}$")


class FakePlatform(LoopbackService):
    """Base of the fake platforms; use as ``async with Fake() as server``."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._routes: list[Route] = []
        self._release = asyncio.Event()
        self.base_url = ""
        self.setup_routes()

    # ---- to override ------------------------------------------------------------------

    def setup_routes(self) -> None:
        """Register the platform's routes with :meth:`add`."""

    # ---- routing ----------------------------------------------------------------------

    def add(self, method: str, path: str, handler: Handler) -> None:
        async def endpoint(request: Request) -> Response:
            recorded = await self._record(request)
            fault = self._take_fault(recorded)
            if fault is not None:
                if fault.hang:
                    if fault.process:
                        await handler(recorded)
                    await self._release.wait()
                    return Response(status_code=504)
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.status is not None:
                    if fault.text is not None:
                        return Response(fault.text, fault.status, headers=fault.headers)
                    return JSONResponse(fault.body, fault.status, headers=fault.headers)
            return await handler(recorded)

        self._routes.append(Route(path, endpoint, methods=[method]))

    async def _record(self, request: Request) -> RecordedRequest:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        query_list = parse_qsl(request.url.query, keep_blank_values=True)
        recorded = RecordedRequest(
            method=request.method,
            path=request.url.path,
            query=dict(query_list),
            headers=headers,
            body=body,
            path_params={k: str(v) for k, v in request.path_params.items()},
            query_list=query_list,
            raw_path=request.scope.get("raw_path", b"").decode("latin-1"),
        )
        content_type = headers.get("content-type", "")
        if "json" in content_type and body:
            try:
                recorded.json = await request.json()
            except ValueError:
                recorded.json = None
        elif content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            async with request.form(max_part_size=64 * 1024 * 1024) as form:
                for key, value in form.multi_items():
                    if isinstance(value, UploadFile):
                        data = await value.read()
                        recorded.files[key] = UploadedFile(value.filename, value.content_type, data)
                    else:
                        recorded.form[key] = value
        self.requests.append(recorded)
        return recorded

    def _take_fault(self, request: RecordedRequest) -> Fault | None:
        for fault in self._faults:
            if fault.method == request.method and _path_regex(fault.path).match(request.path):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    # ---- scripting faults ---------------------------------------------------------------

    def fail(
        self,
        method: str,
        path: str,
        status: int,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        text: str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` and a JSON ``body``."""
        self._faults.append(
            Fault(method, path, times, status=status, body=body, headers=headers or {}, text=text)
        )

    def hang(self, method: str, path: str, *, times: int = 1, process: bool = False) -> None:
        """Read the next matching request(s) fully, then never answer; with ``process`` the
        platform does the work first (the post exists, only the answer is lost)."""
        self._faults.append(Fault(method, path, times, hang=True, process=process))

    def delay(self, method: str, path: str, seconds: float, *, times: int = 1) -> None:
        """Answer the next matching request(s) normally but ``seconds`` late."""
        self._faults.append(Fault(method, path, times, delay=seconds))

    # ---- inspecting ---------------------------------------------------------------------

    def calls(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """Recorded requests, optionally filtered by method and path (templates allowed)."""
        regex = _path_regex(path) if path else None
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and (regex is None or regex.match(r.path))
        ]

    def last(self, method: str, path: str) -> RecordedRequest:
        found = self.calls(method, path)
        assert found, (
            f"no {method} {path} request; got {[(r.method, r.path) for r in self.requests]}"
        )
        return found[-1]

    def url(self, path: str = "") -> str:
        return self.base_url + path

    # ---- lifecycle ----------------------------------------------------------------------

    def asgi_app(self) -> Starlette:
        return Starlette(routes=self._routes)

    def stopping(self) -> None:
        self._release.set()  # hanging handlers give up

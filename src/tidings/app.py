"""The ASGI application: wiring only (routers, error handlers, database, in-process worker)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from tidings import __version__
from tidings.config import Settings, get_settings
from tidings.core.errors import install_error_handlers
from tidings.db import Database, set_database

logger = logging.getLogger("tidings.app")

#: Modules exposing ``router`` (an APIRouter), included in this order when they exist.
ROUTER_MODULES = [
    "tidings.accounts.routes",
    "tidings.orgs.routes",
    "tidings.notifications.routes",
    "tidings.channels.routes",
    "tidings.posts.routes",
    "tidings.media.routes",
    "tidings.automation.routes",
    "tidings.billing.routes",
    "tidings.public_api.routes",
    "tidings.web.routes",
]

health_router = APIRouter()


@health_router.get("/health", tags=["health"])
async def health(request: Request) -> JSONResponse:
    """The state of the server and its database (200 when the database answers, else 503)."""
    database: Database = request.app.state.database
    try:
        async with database.engine.connect() as conn:
            revision = (
                await conn.execute(text("SELECT version_num FROM alembic_version LIMIT 1"))
            ).scalar_one_or_none()
    except Exception as exc:
        logger.warning("health check: database unreachable: %s", exc)
        return JSONResponse(
            {"status": "error", "database": "unreachable", "version": __version__},
            status_code=503,
        )
    return JSONResponse(
        {
            "status": "ok",
            "database": "ok",
            "schema_revision": revision,
            "embedded_database": request.app.state.settings.embedded,
            "version": __version__,
        }
    )


def _include_routers(app: FastAPI) -> None:
    for module_name in ROUTER_MODULES:
        if importlib.util.find_spec(module_name) is None:
            continue
        module = importlib.import_module(module_name)
        app.include_router(module.router)
        setup = getattr(module, "setup_app", None)
        if setup is not None:
            setup(app)


async def _run_worker(concurrency: int) -> None:
    from tidings.core.jobs import job_app, load_tasks

    load_tasks()
    await job_app.run_worker_async(
        concurrency=concurrency, install_signal_handlers=False, wait=True
    )


def create_app(
    *,
    database_url: str,
    settings: Settings | None = None,
    run_worker: bool = False,
    worker_concurrency: int = 10,
    database: Database | None = None,
) -> FastAPI:
    """Build the app for an already migrated database at ``database_url``.

    ``database`` lets tests share one :class:`Database`; ``run_worker`` starts an in-process
    job worker alongside the HTTP server.
    """
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from tidings.core.jobs import close_jobs, open_jobs

        owned = database is None
        db = database or Database(database_url)
        app.state.database = db
        set_database(db)
        pool = await open_jobs(database_url)
        worker: asyncio.Task[Any] | None = None
        if run_worker:
            worker = asyncio.create_task(_run_worker(worker_concurrency), name="tidings-worker")
        try:
            yield
        finally:
            if worker is not None:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            await close_jobs(pool)
            if owned:
                await db.dispose()

    app = FastAPI(
        title="Tidings",
        version=__version__,
        lifespan=lifespan,
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.database_url = database_url
    if database is not None:
        app.state.database = database
    install_error_handlers(app)
    app.include_router(health_router)
    _include_routers(app)
    return app

"""Browser tests: the whole app served by uvicorn on 127.0.0.1 (with its in-process worker, on a
database of its own), driven by Debian's Chromium through Playwright, in the test's event loop.

Screenshots go to ``artifacts/screenshots/`` (not committed); docs/web.md describes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from PIL import Image
from playwright.async_api import expect
from sqlalchemy import update

from tests.conftest import Tenant
from tidings.accounts.models import User
from tidings.config import get_settings
from tidings.core.tenancy import OrgId
from tidings.db import Database

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
# Other suites may share the two cores: give pages time before an expectation fails.
expect.set_options(timeout=15_000)

#: The zone the browser reports (not UTC, so a wrong conversion shows).
BROWSER_TIMEZONE = "Asia/Tokyo"


class _Server(uvicorn.Server):
    """uvicorn stopped by an event rather than its polling loop (fast teardown)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.stop = asyncio.Event()

    async def main_loop(self) -> None:
        await self.on_tick(0)
        await self.stop.wait()


@dataclass
class LiveApp:
    url: str
    database: Database
    app: Any


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    """One headless Chromium for the session."""
    from playwright.async_api import async_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed at /usr/bin/chromium")
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
async def live(
    fresh_database: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[LiveApp]:
    """The app with its worker, served on a free port; its public URL is that address so
    OAuth callbacks and media URLs come back to it."""
    from tidings.app import create_app

    sock = _free_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("TIDINGS_PUBLIC_URL", url)
    monkeypatch.setenv("TIDINGS_ALLOW_PRIVATE_URLS", "true")
    monkeypatch.setenv("TIDINGS_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    app = create_app(
        database_url=fresh_database.url,
        database=fresh_database,
        run_worker=True,
        worker_concurrency=4,
    )
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        log_level="warning",
        lifespan="on",
        ws="none",
        timeout_graceful_shutdown=1,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(1000):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield LiveApp(url=url, database=fresh_database, app=app)
    finally:
        server.should_exit = True
        server.stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=15)
        sock.close()
        # The app's shutdown (tidings.core.jobs.close_jobs) leaves the job app ready for the
        # next app of the session.
        with contextlib.suppress(Exception):
            from tidings.channels.service import close_shared_http_clients

            await close_shared_http_clients()
        get_settings.cache_clear()


def watch(context: Any) -> list[str]:
    """Collect JavaScript errors and Content-Security-Policy refusals of every page of
    ``context`` (assert the list is empty at the end)."""
    problems: list[str] = []

    def attach(page: Any) -> None:
        page.on("pageerror", lambda exc: problems.append(f"{page.url}: {exc}"))
        page.on(
            "console",
            lambda msg: (
                problems.append(f"{page.url}: {msg.text}")
                if msg.type == "error" and "Content Security Policy" in msg.text
                else None
            ),
        )

    context.on("page", attach)
    return problems


async def signed_in_context(
    browser: Any,
    live: LiveApp,
    tenant: Tenant,
    zone: str = "Europe/Paris",
    *,
    user_zone: str | None = None,
) -> tuple[Any, list[str]]:
    """A desktop-sized browser in ``zone``, signed in as ``tenant``, and its :func:`watch`
    list. The user's zone is ``user_zone``, by default the browser's (the first-visit
    detection, which reloads the page once, is the sign-up test's business)."""
    async with live.database.session() as session:
        await session.execute(
            update(User).where(User.id == tenant.user_id).values(timezone_name=user_zone or zone)
        )
    context = await browser.new_context(
        base_url=live.url, viewport={"width": 1400, "height": 950}, timezone_id=zone
    )
    context.set_default_timeout(20_000)
    problems = watch(context)
    await context.add_cookies(
        [
            {"name": "tidings_session", "value": tenant.token, "url": live.url},
            {"name": "tidings_org", "value": tenant.org_id, "url": live.url},
        ]
    )
    return context, problems


async def add_user_member(database: Database, tenant: Tenant) -> Tenant:
    """A signed-in USER (not admin) of ``tenant``'s organization."""
    from tidings.accounts.service import create_local_user
    from tidings.accounts.sessions import create_session
    from tidings.core.enums import Role
    from tidings.orgs.models import UserOrganization

    email = "writer@example.com"
    async with database.session() as session:
        user = await create_local_user(session, email=email, password="correct horse battery")
        session.add(
            UserOrganization(user_id=user.id, organization_id=tenant.org_id, role=Role.USER)
        )
        await session.flush()
        token, _ = await create_session(session, user.id, organization_id=tenant.org_id)
    return Tenant(user.id, email, "correct horse battery", tenant.org_id, token)


async def schedule_post(
    database: Database, tenant: Tenant, channel_id: str, text: str, when: datetime
) -> str:
    """A one-part post of ``tenant`` scheduled on ``channel_id`` at ``when``: its id."""
    from tidings.posts import service as posts_service
    from tidings.posts.schemas import CreatePostsRequest

    request = CreatePostsRequest.model_validate(
        {
            "type": "schedule",
            "date": when.astimezone(UTC).isoformat(),
            "posts": [{"integration": {"id": channel_id}, "value": [{"content": text}]}],
        }
    )
    async with database.session() as session:
        created = await posts_service.create_posts(session, OrgId(tenant.org_id), request)
    return created.posts[0].post_id


def png(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    """A small PNG of one colour."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
async def context(browser: Any, live: LiveApp) -> AsyncIterator[Any]:
    """A fresh browser profile (no cookies) on the live app, desktop-sized."""
    ctx = await browser.new_context(
        base_url=live.url,
        viewport={"width": 1360, "height": 900},
        timezone_id=BROWSER_TIMEZONE,
        locale="en-GB",
    )
    ctx.set_default_timeout(20_000)
    problems = watch(ctx)
    yield ctx
    await ctx.close()
    assert not problems, f"JavaScript errors or CSP refusals: {problems}"


@pytest.fixture
async def page(context: Any) -> Any:
    return await context.new_page()


async def screenshot(page: Any, name: str, *, full_page: bool = True) -> Path:
    """Save a screenshot of the page as ``artifacts/screenshots/<name>.png``.

    Headless Chromium on a loaded 2-core machine now and then never delivers the frame of a
    full-page capture; the screenshot is an artifact, not an assertion, so a capture that
    stalls is tried once more on the viewport alone and then left out with a warning.
    """
    from playwright.async_api import Error as PlaywrightError

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    options: dict[str, Any] = {"animations": "disabled", "caret": "hide", "timeout": 10_000}
    try:
        await page.screenshot(path=str(path), full_page=full_page, **options)
    except PlaywrightError:
        try:
            await page.screenshot(path=str(path), full_page=False, **options)
        except PlaywrightError as exc:
            warnings.warn(f"screenshot {name} not taken: {exc}", RuntimeWarning, stacklevel=2)
    return path

"""The web app: server-rendered pages on top of the app API, served on the same origin.

``router`` holds every page; :func:`setup_app` adds what pages need around the whole app: the
CSRF middleware (which also guards cookie-authenticated ``/api`` calls), the static files, and
the redirects for signed-out browsers.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from tidings.accounts.auth import ORG_COOKIE
from tidings.web import (
    auth_pages,
    automation_pages,
    calendar_pages,
    channels_pages,
    compose_pages,
    settings_pages,
)
from tidings.web.browser_errors import ConnectErrorPages
from tidings.web.context import (
    STATIC_DIR,
    ForgetOrganization,
    LoginRequired,
    NoOrganization,
    login_url,
    render,
)
from tidings.web.csrf import CsrfMiddleware

router = APIRouter(include_in_schema=False)
router.include_router(auth_pages.router)
router.include_router(settings_pages.router)
router.include_router(channels_pages.router)
router.include_router(calendar_pages.router)
router.include_router(compose_pages.router)
router.include_router(automation_pages.router)


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return RedirectResponse(login_url(exc.next_path), status_code=303)


async def _forget_organization(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ForgetOrganization)
    response = RedirectResponse(exc.path, status_code=303)
    response.delete_cookie(ORG_COOKIE, path="/")
    return response


async def _no_organization(request: Request, exc: Exception) -> Response:
    return render(request, "auth/no_org.html", status_code=200)


def setup_app(app: FastAPI) -> None:
    """Wire the web app into ``app`` (called by :func:`tidings.app.create_app`)."""
    secure = str(app.state.settings.public_url).startswith("https://")
    app.add_middleware(CsrfMiddleware, secure=secure)
    app.add_middleware(ConnectErrorPages)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(ForgetOrganization, _forget_organization)
    app.add_exception_handler(NoOrganization, _no_organization)

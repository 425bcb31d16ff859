"""What every page needs: who is looking (:class:`Viewer`), their time zone, and rendering.

Pages read through the domain services with the viewer's organization (the same tenancy as
the API); every write goes through the app API from the browser, so the web layer holds no
business rules of its own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

# ``resolve_member`` is what the ``Member`` dependency runs, so pages and the API agree on
# which organization a request acts in.
from tidings.accounts.auth import ORG_COOKIE, SESSION_COOKIE, Caller, DbSession, resolve_member
from tidings.accounts.models import User
from tidings.accounts.service import memberships
from tidings.accounts.sessions import ActiveSession, resolve_session
from tidings.core.enums import Role
from tidings.core.errors import Forbidden, NotFound
from tidings.notifications.service import unread_count
from tidings.orgs.models import Organization
from tidings.orgs.service import switch_organization
from tidings.web.csrf import CSRF_FIELD, csrf_token

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
TEMPLATES_DIR = HERE / "templates"


class LoginRequired(Exception):
    """The page needs a signed-in user: answered with a redirect to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class ForgetOrganization(Exception):
    """The ``tidings_org`` cookie names an organization the user is no longer in: answered
    with a redirect that drops the cookie."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


class NoOrganization(Exception):
    """The user belongs to no organization (all memberships removed)."""


@dataclass
class Viewer:
    """The signed-in user looking at a page, in the organization the page acts in."""

    caller: Caller
    user: User
    session: ActiveSession
    organizations: list[tuple[Organization, Role]]
    unread: int
    tz: ZoneInfo
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def org_id(self) -> str:
        return self.caller.organization_id

    @property
    def organization(self) -> Organization | None:
        for org, _ in self.organizations:
            if org.id == self.caller.organization_id:
                return org
        return None

    @property
    def is_admin(self) -> bool:
        return self.caller.is_admin

    @property
    def timezone_name(self) -> str:
        return self.tz.key

    @property
    def display_name(self) -> str:
        return self.user.name or self.user.email


def zone_of(user: User | None) -> ZoneInfo:
    """The user's time zone (UTC until the browser or the settings page has told us)."""
    name = user.timezone_name if user is not None else None
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo("UTC")


def _here(request: Request) -> str:
    path = request.url.path
    if request.url.query:
        path += "?" + request.url.query
    return path


async def signed_in(request: Request, db: DbSession) -> ActiveSession | None:
    """The browser's session (cookie), or None."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    active = await resolve_session(db, token)
    if active is not None:
        # The auth dependencies reuse it rather than resolving the token again.
        request.state.active_session = active
    return active


async def viewer(request: Request, db: DbSession) -> Viewer:
    """The page's viewer; a signed-out browser is sent to the sign-in page."""
    active = await signed_in(request, db)
    if active is None:
        raise LoginRequired(_here(request))
    organizations = await memberships(db, active.user.id)
    try:
        caller = await resolve_member(request, db, active)
    except NotFound:
        if request.cookies.get(ORG_COOKIE):
            raise ForgetOrganization(_here(request)) from None
        if not organizations:
            raise NoOrganization() from None
        # The session still names an organization the user left: act in their first one.
        await switch_organization(db, active.session, organizations[0][0].id)
        caller = await resolve_member(request, db, active)
    except Forbidden:
        raise NoOrganization() from None
    return Viewer(
        caller=caller,
        user=active.user,
        session=active,
        organizations=organizations,
        unread=await unread_count(db, caller.organization_id, active.user),
        tz=zone_of(active.user),
    )


Page = Annotated[Viewer, Depends(viewer)]


# ---- rendering ---------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _fingerprint(name: str, mtime: float) -> str:
    return hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:10]


def static_url(name: str) -> str:
    """The URL of a static file, with a content fingerprint so browsers never run stale JS."""
    path = STATIC_DIR / name
    version = _fingerprint(name, path.stat().st_mtime) if path.exists() else "0"
    return f"/static/{name}?v={version}"


def local(value: datetime | None, tz: ZoneInfo, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """``value`` (UTC) as wall-clock time in ``tz``."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(tz).strftime(fmt)


def login_url(next_path: str) -> str:
    """The sign-in page, coming back to ``next_path``."""
    return "/login?next=" + quote(next_path, safe="/")


# Our scripts only (no inline script runs); images may come from the platforms' CDNs and the
# media storage; style attributes carry a few CSS variables.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' https: http: data: blob:; media-src 'self' https: http: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def safe_href(value: str | None) -> str:
    """``value`` when it is a link a page may carry (http(s) or a path here), else "".

    Release URLs come from the platforms (a self-hosted instance may answer anything) and must
    never become a ``javascript:`` link."""
    if not value:
        return ""
    text = value.strip()
    lowered = text.lower()
    if lowered.startswith(("https://", "http://")):
        return text
    if text.startswith("/") and not text.startswith("//") and "\\" not in text:
        return text
    return ""


templates = Jinja2Templates(directory=TEMPLATES_DIR)
templates.env.filters["safe_href"] = safe_href
templates.env.globals["static_url"] = static_url
templates.env.globals["csrf_field_name"] = CSRF_FIELD


def render(
    request: Request,
    template: str,
    page: Viewer | None = None,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render ``template`` with the viewer, the CSRF token and a ``when`` formatter in the
    viewer's time zone."""
    tz = page.tz if page is not None else ZoneInfo("UTC")

    def when(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        return local(value, tz, fmt)

    response = templates.TemplateResponse(
        request,
        template,
        {
            "page": page,
            "csrf_token": csrf_token(request.scope),
            "when": when,
            "path": request.url.path,
            **context,
        },
        status_code=status_code,
    )
    # Pages show private data and carry the CSRF token: never cache them, never frame them.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response

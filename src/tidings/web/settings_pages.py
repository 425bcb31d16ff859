"""Settings pages: profile and time zone, organization, team, API key, notifications."""

from __future__ import annotations

from typing import Annotated
from zoneinfo import available_timezones

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from tidings.accounts.auth import DbSession
from tidings.accounts.passwords import MIN_PASSWORD_LENGTH
from tidings.core.enums import Role
from tidings.notifications import service as notifications
from tidings.orgs import invites as invite_service
from tidings.orgs import service as orgs
from tidings.web.context import Page, render

router = APIRouter()

ZONES = [*sorted(z for z in available_timezones() if "/" in z and not z.startswith("Etc/")), "UTC"]


@router.get("/settings")
async def settings_home() -> Response:
    """Settings start at the profile."""
    return RedirectResponse("/settings/profile", status_code=303)


@router.get("/settings/profile")
async def profile_page(request: Request, page: Page) -> Response:
    """Name, time zone and password."""
    return render(
        request,
        "settings/profile.html",
        page,
        zones=ZONES,
        min_password=MIN_PASSWORD_LENGTH,
        has_password=page.user.password is not None,
    )


@router.get("/settings/organization")
async def organization_page(request: Request, page: Page) -> Response:
    """Rename the current organization, or create another one."""
    return render(request, "settings/organization.html", page, org=page.organization)


@router.get("/settings/team")
async def team_page(request: Request, page: Page, db: DbSession) -> Response:
    """Members with their roles, pending invites, and the invite form (admins)."""
    members = await orgs.list_members(db, page.caller.organization_id)
    pending = (
        await invite_service.list_pending_invites(db, page.caller.organization_id)
        if page.is_admin
        else []
    )
    roles = [Role.USER, Role.ADMIN]
    if page.caller.role == Role.SUPERADMIN:
        roles.append(Role.SUPERADMIN)
    return render(
        request, "settings/team.html", page, members=members, invites=pending, roles=roles
    )


@router.get("/settings/api-key")
async def api_key_page(request: Request, page: Page) -> Response:
    """Rotate the Public API key (shown once)."""
    org = page.organization
    return render(
        request,
        "settings/api_key.html",
        page,
        key_set=org is not None and org.api_key is not None,
        public_url=request.app.state.settings.public_url,
    )


@router.get("/notifications")
async def notifications_page(
    request: Request,
    page: Page,
    db: DbSession,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response:
    """The organization's notifications, newest first, unread ones marked."""
    rows = await notifications.list_notifications(db, page.caller.organization_id, limit=limit)
    return render(
        request,
        "settings/notifications.html",
        page,
        items=rows,
        last_read=page.user.last_read_notifications,
    )

"""Settings pages built on the automation and posts APIs (webhooks with their delivery log,
n8n/Make/Zapier connectors, RSS auto-posts, signatures, posting-time sets) and the media
library."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from tidings.accounts.auth import DbSession
from tidings.automation import autopost as autopost_service
from tidings.automation import service as webhooks_service
from tidings.automation import third_party
from tidings.automation.events import EVENT_TYPES
from tidings.channels import service as channels_service
from tidings.core.tenancy import OrgId
from tidings.media import service as media_service
from tidings.posts import sets as sets_service
from tidings.posts import signatures as signatures_service
from tidings.web.context import Page, render
from tidings.web.settings_pages import ZONES

router = APIRouter()

WEEKDAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
DELIVERIES_SHOWN = 20


async def _channel_names(db: DbSession, org_id: OrgId) -> dict[str, str]:
    return {c.id: c.name for c in await channels_service.list_channels(db, org_id)}


@router.get("/settings/webhooks")
async def webhooks_page(request: Request, page: Page, db: DbSession) -> Response:
    """Webhook endpoints, each with its recent deliveries and a "send test" action."""
    org_id = OrgId(page.caller.organization_id)
    hooks = await webhooks_service.list_webhooks(db, org_id, show_secret=page.is_admin)
    deliveries = {
        h.id: await webhooks_service.deliveries_of(db, org_id, h.id, limit=DELIVERIES_SHOWN)
        for h in hooks
    }
    return render(
        request,
        "settings/webhooks.html",
        page,
        hooks=hooks,
        deliveries=deliveries,
        event_types=EVENT_TYPES,
        channel_names=await _channel_names(db, org_id),
    )


CONNECTOR_NAMES = {"n8n": "n8n", "make": "Make", "zapier": "Zapier"}


@router.get("/settings/connectors")
async def connectors_page(request: Request, page: Page, db: DbSession) -> Response:
    """n8n, Make and Zapier connectors: the organization's events to a workflow's webhook,
    each with its delivery log and a "send test" action."""
    org_id = OrgId(page.caller.organization_id)
    connectors = await third_party.list_connectors(db, org_id, show_secret=page.is_admin)
    deliveries = {
        c.id: await third_party.deliveries_of(db, org_id, c.id, limit=DELIVERIES_SHOWN)
        for c in connectors
    }
    return render(
        request,
        "settings/connectors.html",
        page,
        connectors=connectors,
        deliveries=deliveries,
        event_types=EVENT_TYPES,
        providers=[(p, CONNECTOR_NAMES.get(p, p)) for p in third_party.PROVIDERS],
        names=CONNECTOR_NAMES,
    )


@router.get("/settings/autopost")
async def autopost_page(request: Request, page: Page, db: DbSession) -> Response:
    """RSS/Atom feeds turned into posts."""
    org_id = OrgId(page.caller.organization_id)
    return render(
        request,
        "settings/autopost.html",
        page,
        feeds=await autopost_service.list_autoposts(db, org_id),
        channel_names=await _channel_names(db, org_id),
    )


@router.get("/settings/signatures")
async def signatures_page(request: Request, page: Page, db: DbSession) -> Response:
    """Signatures the composer inserts (one may be added to new posts automatically)."""
    org_id = OrgId(page.caller.organization_id)
    return render(
        request,
        "settings/signatures.html",
        page,
        signatures=await signatures_service.list_signatures(db, org_id),
    )


@router.get("/settings/sets")
async def sets_page(request: Request, page: Page, db: DbSession) -> Response:
    """Posting schedules: weekday times in a time zone, used for "next free slot"."""
    org_id = OrgId(page.caller.organization_id)
    return render(
        request,
        "settings/sets.html",
        page,
        sets=await sets_service.list_sets(db, org_id),
        weekdays=WEEKDAYS,
        zones=ZONES,
    )


@router.get("/media")
async def media_page(
    request: Request,
    page: Page,
    db: DbSession,
    p: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> Response:
    """The media library: thumbnails, upload with progress, alt text, delete."""
    result = await media_service.list_media(
        db, OrgId(page.caller.organization_id), page=p, per_page=media_service.PAGE_SIZE
    )
    return render(request, "media.html", page, result=result)

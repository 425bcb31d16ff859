"""App API of automation: /api/webhooks, /api/autopost, /api/third-party.

Members may read; only admins may change anything (or see secrets).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import AfterValidator

from tidings.accounts.auth import Admin, DbSession, Member
from tidings.automation import autopost, service, third_party
from tidings.automation.events import EVENT_TYPES
from tidings.automation.schemas import (
    AutoPostCreate,
    AutoPostRead,
    AutoPostUpdate,
    DeliveryRead,
    EventRead,
    TestResult,
    ThirdPartyCreate,
    ThirdPartyRead,
    ThirdPartyUpdate,
    WebhookCreate,
    WebhookDetail,
    WebhookRead,
    WebhookUpdate,
    without_nul,
)

router = APIRouter()
webhooks_router = APIRouter(prefix="/api/webhooks", tags=["webhooks"])
autopost_router = APIRouter(prefix="/api/autopost", tags=["auto-posting"])
third_party_router = APIRouter(prefix="/api/third-party", tags=["third-party connectors"])

Limit = Annotated[int, Query(ge=1, le=service.MAX_PAGE)]
# Ids are opaque text; a NUL (which the database refuses) or an absurd length is a 422 naming it.
Id = Annotated[str, Path(max_length=200), AfterValidator(without_nul)]
EventStatus = Literal["pending", "delivered", "failed"]


# ---- webhooks ----------------------------------------------------------------------------------


@webhooks_router.get("/event-types")
async def event_types(caller: Member) -> dict[str, list[str]]:
    """The event types an endpoint may subscribe to."""
    return {"event_types": list(EVENT_TYPES)}


@webhooks_router.get("", response_model=list[WebhookRead])
async def list_webhooks(caller: Member, db: DbSession) -> list[WebhookRead]:
    """The organization's endpoints."""
    return await service.list_webhooks(db, caller.organization_id, show_secret=caller.is_admin)


@webhooks_router.post("", status_code=201, response_model=WebhookRead)
async def create_webhook(data: WebhookCreate, caller: Admin, db: DbSession) -> WebhookRead:
    """Add an endpoint (the answer shows its signing secret)."""
    return await service.create_webhook(db, caller.organization_id, data)


@webhooks_router.get("/{webhook_id}", response_model=WebhookDetail)
async def get_webhook(webhook_id: Id, caller: Member, db: DbSession) -> WebhookDetail:
    """One endpoint with its latest deliveries."""
    return await service.get_webhook(
        db, caller.organization_id, webhook_id, show_secret=caller.is_admin
    )


@webhooks_router.patch("/{webhook_id}", response_model=WebhookRead)
async def update_webhook(
    webhook_id: Id, data: WebhookUpdate, caller: Admin, db: DbSession
) -> WebhookRead:
    """Change an endpoint; enabling it sends its pending events at once."""
    return await service.update_webhook(db, caller.organization_id, webhook_id, data)


@webhooks_router.delete("/{webhook_id}", status_code=204)
async def delete_webhook(webhook_id: Id, caller: Admin, db: DbSession) -> Response:
    """Delete an endpoint (its pending events are dropped)."""
    await service.delete_webhook(db, caller.organization_id, webhook_id)
    return Response(status_code=204)


@webhooks_router.post("/{webhook_id}/test", response_model=TestResult)
async def test_webhook(webhook_id: Id, caller: Admin, db: DbSession) -> Any:
    """Send a signed test event now; the answer says what the endpoint replied."""
    return await service.send_test(db, caller.organization_id, webhook_id)


@webhooks_router.get("/{webhook_id}/deliveries", response_model=list[DeliveryRead])
async def webhook_deliveries(
    webhook_id: Id,
    caller: Member,
    db: DbSession,
    limit: Limit = 50,
    before: datetime | None = None,
) -> list[DeliveryRead]:
    """The delivery log (newest first; page with ``before`` = the last ``created_at``)."""
    return await service.deliveries_of(
        db, caller.organization_id, webhook_id, limit=limit, before=before
    )


@webhooks_router.get("/{webhook_id}/events", response_model=list[EventRead])
async def webhook_events(
    webhook_id: Id,
    caller: Member,
    db: DbSession,
    limit: Limit = 50,
    status: EventStatus | None = None,
) -> list[EventRead]:
    """The endpoint's events and where each delivery stands (newest first)."""
    return await service.events_of(
        db, caller.organization_id, webhook_id, limit=limit, status=status
    )


@webhooks_router.post(
    "/{webhook_id}/events/{event_id}/redeliver", status_code=202, response_model=EventRead
)
async def redeliver(webhook_id: Id, event_id: Id, caller: Admin, db: DbSession) -> EventRead:
    """Queue a past event for delivery again (same webhook-id)."""
    return await service.redeliver_event(db, caller.organization_id, webhook_id, event_id)


# ---- auto-posting ------------------------------------------------------------------------------


@autopost_router.get("", response_model=list[AutoPostRead])
async def list_autoposts(caller: Member, db: DbSession) -> list[AutoPostRead]:
    """The organization's feeds."""
    return await autopost.list_autoposts(db, caller.organization_id)


@autopost_router.post("", status_code=201, response_model=AutoPostRead)
async def create_autopost(data: AutoPostCreate, caller: Admin, db: DbSession) -> AutoPostRead:
    """Add a feed; it is polled at once (see ``post_existing`` for what the first poll does)."""
    return await autopost.create_autopost(db, caller.organization_id, data)


@autopost_router.get("/{autopost_id}", response_model=AutoPostRead)
async def get_autopost(autopost_id: Id, caller: Member, db: DbSession) -> AutoPostRead:
    """One feed."""
    return await autopost.get_autopost(db, caller.organization_id, autopost_id)


@autopost_router.patch("/{autopost_id}", response_model=AutoPostRead)
async def update_autopost(
    autopost_id: Id, data: AutoPostUpdate, caller: Admin, db: DbSession
) -> AutoPostRead:
    """Change a feed."""
    return await autopost.update_autopost(db, caller.organization_id, autopost_id, data)


@autopost_router.delete("/{autopost_id}", status_code=204)
async def delete_autopost(autopost_id: Id, caller: Admin, db: DbSession) -> Response:
    """Stop and delete a feed (posts already created stay)."""
    await autopost.delete_autopost(db, caller.organization_id, autopost_id)
    return Response(status_code=204)


@autopost_router.post("/{autopost_id}/run", status_code=202)
async def run_autopost(autopost_id: Id, caller: Admin, db: DbSession) -> dict[str, str]:
    """Poll the feed now (in the background)."""
    await autopost.request_poll(db, caller.organization_id, autopost_id)
    return {"status": "queued"}


# ---- third-party connectors --------------------------------------------------------------------


@third_party_router.get("", response_model=list[ThirdPartyRead])
async def list_connectors(caller: Member, db: DbSession) -> list[ThirdPartyRead]:
    """The organization's connectors."""
    return await third_party.list_connectors(
        db, caller.organization_id, show_secret=caller.is_admin
    )


@third_party_router.post("", status_code=201, response_model=ThirdPartyRead)
async def create_connector(data: ThirdPartyCreate, caller: Admin, db: DbSession) -> ThirdPartyRead:
    """Add a connector."""
    return await third_party.create_connector(db, caller.organization_id, data)


@third_party_router.get("/{connector_id}", response_model=ThirdPartyRead)
async def get_connector(connector_id: Id, caller: Member, db: DbSession) -> ThirdPartyRead:
    """One connector."""
    return await third_party.get_connector(
        db, caller.organization_id, connector_id, show_secret=caller.is_admin
    )


@third_party_router.patch("/{connector_id}", response_model=ThirdPartyRead)
async def update_connector(
    connector_id: Id, data: ThirdPartyUpdate, caller: Admin, db: DbSession
) -> ThirdPartyRead:
    """Change a connector."""
    return await third_party.update_connector(db, caller.organization_id, connector_id, data)


@third_party_router.delete("/{connector_id}", status_code=204)
async def delete_connector(connector_id: Id, caller: Admin, db: DbSession) -> Response:
    """Delete a connector (it stops receiving events)."""
    await third_party.delete_connector(db, caller.organization_id, connector_id)
    return Response(status_code=204)


@third_party_router.post("/{connector_id}/test", response_model=TestResult)
async def test_connector(connector_id: Id, caller: Admin, db: DbSession) -> Any:
    """Send a signed test event to the connector's webhook URL now."""
    return await third_party.send_test(db, caller.organization_id, connector_id)


@third_party_router.get("/{connector_id}/deliveries", response_model=list[DeliveryRead])
async def connector_deliveries(
    connector_id: Id,
    caller: Member,
    db: DbSession,
    limit: Limit = 50,
    before: datetime | None = None,
) -> list[DeliveryRead]:
    """The connector's delivery log (newest first)."""
    return await third_party.deliveries_of(
        db, caller.organization_id, connector_id, limit=limit, before=before
    )


router.include_router(webhooks_router)
router.include_router(autopost_router)
router.include_router(third_party_router)

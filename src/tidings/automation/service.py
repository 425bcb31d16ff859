"""Webhook endpoints of an organization: create, read, change, delete, test, redeliver.

Endpoints owned by a third-party connector (``third_party_id`` set) are not listed or changed
here; they follow their connector (:mod:`tidings.automation.third_party`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.automation.events import TEST_EVENT_TYPE, defer_delivery
from tidings.automation.models import (
    IntegrationsWebhooks,
    WebhookDelivery,
    WebhookEvent,
    Webhooks,
)
from tidings.automation.schemas import (
    DeliveryRead,
    EventRead,
    WebhookCreate,
    WebhookDetail,
    WebhookRead,
    WebhookUpdate,
)
from tidings.automation.webhooks import (
    ROTATION_GRACE,
    InvalidSecret,
    event_body,
    extra_headers,
    generate_secret,
    secret_key,
    send_attempt,
    signing_secrets,
)
from tidings.channels.models import Integration
from tidings.config import get_settings
from tidings.core.errors import BadRequest, Conflict, NotFound
from tidings.core.tenancy import OrgId, get_owned, select_owned
from tidings.core.urlguard import UnsafeURLError, check_url

RECENT_DELIVERIES = 20
MAX_PAGE = 200


async def check_user_url(url: str, *, field: str = "url") -> str:
    """A URL the server may call, else 400 naming ``field``."""
    url = url.strip()
    try:
        await check_url(url, allow_private=get_settings().allow_private_urls)
    except UnsafeURLError as exc:
        raise BadRequest(str(exc), field=field) from exc
    return url


def _checked_secret(secret: str) -> str:
    try:
        secret_key(secret)
    except InvalidSecret as exc:
        raise BadRequest(str(exc), field="secret") from exc
    return secret


async def check_channels(
    session: AsyncSession, org_id: OrgId, ids: list[str], *, field: str = "integrations"
) -> list[str]:
    """The ids if they are all live channels of the organization, else 400 naming ``field``."""
    if not ids:
        return ids
    found = set(
        (
            await session.execute(
                select_owned(Integration, org_id)
                .with_only_columns(Integration.id)
                .where(Integration.id.in_(ids))
            )
        ).scalars()
    )
    missing = [i for i in ids if i not in found]
    if missing:
        raise BadRequest(f"unknown channel(s): {', '.join(missing)}", field=field)
    return ids


async def _channels_of(session: AsyncSession, webhook_ids: list[str]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {i: [] for i in webhook_ids}
    if not webhook_ids:
        return result
    rows = await session.execute(
        select(IntegrationsWebhooks.webhook_id, IntegrationsWebhooks.integration_id)
        .where(IntegrationsWebhooks.webhook_id.in_(webhook_ids))
        .order_by(IntegrationsWebhooks.integration_id)
    )
    for webhook_id, integration_id in rows:
        result[webhook_id].append(integration_id)
    return result


async def _set_channels(session: AsyncSession, webhook_id: str, ids: list[str]) -> None:
    await session.execute(
        delete(IntegrationsWebhooks).where(IntegrationsWebhooks.webhook_id == webhook_id)
    )
    for integration_id in ids:
        session.add(IntegrationsWebhooks(webhook_id=webhook_id, integration_id=integration_id))
    await session.flush()


def _read(row: Webhooks, channels: list[str], *, show_secret: bool) -> WebhookRead:
    return WebhookRead(
        id=row.id,
        name=row.name,
        url=row.url,
        events=list(row.events),
        enabled=row.enabled,
        integrations=channels,
        consecutive_failures=row.consecutive_failures,
        secret=row.secret if show_secret else None,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def delivery_read(delivery: WebhookDelivery, event_type: str) -> DeliveryRead:
    """The API shape of one attempt."""
    return DeliveryRead(
        id=delivery.id,
        event_id=delivery.event_id,
        event_type=event_type,
        attempt=delivery.attempt,
        succeeded=delivery.succeeded,
        status_code=delivery.status_code,
        response_excerpt=delivery.response_excerpt,
        error=delivery.error,
        duration_ms=delivery.duration_ms,
        created_at=delivery.created_at,
    )


def event_read(event: WebhookEvent) -> EventRead:
    """The API shape of one event."""
    return EventRead(
        id=event.id,
        type=event.type,
        status=event.status,
        attempts=event.attempts,
        next_attempt_at=event.next_attempt_at,
        delivered_at=event.delivered_at,
        created_at=event.created_at,
        payload=event.payload,
    )


async def _get(session: AsyncSession, org_id: OrgId, webhook_id: str) -> Webhooks:
    row = await get_owned(session, Webhooks, webhook_id, org_id, what="webhook")
    if row.third_party_id is not None:
        raise NotFound("webhook not found", field="id")
    return row


async def list_webhooks(
    session: AsyncSession, org_id: OrgId, *, show_secret: bool
) -> list[WebhookRead]:
    """The organization's webhook endpoints, oldest first."""
    rows = list(
        (
            await session.execute(
                select_owned(Webhooks, org_id)
                .where(Webhooks.third_party_id.is_(None))
                .order_by(Webhooks.created_at, Webhooks.id)
            )
        ).scalars()
    )
    channels = await _channels_of(session, [r.id for r in rows])
    return [_read(r, channels[r.id], show_secret=show_secret) for r in rows]


async def create_webhook(session: AsyncSession, org_id: OrgId, data: WebhookCreate) -> WebhookRead:
    """Add an endpoint (URL checked by the URL guard; secret generated unless given)."""
    url = await check_user_url(data.url)
    secret = _checked_secret(data.secret) if data.secret else generate_secret()
    channels = await check_channels(session, org_id, data.integrations)
    row = Webhooks(
        organization_id=org_id,
        name=data.name,
        url=url,
        events=list(data.events),
        secret=secret,
        enabled=data.enabled,
    )
    session.add(row)
    await session.flush()
    await _set_channels(session, row.id, channels)
    await session.refresh(row)
    return _read(row, channels, show_secret=True)


async def recent_deliveries(
    session: AsyncSession, webhook_id: str, *, limit: int, before: datetime | None = None
) -> list[DeliveryRead]:
    """The latest attempts to deliver events of one endpoint, newest first."""
    stmt = (
        select(WebhookDelivery, WebhookEvent.type)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookEvent.webhook_id == webhook_id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
        .limit(max(1, min(limit, MAX_PAGE)))
    )
    if before is not None:
        stmt = stmt.where(WebhookDelivery.created_at < before)
    return [delivery_read(d, t) for d, t in (await session.execute(stmt)).all()]


async def get_webhook(
    session: AsyncSession, org_id: OrgId, webhook_id: str, *, show_secret: bool
) -> WebhookDetail:
    """One endpoint with its latest deliveries."""
    row = await _get(session, org_id, webhook_id)
    channels = await _channels_of(session, [row.id])
    read = _read(row, channels[row.id], show_secret=show_secret)
    deliveries = await recent_deliveries(session, row.id, limit=RECENT_DELIVERIES)
    return WebhookDetail(**read.model_dump(), recent_deliveries=deliveries)


async def hurry_pending(session: AsyncSession, webhook_id: str) -> None:
    """Send an endpoint's pending events now (after it was fixed or enabled)."""
    await session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.webhook_id == webhook_id, WebhookEvent.status == "pending")
        .values(next_attempt_at=None)
    )
    await defer_delivery(session, webhook_id)


async def apply_endpoint_changes(
    session: AsyncSession, row: Webhooks, changes: dict[str, Any]
) -> None:
    """Apply already checked changes to an endpoint; enabling resets the failure count and
    sends pending events at once (shared with the connectors)."""
    was_enabled, old_url = row.enabled, row.url
    for key, value in changes.items():
        setattr(row, key, value)
    if row.enabled and not was_enabled:
        row.consecutive_failures = 0
    await session.flush()
    if row.enabled and (not was_enabled or row.url != old_url):
        await hurry_pending(session, row.id)


async def update_webhook(
    session: AsyncSession, org_id: OrgId, webhook_id: str, data: WebhookUpdate
) -> WebhookRead:
    """Change an endpoint."""
    row = await _get(session, org_id, webhook_id)
    fields = data.model_fields_set
    changes: dict[str, Any] = {}
    if "name" in fields:
        changes["name"] = data.name
    if "url" in fields:
        if data.url is None:
            raise BadRequest("url cannot be empty", field="url")
        changes["url"] = await check_user_url(data.url)
    if "events" in fields:
        if data.events is None:
            raise BadRequest("events cannot be empty", field="events")
        changes["events"] = list(data.events)
    if data.rotate_secret:
        changes["secret"] = generate_secret()
    elif "secret" in fields and data.secret is not None:
        changes["secret"] = _checked_secret(data.secret)
    if changes.get("secret", row.secret) != row.secret and row.secret:
        # Zero-downtime rotation: the old secret signs too for a while (docs/automation.md).
        changes["previous_secret"] = row.secret
        changes["previous_secret_until"] = datetime.now(UTC) + ROTATION_GRACE
    if "enabled" in fields and data.enabled is not None:
        changes["enabled"] = data.enabled
    if "integrations" in fields:
        channels = await check_channels(session, org_id, data.integrations or [])
        await _set_channels(session, row.id, channels)
    await apply_endpoint_changes(session, row, changes)
    await session.refresh(row)
    current = await _channels_of(session, [row.id])
    return _read(row, current[row.id], show_secret=True)


async def delete_webhook(session: AsyncSession, org_id: OrgId, webhook_id: str) -> None:
    """Soft-delete an endpoint; its pending events are dropped (never sent)."""
    row = await _get(session, org_id, webhook_id)
    row.deleted_at = datetime.now(UTC)
    row.enabled = False
    await session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.webhook_id == row.id, WebhookEvent.status == "pending")
        .values(status="failed", next_attempt_at=None)
    )
    await session.flush()


async def send_test(session: AsyncSession, org_id: OrgId, webhook_id: str) -> dict[str, Any]:
    """Send a signed ``webhook.test`` event right now and record the attempt; the answer says
    what the endpoint replied. Disabled endpoints may be tested (that is how one checks a fix)."""
    row = await _get(session, org_id, webhook_id)
    return await send_test_to(session, row)


async def send_test_to(session: AsyncSession, row: Webhooks) -> dict[str, Any]:
    """Send a test event to ``row`` (an endpoint already authorized by the caller)."""
    now = datetime.now(UTC)
    payload = {
        "message": "This is a test event from Tidings.",
        "webhook_id": row.id,
        "organization_id": row.organization_id,
    }
    event = WebhookEvent(
        organization_id=row.organization_id,
        webhook_id=row.id,
        type=TEST_EVENT_TYPE,
        payload=payload,
        status="failed",  # until the attempt succeeds; never picked up by the delivery job
        attempts=1,
        created_at=now,
    )
    session.add(event)
    await session.flush()
    body = event_body(TEST_EVENT_TYPE, now, payload)
    result = await send_attempt(
        row.url,
        signing_secrets(row, now) or [generate_secret()],
        event.id,
        body,
        headers=await extra_headers(session, row),
    )
    delivery = WebhookDelivery(
        event_id=event.id,
        attempt=1,
        succeeded=result.succeeded,
        status_code=result.status_code,
        response_excerpt=result.response_excerpt,
        error=result.error,
        duration_ms=result.duration_ms,
        # clock time, not the transaction's: attempts keep their order in the log
        created_at=func.clock_timestamp(),
    )
    session.add(delivery)
    if result.succeeded:
        event.status = "delivered"
        event.delivered_at = datetime.now(UTC)
    await session.flush()
    await session.refresh(delivery)
    return {"event_id": event.id, "delivery": delivery_read(delivery, TEST_EVENT_TYPE)}


async def _event_of(
    session: AsyncSession, org_id: OrgId, webhook_id: str, event_id: str
) -> WebhookEvent:
    event = (
        await session.execute(
            select_owned(WebhookEvent, org_id).where(
                WebhookEvent.id == event_id, WebhookEvent.webhook_id == webhook_id
            )
        )
    ).scalar_one_or_none()
    if event is None:
        raise NotFound("event not found", field="event_id")
    return event


async def redeliver_event(
    session: AsyncSession, org_id: OrgId, webhook_id: str, event_id: str
) -> EventRead:
    """Send a past event again (same ``webhook-id``, a fresh retry budget), in order with the
    endpoint's other pending events."""
    row = await _get(session, org_id, webhook_id)
    return await redeliver_on(session, row, event_id)


async def redeliver_on(session: AsyncSession, row: Webhooks, event_id: str) -> EventRead:
    """Redeliver one event of ``row`` (an endpoint already authorized by the caller)."""
    if not row.enabled:
        raise Conflict("the endpoint is disabled: enable it first", field="enabled")
    event = await _event_of(session, OrgId(row.organization_id), row.id, event_id)
    event.status = "pending"
    event.attempts = 0
    event.next_attempt_at = None
    event.delivered_at = None
    await session.flush()
    await defer_delivery(session, row.id)
    return event_read(event)


async def list_events(
    session: AsyncSession, webhook_id: str, *, limit: int, status: str | None = None
) -> list[EventRead]:
    """The events of one endpoint, newest first."""
    stmt = (
        select(WebhookEvent)
        .where(WebhookEvent.webhook_id == webhook_id)
        .order_by(WebhookEvent.created_at.desc(), WebhookEvent.id.desc())
        .limit(max(1, min(limit, MAX_PAGE)))
    )
    if status is not None:
        stmt = stmt.where(WebhookEvent.status == status)
    return [event_read(e) for e in (await session.execute(stmt)).scalars()]


async def deliveries_of(
    session: AsyncSession,
    org_id: OrgId,
    webhook_id: str,
    *,
    limit: int,
    before: datetime | None = None,
) -> list[DeliveryRead]:
    """The delivery log of one endpoint (newest first, paged with ``before``)."""
    row = await _get(session, org_id, webhook_id)
    return await recent_deliveries(session, row.id, limit=limit, before=before)


async def events_of(
    session: AsyncSession, org_id: OrgId, webhook_id: str, *, limit: int, status: str | None
) -> list[EventRead]:
    """The events of one endpoint (newest first)."""
    row = await _get(session, org_id, webhook_id)
    return await list_events(session, row.id, limit=limit, status=status)

"""Emitting the organization's events to its webhook endpoints (and third-party connectors).

:func:`emit` is called by other domains inside their own transaction (a post was published, a
channel was connected...). It stores one ``webhook_event`` row per interested endpoint and defers
the delivery job on the same connection, so an event exists (and is sent) only if the caller's
transaction commits: a rolled-back publish never reaches a receiver.

Third-party connectors (n8n, Make, Zapier) with a webhook URL own an endpoint row of their own
(``webhooks.third_party_id``), so they are found by the same query and delivered by the same job.
"""

from __future__ import annotations

from typing import Any, get_args

from sqlalchemy import exists, func, literal, or_, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.automation.models import IntegrationsWebhooks, WebhookEvent, Webhooks
from tidings.automation.schemas import EventType
from tidings.core.jobs import defer_in_session
from tidings.core.tenancy import OrgId, owned_by

#: Every event type an endpoint may subscribe to (the API's ``EventType``, in its order).
EVENT_TYPES: tuple[str, ...] = get_args(EventType)

#: The type of the event sent by the "send test event" action (never emitted by :func:`emit`).
TEST_EVENT_TYPE = "webhook.test"

DELIVER_TASK = "automation.deliver_webhook"


def endpoint_lock(webhook_id: str) -> str:
    """The Procrastinate lock shared by every delivery job of one endpoint (keeps them in order
    and never lets two of them run at once, without holding back other endpoints)."""
    return f"webhook:{webhook_id}"


async def defer_delivery(session: AsyncSession, webhook_id: str) -> None:
    """Defer the delivery job of one endpoint in the session's transaction."""
    await defer_in_session(
        session, DELIVER_TASK, lock=endpoint_lock(webhook_id), webhook_id=webhook_id
    )


async def emit(
    session: AsyncSession,
    org_id: OrgId | str,
    event_type: str,
    payload: dict[str, Any],
    *,
    integration_id: str | None = None,
) -> list[str]:
    """Record ``event_type`` for every interested endpoint of the organization and defer its
    delivery, in the caller's transaction; returns the ids of the stored events.

    An endpoint is interested when it is enabled, not deleted, subscribed to ``event_type`` and,
    if it is limited to some channels, ``integration_id`` is one of them. Events that concern no
    channel (``integration_id`` is None, e.g. ``subscription.updated``) reach every subscribed
    endpoint, limited or not. Raises ``ValueError`` for an unknown event type.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}; expected one of {EVENT_TYPES}")
    limited = exists().where(IntegrationsWebhooks.webhook_id == Webhooks.id)
    stmt = (
        select(Webhooks.id)
        .where(
            owned_by(Webhooks, OrgId(str(org_id))),
            Webhooks.enabled.is_(True),
            Webhooks.deleted_at.is_(None),
            Webhooks.events.op("@>")(func.cast(literal(f'["{event_type}"]'), JSONB)),
        )
        .order_by(Webhooks.created_at, Webhooks.id)
    )
    if integration_id is not None:
        allowed = exists().where(
            IntegrationsWebhooks.webhook_id == Webhooks.id,
            IntegrationsWebhooks.integration_id == integration_id,
        )
        stmt = stmt.where(or_(~limited, allowed))
    webhook_ids = list((await session.execute(stmt)).scalars())
    event_ids: list[str] = []
    for webhook_id in webhook_ids:
        event = WebhookEvent(
            organization_id=str(org_id),
            webhook_id=webhook_id,
            type=event_type,
            payload=payload,
            # clock_timestamp, not now(): several events of one transaction keep their order.
            created_at=func.clock_timestamp(),
        )
        session.add(event)
        await session.flush()
        event_ids.append(event.id)
        await defer_delivery(session, webhook_id)
    return event_ids

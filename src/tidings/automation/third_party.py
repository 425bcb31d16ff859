"""Third-party connectors (n8n, Make, Zapier).

A connector stores the provider, the connector's API key (encrypted at rest), a webhook URL and
free JSON config. When it has a webhook URL it owns one webhook endpoint row
(``webhooks.third_party_id``): the organization's events reach it through
:func:`tidings.automation.events.emit` and the same signed, ordered, retried delivery as any
endpoint. That row is managed here only (it is hidden from /api/webhooks).

The API key is sent with every delivery in the connector's *auth header* when there is one:
``config.auth_header`` if set, else the provider's usual header (Make's ``x-make-apikey``), so
a scenario or workflow can insist on it. The other direction (the connector creating posts) goes
through the Public API with an organization API key, see docs/automation.md.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.automation.events import EVENT_TYPES
from tidings.automation.models import ThirdParty, WebhookEvent, Webhooks
from tidings.automation.schemas import (
    DeliveryRead,
    ThirdPartyCreate,
    ThirdPartyRead,
    ThirdPartyUpdate,
)
from tidings.automation.service import (
    apply_endpoint_changes,
    check_user_url,
    recent_deliveries,
    send_test_to,
)
from tidings.automation.webhooks import auth_header_of, generate_secret
from tidings.core.errors import BadRequest
from tidings.core.tenancy import OrgId, get_owned, select_owned

PROVIDERS = ("n8n", "make", "zapier")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")
_RESERVED_HEADERS = {
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
}
MAX_CONFIG_BYTES = 16_000


def _checked_config(config: dict[str, Any] | None) -> dict[str, Any] | None:
    if config is None:
        return None
    if len(json.dumps(config, default=str)) > MAX_CONFIG_BYTES:
        raise BadRequest(f"config is larger than {MAX_CONFIG_BYTES} bytes", field="config")
    header = config.get("auth_header")
    if header is not None:
        if not isinstance(header, str) or not _HEADER_NAME.match(header):
            raise BadRequest(
                "auth_header must be an HTTP header name (letters, digits, '-')",
                field="config.auth_header",
            )
        if header.lower() in _RESERVED_HEADERS:
            raise BadRequest(f"{header} is set by Tidings itself", field="config.auth_header")
    return config


async def _endpoint_of(session: AsyncSession, connector: ThirdParty) -> Webhooks | None:
    stmt = select(Webhooks).where(Webhooks.third_party_id == connector.id)
    return (await session.execute(stmt)).scalar_one_or_none()


def _read(connector: ThirdParty, endpoint: Webhooks | None, *, show_secret: bool) -> ThirdPartyRead:
    key = connector.api_key
    return ThirdPartyRead(
        id=connector.id,
        provider=connector.provider,
        api_key_hint=("…" + key[-4:]) if len(key) > 8 else "…",
        webhook_url=connector.webhook_url,
        events=list(endpoint.events) if endpoint is not None else list(EVENT_TYPES),
        signing_secret=endpoint.secret if endpoint is not None and show_secret else None,
        config=connector.config,
        enabled=connector.enabled,
        receiving_events=bool(
            endpoint is not None and endpoint.enabled and connector.webhook_url is not None
        ),
        auth_header=auth_header_of(connector.provider, connector.config),
        created_at=connector.created_at,
        updated_at=connector.updated_at,
    )


async def list_connectors(
    session: AsyncSession, org_id: OrgId, *, show_secret: bool
) -> list[ThirdPartyRead]:
    """The organization's connectors, oldest first."""
    connectors = list(
        (
            await session.execute(
                select_owned(ThirdParty, org_id).order_by(ThirdParty.created_at, ThirdParty.id)
            )
        ).scalars()
    )
    endpoints = {
        e.third_party_id: e
        for e in (
            await session.execute(
                select(Webhooks).where(Webhooks.third_party_id.in_([c.id for c in connectors]))
            )
        ).scalars()
    }
    return [_read(c, endpoints.get(c.id), show_secret=show_secret) for c in connectors]


async def create_connector(
    session: AsyncSession, org_id: OrgId, data: ThirdPartyCreate
) -> ThirdPartyRead:
    """Add a connector (and its endpoint when it has a webhook URL)."""
    url = await check_user_url(data.webhook_url, field="webhook_url") if data.webhook_url else None
    if data.events is not None and url is None:
        raise BadRequest("events need a webhook_url to be sent to", field="events")
    connector = ThirdParty(
        organization_id=org_id,
        provider=data.provider,
        api_key=data.api_key,
        webhook_url=url,
        config=_checked_config(data.config),
        enabled=data.enabled,
    )
    session.add(connector)
    await session.flush()
    endpoint = None
    if url is not None:
        endpoint = Webhooks(
            organization_id=org_id,
            name=f"{data.provider} connector",
            url=url,
            events=list(data.events or EVENT_TYPES),
            secret=generate_secret(),
            enabled=data.enabled,
            third_party_id=connector.id,
        )
        session.add(endpoint)
        await session.flush()
    await session.refresh(connector)
    return _read(connector, endpoint, show_secret=True)


async def get_connector(
    session: AsyncSession, org_id: OrgId, connector_id: str, *, show_secret: bool
) -> ThirdPartyRead:
    """One connector."""
    connector = await get_owned(session, ThirdParty, connector_id, org_id, what="connector")
    return _read(connector, await _endpoint_of(session, connector), show_secret=show_secret)


async def update_connector(
    session: AsyncSession, org_id: OrgId, connector_id: str, data: ThirdPartyUpdate
) -> ThirdPartyRead:
    """Change a connector; its endpoint follows (URL, events, enabled)."""
    connector = await get_owned(session, ThirdParty, connector_id, org_id, what="connector")
    endpoint = await _endpoint_of(session, connector)
    fields = data.model_fields_set
    if "api_key" in fields:
        if not data.api_key:
            raise BadRequest("api_key cannot be empty", field="api_key")
        connector.api_key = data.api_key
    if "config" in fields:
        connector.config = _checked_config(data.config)
    if "enabled" in fields and data.enabled is not None:
        connector.enabled = data.enabled
    if "webhook_url" in fields:
        connector.webhook_url = (
            await check_user_url(data.webhook_url, field="webhook_url")
            if data.webhook_url
            else None
        )
    if data.events is not None and connector.webhook_url is None:
        raise BadRequest("events need a webhook_url to be sent to", field="events")
    await session.flush()

    if connector.webhook_url is not None and endpoint is None:
        endpoint = Webhooks(
            organization_id=org_id,
            name=f"{connector.provider} connector",
            url=connector.webhook_url,
            events=list(data.events or EVENT_TYPES),
            secret=generate_secret(),
            enabled=connector.enabled,
            third_party_id=connector.id,
        )
        session.add(endpoint)
        await session.flush()
    elif endpoint is not None:
        changes: dict[str, Any] = {}
        if connector.webhook_url is not None:
            changes["url"] = connector.webhook_url
        if data.events is not None:
            changes["events"] = list(data.events)
        # Enabling the connector again also re-enables deliveries disabled after failures.
        wants = connector.enabled and connector.webhook_url is not None
        if wants != endpoint.enabled or ("enabled" in fields and wants):
            changes["enabled"] = wants
        await apply_endpoint_changes(session, endpoint, changes)
    await session.refresh(connector)
    return _read(connector, endpoint, show_secret=True)


async def delete_connector(session: AsyncSession, org_id: OrgId, connector_id: str) -> None:
    """Soft-delete a connector and its endpoint (pending events are dropped)."""
    connector = await get_owned(session, ThirdParty, connector_id, org_id, what="connector")
    now = datetime.now(UTC)
    connector.deleted_at = now
    endpoint = await _endpoint_of(session, connector)
    if endpoint is not None:
        endpoint.deleted_at = now
        endpoint.enabled = False
        await session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.webhook_id == endpoint.id, WebhookEvent.status == "pending")
            .values(status="failed", next_attempt_at=None)
        )
    await session.flush()


async def _required_endpoint(session: AsyncSession, org_id: OrgId, connector_id: str) -> Webhooks:
    connector = await get_owned(session, ThirdParty, connector_id, org_id, what="connector")
    endpoint = await _endpoint_of(session, connector)
    if endpoint is None or connector.webhook_url is None:
        raise BadRequest("the connector has no webhook URL", field="webhook_url")
    return endpoint


async def send_test(session: AsyncSession, org_id: OrgId, connector_id: str) -> dict[str, Any]:
    """Send a signed test event to the connector's webhook URL now."""
    endpoint = await _required_endpoint(session, org_id, connector_id)
    return await send_test_to(session, endpoint)


async def deliveries_of(
    session: AsyncSession,
    org_id: OrgId,
    connector_id: str,
    *,
    limit: int,
    before: datetime | None = None,
) -> list[DeliveryRead]:
    """The connector's delivery log, newest first (empty without a webhook URL)."""
    connector = await get_owned(session, ThirdParty, connector_id, org_id, what="connector")
    endpoint = await _endpoint_of(session, connector)
    if endpoint is None:
        return []
    return await recent_deliveries(session, endpoint.id, limit=limit, before=before)

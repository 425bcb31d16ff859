"""Setting an organization's plan. Tidings has no payment provider built in: an instance admin
sets the plan (``tidings billing set``), or a payment integration calls :func:`set_subscription`.
Every change fires the ``subscription.updated`` event."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.automation.events import emit
from tidings.billing.models import Subscription
from tidings.core.enums import Period, SubscriptionTier
from tidings.core.errors import BadRequest
from tidings.core.tenancy import OrgId, select_owned


def subscription_payload(subscription: Subscription) -> dict[str, Any]:
    """The subscription as the ``subscription.updated`` event carries it."""
    return {
        "organizationId": subscription.organization_id,
        "tier": subscription.subscription_tier.value,
        "period": subscription.period.value,
        "totalChannels": subscription.total_channels,
        "isLifetime": subscription.is_lifetime,
        "cancelAt": subscription.cancel_at.isoformat() if subscription.cancel_at else None,
        "identifier": subscription.identifier,
    }


async def set_subscription(
    session: AsyncSession,
    org_id: OrgId,
    *,
    tier: SubscriptionTier,
    period: Period,
    total_channels: int,
    is_lifetime: bool = False,
    cancel_at: datetime | None = None,
    identifier: str | None = None,
) -> Subscription:
    """Create or replace the organization's subscription and emit ``subscription.updated``."""
    if total_channels < 0:
        raise BadRequest("total channels must be 0 or more", field="total_channels")
    if cancel_at is not None and cancel_at.tzinfo is None:
        raise BadRequest(
            "cancel date needs a timezone (e.g. 2027-01-01T00:00:00Z)", field="cancel_at"
        )
    subscription = (
        await session.execute(
            select_owned(Subscription, org_id)
            .execution_options(include_deleted=True)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if subscription is None:
        subscription = Subscription(
            organization_id=org_id,
            subscription_tier=tier,
            period=period,
            total_channels=total_channels,
        )
        session.add(subscription)
    subscription.subscription_tier = tier
    subscription.period = period
    subscription.total_channels = total_channels
    subscription.is_lifetime = is_lifetime
    subscription.cancel_at = cancel_at
    subscription.identifier = identifier
    subscription.deleted_at = None
    await session.flush()
    await emit(session, org_id, "subscription.updated", subscription_payload(subscription))
    return subscription

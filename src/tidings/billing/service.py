"""Billing rules enforced by other domains: how many active channels an organization may have.

Self-hosted without billing (``TIDINGS_BILLING`` unset or false) has no limit. With billing on,
the organization's live subscription's ``total_channels`` caps its active channels (not deleted,
not disabled); an organization without a live subscription may have none.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.billing.models import Subscription
from tidings.channels.models import Integration
from tidings.config import get_settings
from tidings.core.errors import PaymentRequired
from tidings.core.tenancy import OrgId, owned_by, select_owned
from tidings.orgs.models import Organization


async def live_subscription(session: AsyncSession, org_id: OrgId) -> Subscription | None:
    """The organization's subscription unless it was deleted or its cancellation date passed."""
    subscription = (await session.execute(select_owned(Subscription, org_id))).scalar_one_or_none()
    if subscription is None:
        return None
    if (
        not subscription.is_lifetime
        and subscription.cancel_at is not None
        and subscription.cancel_at <= datetime.now(UTC)
    ):
        return None
    return subscription


async def channel_limit(session: AsyncSession, org_id: OrgId) -> int | None:
    """How many active channels the organization may have; None means unlimited."""
    if not get_settings().billing:
        return None
    subscription = await live_subscription(session, org_id)
    return subscription.total_channels if subscription is not None else 0


async def active_channel_count(
    session: AsyncSession, org_id: OrgId, *, excluding: str | None = None
) -> int:
    """Channels of the organization that count against the limit (not deleted, not disabled)."""
    stmt = (
        select(func.count())
        .select_from(Integration)
        .where(
            owned_by(Integration, org_id),
            Integration.deleted_at.is_(None),
            Integration.disabled.is_(False),
        )
    )
    if excluding is not None:
        stmt = stmt.where(Integration.id != excluding)
    return int((await session.execute(stmt)).scalar_one())


async def check_channel_limit(
    session: AsyncSession, org_id: OrgId, *, excluding: str | None = None
) -> None:
    """Raise :class:`PaymentRequired` (402) unless one more active channel fits the plan.

    ``excluding`` is the channel about to become active (already counted if it is active).
    The organization row is locked until the caller's transaction ends, so two connections
    at once cannot both take the last free place.
    """
    limit = await channel_limit(session, org_id)
    if limit is None:
        return
    await session.execute(
        select(Organization.id).where(Organization.id == org_id).with_for_update()
    )
    used = await active_channel_count(session, org_id, excluding=excluding)
    if used + 1 > limit:
        if limit == 0:
            message = (
                "Your organization has no active subscription; subscribe to a plan to "
                "connect or enable channels"
            )
        else:
            message = (
                f"Your plan allows {limit} active channel{'s' if limit != 1 else ''} and "
                f"{used} {'are' if used != 1 else 'is'} in use; upgrade the plan, or disable or "
                "delete a channel first"
            )
        raise PaymentRequired(
            message, field="channels", code="channel_limit", extra={"limit": limit, "used": used}
        )

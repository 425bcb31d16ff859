"""Subscriptions (which limit channels), AI credits and used promo codes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, false
from sqlalchemy.orm import Mapped, mapped_column

from tidings.core.enums import Period, SubscriptionTier
from tidings.core.orm import Base, SoftDeleteMixin, TimestampMixin, cuid_pk, pg_enum, uuid_pk


class Subscription(TimestampMixin, SoftDeleteMixin, Base):
    """An organization's plan; ``total_channels`` caps its active channels when billing is on."""

    __tablename__ = "subscription"

    id: Mapped[str] = cuid_pk()
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), unique=True
    )
    subscription_tier: Mapped[SubscriptionTier] = mapped_column(
        pg_enum(SubscriptionTier, "subscription_tier")
    )
    identifier: Mapped[str | None]
    cancel_at: Mapped[datetime | None]
    period: Mapped[Period] = mapped_column(pg_enum(Period, "period"))
    total_channels: Mapped[int]
    is_lifetime: Mapped[bool] = mapped_column(default=False, server_default=false())


class Credits(TimestampMixin, Base):
    """Remaining AI credits of one type."""

    __tablename__ = "credits"

    id: Mapped[str] = uuid_pk()
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    credits: Mapped[int]
    type: Mapped[str] = mapped_column(default="ai_images", server_default="ai_images")


class UsedCodes(TimestampMixin, Base):
    """A promo code an organization has redeemed."""

    __tablename__ = "used_codes"

    id: Mapped[str] = uuid_pk()
    code: Mapped[str] = mapped_column(index=True)
    org_id: Mapped[str] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )

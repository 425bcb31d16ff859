"""The marketplace: agencies, buyer-seller conversations, orders and their items."""

from __future__ import annotations

from sqlalchemy import ForeignKey, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from tidings.core.enums import MessageFrom, OrderStatus
from tidings.core.orm import Base, SoftDeleteMixin, TimestampMixin, pg_enum, uuid_pk


class SocialMediaAgency(TimestampMixin, SoftDeleteMixin, Base):
    """A user's agency profile in the marketplace."""

    __tablename__ = "social_media_agency"

    id: Mapped[str] = uuid_pk()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    name: Mapped[str]
    logo_id: Mapped[str | None] = mapped_column(
        ForeignKey("media.id", ondelete="SET NULL"), index=True
    )
    website: Mapped[str | None]
    slug: Mapped[str | None]
    facebook: Mapped[str | None]
    instagram: Mapped[str | None]
    twitter: Mapped[str | None]
    linked_in: Mapped[str | None]
    youtube: Mapped[str | None]
    tiktok: Mapped[str | None]
    other_social_media: Mapped[str | None]
    short_description: Mapped[str]
    description: Mapped[str]
    approved: Mapped[bool] = mapped_column(default=False, server_default=false())


class SocialMediaAgencyNiche(Base):
    """A niche an agency serves."""

    __tablename__ = "social_media_agency_niche"

    agency_id: Mapped[str] = mapped_column(
        ForeignKey("social_media_agency.id", ondelete="CASCADE"), primary_key=True
    )
    niche: Mapped[str] = mapped_column(primary_key=True)


class MessagesGroup(TimestampMixin, Base):
    """A conversation between a buyer (and their organization) and a seller."""

    __tablename__ = "messages_group"
    __table_args__ = (UniqueConstraint("buyer_id", "seller_id"),)

    id: Mapped[str] = uuid_pk()
    buyer_organization_id: Mapped[str] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    buyer_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    seller_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)


class Messages(TimestampMixin, SoftDeleteMixin, Base):
    """One message of a conversation."""

    __tablename__ = "messages"

    id: Mapped[str] = uuid_pk()
    from_: Mapped[MessageFrom] = mapped_column("from", pg_enum(MessageFrom, "message_from"))
    content: Mapped[str | None]
    group_id: Mapped[str] = mapped_column(
        ForeignKey("messages_group.id", ondelete="CASCADE"), index=True
    )
    special: Mapped[str | None]


class Orders(TimestampMixin, Base):
    """A purchase of a seller's posting services."""

    __tablename__ = "orders"

    id: Mapped[str] = uuid_pk()
    buyer_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    seller_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    status: Mapped[OrderStatus] = mapped_column(pg_enum(OrderStatus, "order_status"))
    message_group_id: Mapped[str] = mapped_column(
        ForeignKey("messages_group.id", ondelete="CASCADE"), index=True
    )
    capture_id: Mapped[str | None]


class OrderItems(TimestampMixin, Base):
    """A line of an order: posts on one channel."""

    __tablename__ = "order_items"

    id: Mapped[str] = uuid_pk()
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    integration_id: Mapped[str] = mapped_column(
        ForeignKey("integration.id", ondelete="CASCADE"), index=True
    )
    quantity: Mapped[int]
    price: Mapped[int]  # cents
    description: Mapped[str | None]

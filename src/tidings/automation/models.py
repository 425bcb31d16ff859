"""Outgoing webhooks (with their events and deliveries), RSS auto-posting and third-party
connectors."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, UniqueConstraint, false, func, text, true
from sqlalchemy.orm import Mapped, mapped_column

from tidings.core.orm import (
    Base,
    EncryptedText,
    Json,
    JsonList,
    SoftDeleteMixin,
    TimestampMixin,
    uuid_pk,
)


class AutoPost(TimestampMixin, SoftDeleteMixin, Base):
    """An RSS/Atom feed whose new items become posts on the chosen channels."""

    __tablename__ = "auto_post"

    id: Mapped[str] = uuid_pk()
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str]
    url: Mapped[str]
    integrations: Mapped[JsonList]  # channel ids
    template: Mapped[str]
    enabled: Mapped[bool] = mapped_column(default=True, server_default=true())
    last_run: Mapped[datetime | None]
    # Not in the spec: conditional GET state, the last failure, and draft vs. next free slot.
    etag: Mapped[str | None]
    last_modified: Mapped[str | None]
    last_error: Mapped[str | None]
    on_slot: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Not in the spec: false until the feed was read once. The first read only remembers the
    # items already there (no flood of old posts) unless the user asked to post them, in which
    # case the feed is created primed.
    primed: Mapped[bool] = mapped_column(default=False, server_default=false())


class AutoPostItem(Base):
    """A feed item already turned into posts (by GUID, else link), so restarts never repeat it."""

    __tablename__ = "auto_post_item"
    __table_args__ = (UniqueConstraint("auto_post_id", "key"),)

    id: Mapped[str] = uuid_pk()
    auto_post_id: Mapped[str] = mapped_column(ForeignKey("auto_post.id", ondelete="CASCADE"))
    key: Mapped[str]
    created_at: Mapped[datetime] = mapped_column(default=func.now(), server_default=func.now())


class Webhooks(TimestampMixin, SoftDeleteMixin, Base):
    """An endpoint that receives the organization's events, signed with ``secret``."""

    __tablename__ = "webhooks"

    id: Mapped[str] = uuid_pk()
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str | None]
    url: Mapped[str]
    events: Mapped[JsonList]
    secret: Mapped[str | None] = mapped_column(EncryptedText())
    enabled: Mapped[bool] = mapped_column(default=True, server_default=true())
    consecutive_failures: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    # Not in the spec: the secret replaced by a rotation keeps signing (a second signature in
    # the header, Standard Webhooks' zero-downtime rotation) until ``previous_secret_until``.
    previous_secret: Mapped[str | None] = mapped_column(EncryptedText(), default=None)
    previous_secret_until: Mapped[datetime | None] = mapped_column(default=None)
    # Not in the spec: set on the endpoint a third-party connector owns (it receives the events
    # through the same delivery machinery); such endpoints are managed through the connector.
    third_party_id: Mapped[str | None] = mapped_column(
        ForeignKey("third_party.id", ondelete="CASCADE"), unique=True, default=None
    )


class IntegrationsWebhooks(Base):
    """Limits a webhook to some channels (no rows: all channels)."""

    __tablename__ = "integrations_webhooks"

    integration_id: Mapped[str] = mapped_column(
        ForeignKey("integration.id", ondelete="CASCADE"), primary_key=True
    )
    webhook_id: Mapped[str] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class WebhookEvent(Base):
    """One event for one endpoint, with its payload; delivered in order per endpoint."""

    __tablename__ = "webhook_event"
    __table_args__ = (Index(None, "webhook_id", "created_at"),)

    id: Mapped[str] = uuid_pk()
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    type: Mapped[str]
    payload: Mapped[Json]
    # "pending", "delivered", "failed" (gave up)
    status: Mapped[str] = mapped_column(default="pending", server_default="pending")
    attempts: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    next_attempt_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=func.now(), server_default=func.now())


class WebhookDelivery(Base):
    """One attempt to deliver an event."""

    __tablename__ = "webhook_delivery"

    id: Mapped[str] = uuid_pk()
    event_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_event.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int]
    succeeded: Mapped[bool]
    status_code: Mapped[int | None]
    response_excerpt: Mapped[str | None]
    error: Mapped[str | None]
    duration_ms: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=func.now(), server_default=func.now())


class ThirdParty(TimestampMixin, SoftDeleteMixin, Base):
    """A connector (n8n, Make, Zapier): receives events at ``webhook_url``; its API key is
    encrypted at rest."""

    __tablename__ = "third_party"

    id: Mapped[str] = uuid_pk()
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    provider: Mapped[str]
    api_key: Mapped[str] = mapped_column(EncryptedText())
    webhook_url: Mapped[str | None]
    config: Mapped[Json | None]
    enabled: Mapped[bool] = mapped_column(default=True, server_default=true())

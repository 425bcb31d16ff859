"""Channels (the spec's Integration), their plugs, and pending OAuth connections."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, UniqueConstraint, false, func, text, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tidings.core.orm import (
    Base,
    EncryptedText,
    JsonList,
    SoftDeleteMixin,
    cuid_pk,
    uuid_pk,
)

if TYPE_CHECKING:
    from tidings.orgs.models import Customer

DEFAULT_POSTING_TIMES: list[dict[str, int]] = [{"time": 120}, {"time": 400}, {"time": 700}]


class Integration(SoftDeleteMixin, Base):
    """A connected social account. Tokens and custom-instance details are encrypted at rest."""

    __tablename__ = "integration"
    __table_args__ = (UniqueConstraint("organization_id", "internal_id"),)

    id: Mapped[str] = cuid_pk()
    internal_id: Mapped[str]
    organization_id: Mapped[str] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"))
    name: Mapped[str]
    picture: Mapped[str | None]
    provider_identifier: Mapped[str] = mapped_column(index=True)
    type: Mapped[str]
    token: Mapped[str] = mapped_column(EncryptedText())
    disabled: Mapped[bool] = mapped_column(default=False, server_default=false(), index=True)
    token_expiration: Mapped[datetime | None]
    refresh_token: Mapped[str | None] = mapped_column(EncryptedText())
    profile: Mapped[str | None]
    posting_times: Mapped[JsonList] = mapped_column(
        default=lambda: [dict(t) for t in DEFAULT_POSTING_TIMES],
        server_default=text("""'[{"time": 120}, {"time": 400}, {"time": 700}]'::jsonb"""),
    )
    # JSON (instance URL, app credentials, ...) encrypted as a whole.
    custom_instance_details: Mapped[str | None] = mapped_column(EncryptedText())
    customer_id: Mapped[str | None] = mapped_column(
        ForeignKey("customer.id", ondelete="SET NULL"), index=True
    )
    root_internal_id: Mapped[str | None]
    additional_settings: Mapped[JsonList | None] = mapped_column(
        default=list, server_default=text("'[]'::jsonb")
    )
    in_between_steps: Mapped[bool] = mapped_column(default=False, server_default=false())
    refresh_needed: Mapped[bool] = mapped_column(default=False, server_default=false(), index=True)
    created_at: Mapped[datetime] = mapped_column(default=func.now(), server_default=func.now())
    updated_at: Mapped[datetime | None] = mapped_column(
        default=func.now(), server_default=func.now(), onupdate=func.now()
    )

    customer: Mapped[Customer | None] = relationship(lazy="raise")


class Plugs(Base):
    """An automation attached to a channel (e.g. auto-repost when a post reaches N likes)."""

    __tablename__ = "plugs"
    __table_args__ = (UniqueConstraint("plug_function", "integration_id"),)

    id: Mapped[str] = uuid_pk()
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    plug_function: Mapped[str]
    data: Mapped[str]
    integration_id: Mapped[str] = mapped_column(
        ForeignKey("integration.id", ondelete="CASCADE"), index=True
    )
    activated: Mapped[bool] = mapped_column(default=True, server_default=true())


class OAuthState(Base):
    """A pending OAuth flow (connecting a channel, or signing in), looked up by ``state``."""

    __tablename__ = "oauth_state"

    id: Mapped[str] = uuid_pk()
    state: Mapped[str] = mapped_column(unique=True)
    purpose: Mapped[str]  # "channel" | "login"
    provider: Mapped[str]
    organization_id: Mapped[str | None] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    code_verifier: Mapped[str | None] = mapped_column(EncryptedText())
    redirect_uri: Mapped[str | None]
    # Provider-specific data of the flow (e.g. a Mastodon instance and its app credentials).
    data: Mapped[str | None] = mapped_column(EncryptedText())
    created_at: Mapped[datetime] = mapped_column(default=func.now(), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(index=True)

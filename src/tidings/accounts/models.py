"""Users, their sign-in sessions and their marketplace items."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, UniqueConstraint, false, func, text, true
from sqlalchemy.orm import Mapped, mapped_column

from tidings.core.enums import Provider
from tidings.core.orm import Base, TimestampMixin, pg_enum, uuid_pk


class User(TimestampMixin, Base):
    """A person. Emails are stored lower-cased, so uniqueness per provider is case-insensitive."""

    # "user" is a reserved word in PostgreSQL; the plural spares every raw query a quote.
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("email", "provider_name"),)

    id: Mapped[str] = uuid_pk()
    email: Mapped[str]
    password: Mapped[str | None]  # argon2 hash; null for OAuth users
    provider_name: Mapped[Provider] = mapped_column(pg_enum(Provider, "provider"))
    name: Mapped[str | None]
    last_name: Mapped[str | None]
    is_super_admin: Mapped[bool] = mapped_column(default=False, server_default=false())
    bio: Mapped[str | None]
    audience: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    picture_id: Mapped[str | None] = mapped_column(
        ForeignKey("media.id", ondelete="SET NULL"), index=True
    )
    provider_id: Mapped[str | None]
    # Minutes east of UTC, as the spec stores it; ``timezone_name`` (IANA) is what makes
    # wall-clock times DST-correct and wins when set.
    timezone: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    timezone_name: Mapped[str | None]
    last_read_notifications: Mapped[datetime] = mapped_column(
        default=func.now(), server_default=func.now(), index=True
    )
    invite_id: Mapped[str | None] = mapped_column(index=True)
    activated: Mapped[bool] = mapped_column(default=True, server_default=true())
    marketplace: Mapped[bool] = mapped_column(default=True, server_default=true())
    account: Mapped[str | None] = mapped_column(index=True)
    connected_account: Mapped[bool] = mapped_column(default=False, server_default=false())
    last_online: Mapped[datetime] = mapped_column(
        default=func.now(), server_default=func.now(), index=True
    )
    ip: Mapped[str | None]
    agent: Mapped[str | None]


class UserSession(Base):
    """A signed-in session. The token is shown once (cookie / bearer) and stored as a hash."""

    __tablename__ = "user_session"

    id: Mapped[str] = uuid_pk()
    token_hash: Mapped[str] = mapped_column(unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The organization the session currently works in (switchable).
    organization_id: Mapped[str | None] = mapped_column(
        ForeignKey("organization.id", ondelete="SET NULL"), index=True
    )
    # Set while a global super admin impersonates ``user_id``.
    impersonator_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=func.now(), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(index=True)
    last_seen_at: Mapped[datetime] = mapped_column(default=func.now(), server_default=func.now())
    revoked_at: Mapped[datetime | None]
    ip: Mapped[str | None]
    agent: Mapped[str | None]


class ItemUser(Base):
    """A marketplace item (a service a seller offers) held by a user."""

    __tablename__ = "item_user"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: Mapped[str] = uuid_pk()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    key: Mapped[str]

"""Organizations (tenants), their members and their customers."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tidings.core.enums import Role
from tidings.core.orm import Base, SoftDeleteMixin, TimestampMixin, pg_enum, uuid_pk

if TYPE_CHECKING:
    from tidings.accounts.models import User


class Organization(TimestampMixin, Base):
    """A team or agency: the unit of tenancy."""

    __tablename__ = "organization"

    id: Mapped[str] = uuid_pk()
    name: Mapped[str]
    description: Mapped[str | None]
    # SHA-256 of the Public API key; the key itself is shown once and never stored.
    api_key: Mapped[str | None] = mapped_column(unique=True)
    payment_id: Mapped[str | None]
    allow_trial: Mapped[bool] = mapped_column(default=False, server_default=false())
    is_trailing: Mapped[bool] = mapped_column(default=False, server_default=false())


class UserOrganization(TimestampMixin, Base):
    """Membership of a user in an organization, with a role."""

    __tablename__ = "user_organization"
    __table_args__ = (UniqueConstraint("user_id", "organization_id"),)

    id: Mapped[str] = uuid_pk()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    disabled: Mapped[bool] = mapped_column(default=False, server_default=false())
    role: Mapped[Role] = mapped_column(
        pg_enum(Role, "role"), default=Role.USER, server_default=Role.USER.value
    )

    user: Mapped[User] = relationship(lazy="raise")
    organization: Mapped[Organization] = relationship(lazy="raise")


class Customer(TimestampMixin, SoftDeleteMixin, Base):
    """A client of an agency; channels are grouped by customer.

    Unique over (org, name, deleted_at) with NULLS NOT DISTINCT: two live customers of one name
    collide (their deleted_at are both NULL), while deleted ones (distinct timestamps) coexist.
    """

    __tablename__ = "customer"
    __table_args__ = (
        UniqueConstraint("org_id", "name", "deleted_at", postgresql_nulls_not_distinct=True),
    )

    id: Mapped[str] = uuid_pk()
    name: Mapped[str]
    org_id: Mapped[str] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"))


class OrganizationInvite(TimestampMixin, Base):
    """An invitation of an email address to join an organization with a role.

    The emailed link carries a signed token naming this row; the row makes the link single-use
    and revocable, and lets admins list pending invites. On acceptance the user's ``invite_id``
    records the invite that brought them in.
    """

    __tablename__ = "organization_invite"

    id: Mapped[str] = uuid_pk()
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(index=True)  # lower-cased
    role: Mapped[Role] = mapped_column(pg_enum(Role, "role"))
    invited_by_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    accepted_by_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    revoked_at: Mapped[datetime | None]

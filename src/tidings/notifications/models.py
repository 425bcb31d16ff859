"""In-app notifications of an organization."""

from __future__ import annotations

from sqlalchemy import ForeignKey, Index
from sqlalchemy.orm import Mapped, mapped_column

from tidings.core.orm import Base, SoftDeleteMixin, TimestampMixin, uuid_pk


class Notifications(TimestampMixin, SoftDeleteMixin, Base):
    """A message for the members of an organization; read state is the user's
    ``last_read_notifications``."""

    __tablename__ = "notifications"
    __table_args__ = (Index(None, "organization_id", "created_at"),)

    id: Mapped[str] = uuid_pk()
    organization_id: Mapped[str] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"))
    content: Mapped[str]
    link: Mapped[str | None]

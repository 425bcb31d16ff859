"""The media library of an organization."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, text
from sqlalchemy.orm import Mapped, mapped_column

from tidings.core.orm import Base, SoftDeleteMixin, TimestampMixin, uuid_pk


class Media(TimestampMixin, SoftDeleteMixin, Base):
    """An uploaded image, video or document. ``path`` is the public URL platforms fetch."""

    __tablename__ = "media"

    id: Mapped[str] = uuid_pk()
    name: Mapped[str] = mapped_column(index=True)
    path: Mapped[str]
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    thumbnail: Mapped[str | None]
    thumbnail_timestamp: Mapped[int | None]
    alt: Mapped[str | None]
    file_size: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    type: Mapped[str] = mapped_column(default="image", server_default="image", index=True)
    # Not in the spec: where the bytes live, and what the providers' media rules need.
    storage_key: Mapped[str | None]
    thumbnail_key: Mapped[str | None]
    mime_type: Mapped[str | None]
    width: Mapped[int | None]
    height: Mapped[int | None]
    duration_ms: Mapped[int | None]

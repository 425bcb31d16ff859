"""Posts (one row per channel per thread part), tags, comments, signatures, sets, errors and
publish attempts."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tidings.core.enums import ApprovedSubmitForOrder, CreationMethod, State
from tidings.core.orm import (
    Base,
    Json,
    JsonList,
    SoftDeleteMixin,
    TimestampMixin,
    cuid_pk,
    pg_enum,
    uuid_pk,
)

if TYPE_CHECKING:
    from tidings.channels.models import Integration


class Post(TimestampMixin, SoftDeleteMixin, Base):
    """One part of a thread on one channel. Parts of one submission share ``group``; a reply
    points at the previous part (``parent_post_id``) and is published ``delay`` minutes after it."""

    __tablename__ = "post"
    __table_args__ = (
        # The calendar: an organization's live posts in a date range, by date.
        Index(
            "ix_post_calendar",
            "organization_id",
            "publish_date",
            postgresql_where=text("deleted_at IS NULL"),
        ),
        # The reconciler and the engine: due QUEUE posts.
        Index(
            "ix_post_due",
            "publish_date",
            postgresql_where=text("state = 'QUEUE' AND deleted_at IS NULL"),
        ),
        # The engine's per-channel queue: a channel's next due post.
        Index(
            "ix_post_channel_due",
            "integration_id",
            "publish_date",
            postgresql_where=text("state = 'QUEUE' AND deleted_at IS NULL"),
        ),
        # The calendar's recurring posts (few among many): heads that still repeat.
        Index(
            "ix_post_recurring",
            "organization_id",
            "publish_date",
            postgresql_where=text(
                "interval_in_days IS NOT NULL AND parent_post_id IS NULL AND deleted_at IS NULL "
                "AND state IN ('QUEUE', 'DRAFT')"
            ),
        ),
    )

    id: Mapped[str] = cuid_pk()
    state: Mapped[State] = mapped_column(
        pg_enum(State, "state"), default=State.QUEUE, server_default=State.QUEUE.value, index=True
    )
    publish_date: Mapped[datetime] = mapped_column(index=True)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    integration_id: Mapped[str] = mapped_column(
        ForeignKey("integration.id", ondelete="CASCADE"), index=True
    )
    content: Mapped[str]
    group: Mapped[str] = mapped_column(index=True)
    title: Mapped[str | None]
    description: Mapped[str | None]
    parent_post_id: Mapped[str | None] = mapped_column(
        ForeignKey("post.id", ondelete="CASCADE"), index=True
    )
    release_id: Mapped[str | None]
    release_url: Mapped[str | None]
    settings: Mapped[Json | None]
    # Media of this part: [{"id": media id or null, "path": URL, "alt": ..., ...}].
    image: Mapped[JsonList | None]
    submitted_for_order_id: Mapped[str | None] = mapped_column(
        ForeignKey("orders.id", ondelete="SET NULL"), index=True
    )
    submitted_for_organization_id: Mapped[str | None] = mapped_column(
        ForeignKey("organization.id", ondelete="SET NULL"), index=True
    )
    approved_submit_for_order: Mapped[ApprovedSubmitForOrder] = mapped_column(
        pg_enum(ApprovedSubmitForOrder, "approved_submit_for_order"),
        default=ApprovedSubmitForOrder.NO,
        server_default=ApprovedSubmitForOrder.NO.value,
    )
    last_message_id: Mapped[str | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), index=True
    )
    interval_in_days: Mapped[int | None]
    error: Mapped[str | None]
    # Not in the spec, relied on by Postiz users: minutes after the previous part, and origin.
    delay: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    creation_method: Mapped[CreationMethod] = mapped_column(
        pg_enum(CreationMethod, "creation_method"),
        default=CreationMethod.UI,
        server_default=CreationMethod.UI.value,
    )
    # Not in the spec, for recurring posts: the IANA zone of the author's wall-clock time and the
    # first occurrence; every next occurrence is anchored to them (DST-correct, no drift).
    timezone: Mapped[str | None]
    recurring_anchor: Mapped[datetime | None]

    integration: Mapped[Integration] = relationship(lazy="raise")
    tags: Mapped[list[Tags]] = relationship(secondary="tags_posts", lazy="raise")


class Tags(TimestampMixin, SoftDeleteMixin, Base):
    """A label with a color; one live tag per name in an organization."""

    __tablename__ = "tags"
    __table_args__ = (
        Index(
            "uq_tags_org_id_name_live",
            "org_id",
            "name",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[str] = uuid_pk()
    name: Mapped[str]
    color: Mapped[str]
    org_id: Mapped[str] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )


class TagsPosts(Base):
    """Which tags a post carries."""

    __tablename__ = "tags_posts"

    post_id: Mapped[str] = mapped_column(
        ForeignKey("post.id", ondelete="CASCADE"), primary_key=True
    )
    tag_id: Mapped[str] = mapped_column(
        ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=func.now(), server_default=func.now())


class Comments(TimestampMixin, SoftDeleteMixin, Base):
    """A team member's comment on a post."""

    __tablename__ = "comments"

    id: Mapped[str] = uuid_pk()
    content: Mapped[str]
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    post_id: Mapped[str] = mapped_column(ForeignKey("post.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)


class Signatures(TimestampMixin, SoftDeleteMixin, Base):
    """Text appended to posts; at most one live signature per organization is added
    automatically."""

    __tablename__ = "signatures"
    __table_args__ = (
        Index(
            "uq_signatures_auto_add",
            "organization_id",
            unique=True,
            postgresql_where=text("auto_add AND deleted_at IS NULL"),
        ),
    )

    id: Mapped[str] = uuid_pk()
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    content: Mapped[str]
    auto_add: Mapped[bool] = mapped_column(default=False, server_default=false())


class Sets(TimestampMixin, SoftDeleteMixin, Base):
    """A named posting schedule: times by weekday (``[{"day": 1, "time": "09:00"}]``,
    day 0 = Sunday as in JavaScript) in an IANA timezone."""

    __tablename__ = "sets"

    id: Mapped[str] = uuid_pk()
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str]
    times: Mapped[JsonList]
    timezone: Mapped[str]


class Errors(TimestampMixin, Base):
    """A failure worth showing: a post that could not be published, a channel that broke."""

    __tablename__ = "errors"

    id: Mapped[str] = uuid_pk()
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    post_id: Mapped[str | None] = mapped_column(
        ForeignKey("post.id", ondelete="SET NULL"), index=True
    )
    integration_id: Mapped[str | None] = mapped_column(
        ForeignKey("integration.id", ondelete="SET NULL"), index=True
    )
    error: Mapped[str]
    stack_trace: Mapped[str | None]
    context: Mapped[Json | None]
    resolved: Mapped[bool] = mapped_column(default=False, server_default=false())


class PostAttempt(Base):
    """One try at publishing one post: the engine's audit trail (not in the spec)."""

    __tablename__ = "post_attempt"
    __table_args__ = (
        UniqueConstraint("post_id", "attempt"),
        # The engine's per-channel lease: at most one attempt in flight per channel.
        Index(
            "ix_post_attempt_in_flight",
            "integration_id",
            unique=True,
            postgresql_where=text("outcome IS NULL"),
        ),
    )

    id: Mapped[str] = uuid_pk()
    post_id: Mapped[str] = mapped_column(ForeignKey("post.id", ondelete="CASCADE"), index=True)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int]
    started_at: Mapped[datetime] = mapped_column(default=func.now(), server_default=func.now())
    finished_at: Mapped[datetime | None]
    # "published", "retry", "refresh", "error", "unknown", "skipped"; null while in flight.
    outcome: Mapped[str | None]
    status_code: Mapped[int | None]
    response_excerpt: Mapped[str | None]
    error_class: Mapped[str | None]
    worker: Mapped[str | None]
    duration_ms: Mapped[int | None] = mapped_column(BigInteger)
    # The channel published to (the per-channel lease) and, after a transient failure, the
    # earliest time of the next try.
    integration_id: Mapped[str | None] = mapped_column(
        ForeignKey("integration.id", ondelete="CASCADE")
    )
    retry_at: Mapped[datetime | None]

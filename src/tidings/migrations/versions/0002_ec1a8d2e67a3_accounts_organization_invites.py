"""accounts: organization invites

Revision ID: ec1a8d2e67a3
Revises: 0001
Create Date: 2026-11-25 10:51:41.196655
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "ec1a8d2e67a3"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "organization_invite",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("organization_id", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column(
            "role",
            postgresql.ENUM("SUPERADMIN", "ADMIN", "USER", name="role", create_type=False),
            nullable=False,
        ),
        sa.Column("invited_by_id", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accepted_by_id", sa.Text(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["accepted_by_id"],
            ["users.id"],
            name=op.f("fk_organization_invite_accepted_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["invited_by_id"],
            ["users.id"],
            name=op.f("fk_organization_invite_invited_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_organization_invite_organization_id_organization"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organization_invite")),
    )
    op.create_index(
        op.f("ix_organization_invite_accepted_by_id"),
        "organization_invite",
        ["accepted_by_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_organization_invite_email"), "organization_invite", ["email"], unique=False
    )
    op.create_index(
        op.f("ix_organization_invite_invited_by_id"),
        "organization_invite",
        ["invited_by_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_organization_invite_organization_id"),
        "organization_invite",
        ["organization_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_organization_invite_organization_id"), table_name="organization_invite")
    op.drop_index(op.f("ix_organization_invite_invited_by_id"), table_name="organization_invite")
    op.drop_index(op.f("ix_organization_invite_email"), table_name="organization_invite")
    op.drop_index(op.f("ix_organization_invite_accepted_by_id"), table_name="organization_invite")
    op.drop_table("organization_invite")

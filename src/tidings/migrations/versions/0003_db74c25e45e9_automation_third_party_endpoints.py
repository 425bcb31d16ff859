"""automation: the endpoint a connector owns (webhooks.third_party_id), auto_post.primed

Revision ID: db74c25e45e9
Revises: ec1a8d2e67a3
Create Date: 2026-11-25 10:53:43.710309
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "db74c25e45e9"
down_revision: str | Sequence[str] | None = "ec1a8d2e67a3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "auto_post",
        sa.Column("primed", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column("webhooks", sa.Column("third_party_id", sa.Text(), nullable=True))
    op.create_unique_constraint(op.f("uq_webhooks_third_party_id"), "webhooks", ["third_party_id"])
    op.create_foreign_key(
        op.f("fk_webhooks_third_party_id_third_party"),
        "webhooks",
        "third_party",
        ["third_party_id"],
        ["id"],
        ondelete="CASCADE",
    )


def downgrade() -> None:
    op.drop_column("auto_post", "primed")
    op.drop_constraint(
        op.f("fk_webhooks_third_party_id_third_party"), "webhooks", type_="foreignkey"
    )
    op.drop_constraint(op.f("uq_webhooks_third_party_id"), "webhooks", type_="unique")
    op.drop_column("webhooks", "third_party_id")

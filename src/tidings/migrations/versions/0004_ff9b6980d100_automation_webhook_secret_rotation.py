"""automation: webhook secret rotation (the previous secret keeps signing for a while)

Revision ID: ff9b6980d100
Revises: db74c25e45e9
Create Date: 2026-11-25 11:51:08.065354
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "ff9b6980d100"
down_revision: str | Sequence[str] | None = "db74c25e45e9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("webhooks", sa.Column("previous_secret", sa.Text(), nullable=True))
    op.add_column(
        "webhooks", sa.Column("previous_secret_until", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("webhooks", "previous_secret_until")
    op.drop_column("webhooks", "previous_secret")

"""retry times for deliveries, last lesson time for subscribers

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 14:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import drip.db

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.add_column(
            sa.Column("retry_at", drip.db.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("subscribers") as batch_op:
        batch_op.add_column(
            sa.Column("last_sent_at", drip.db.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("subscribers") as batch_op:
        batch_op.drop_column("last_sent_at")
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_column("retry_at")

"""attempts at handling a received signup, and no more queueing once a worker gave up

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import drip.db

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("received_signups") as batch_op:
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch_op.alter_column(
            "queued_at", existing_type=drip.db.UTCDateTime(timezone=True), nullable=True
        )


def downgrade() -> None:
    # A signup a worker gave up on is queued again: the older schema has no other state.
    op.execute("UPDATE received_signups SET queued_at = received_at WHERE queued_at IS NULL")
    with op.batch_alter_table("received_signups") as batch_op:
        batch_op.alter_column(
            "queued_at", existing_type=drip.db.UTCDateTime(timezone=True), nullable=False
        )
        batch_op.drop_column("attempts")

"""dashboard numbers counted by a worker, for lists too big to count on every page view

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import drip.db

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stats_snapshots",
        sa.Column(
            "sequence_id",
            sa.Integer(),
            sa.ForeignKey("sequences.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("requested_at", drip.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("computed_at", drip.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("took_ms", sa.Integer(), nullable=True),
        sa.Column("body", sa.JSON(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("stats_snapshots")

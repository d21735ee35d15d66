"""holds on new lessons when complaints run high, and deliveries by send time

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import drip.db

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sending_holds",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("created_at", drip.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("resumed_at", drip.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("resumed_by", sa.String(length=254), nullable=True),
    )
    op.create_index("ix_deliveries_sent_at", "deliveries", ["sent_at"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_sent_at", "deliveries")
    op.drop_table("sending_holds")

"""signups received by the web, held until a worker handles them

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import drip.db

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "received_signups",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("email_entered", sa.Text(), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("sequence", sa.String(length=64), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=False),
        sa.Column("user_agent", sa.String(length=400), nullable=False),
        sa.Column("page", sa.String(length=500), nullable=False),
        sa.Column("referrer", sa.String(length=500), nullable=False),
        sa.Column("embed_origin", sa.String(length=200), nullable=False),
        sa.Column("form_id", sa.String(length=32), nullable=False),
        sa.Column("consent_text", sa.Text(), nullable=False),
        sa.Column("privacy_policy", sa.String(length=64), nullable=False),
        sa.Column("received_at", drip.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("queued_at", drip.db.UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_received_signups_email", "received_signups", ["email"])
    op.create_index("ix_received_signups_queued_at", "received_signups", ["queued_at"])


def downgrade() -> None:
    op.drop_table("received_signups")

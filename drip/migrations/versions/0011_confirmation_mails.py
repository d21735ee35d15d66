"""confirmation emails per address, for the list-bombing limits

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 23:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import drip.db

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "confirmation_mails",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email_hash", sa.String(length=64), nullable=False),
        sa.Column("queued_at", drip.db.UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_confirmation_mails_email_hash", "confirmation_mails", ["email_hash", "queued_at"]
    )
    op.create_index("ix_confirmation_mails_queued_at", "confirmation_mails", ["queued_at"])


def downgrade() -> None:
    op.drop_table("confirmation_mails")

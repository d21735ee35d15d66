"""recipient domains paused after they throttled us

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 17:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import drip.db

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "domain_pauses",
        sa.Column("domain", sa.String(length=255), primary_key=True),
        sa.Column("until", drip.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("domain_pauses")

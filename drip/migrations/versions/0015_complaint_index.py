"""an index of complained-about deliveries, so the complaint guard reads few rows

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 07:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_deliveries_complaints",
        "deliveries",
        ["sent_at"],
        postgresql_where=sa.text("bounce = 'complaint'"),
        sqlite_where=sa.text("bounce = 'complaint'"),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_complaints", "deliveries")

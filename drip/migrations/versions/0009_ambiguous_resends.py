"""how often each delivery was sent again after an unknown outcome

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25 17:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.add_column(
            sa.Column("ambiguous_resends", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_index(
        "ix_deliveries_ambiguous",
        "deliveries",
        ["ambiguous_resends"],
        postgresql_where=sa.text("ambiguous_resends > 0"),
        sqlite_where=sa.text("ambiguous_resends > 0"),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_ambiguous", "deliveries")
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_column("ambiguous_resends")

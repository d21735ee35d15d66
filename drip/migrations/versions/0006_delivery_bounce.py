"""what the recipient's side reported about a sent delivery (soft/hard bounce, complaint);
an index to find a delivery by the Message-ID a bounce or webhook quotes

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 16:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.add_column(sa.Column("bounce", sa.String(length=16), nullable=True))
    op.create_index("ix_deliveries_message_id", "deliveries", ["message_id"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_message_id", "deliveries")
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_column("bounce")

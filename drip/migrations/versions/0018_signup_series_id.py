"""a received signup names its series by id, which no rename can hand to another

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30 12:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("received_signups") as batch_op:
        batch_op.add_column(sa.Column("sequence_id", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE received_signups SET sequence_id = "
        "(SELECT id FROM sequences WHERE sequences.slug = received_signups.sequence)"
    )
    # A signup whose series is gone would be dropped by the worker anyway.
    op.execute("DELETE FROM received_signups WHERE sequence_id IS NULL")
    with op.batch_alter_table("received_signups") as batch_op:
        batch_op.alter_column("sequence_id", existing_type=sa.Integer(), nullable=False)
        batch_op.create_foreign_key(
            "fk_received_signups_sequence_id_sequences",
            "sequences",
            ["sequence_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.drop_column("sequence")


def downgrade() -> None:
    with op.batch_alter_table("received_signups") as batch_op:
        batch_op.add_column(sa.Column("sequence", sa.String(length=64), nullable=True))
    op.execute(
        "UPDATE received_signups SET sequence = "
        "(SELECT slug FROM sequences WHERE sequences.id = received_signups.sequence_id)"
    )
    with op.batch_alter_table("received_signups") as batch_op:
        batch_op.alter_column("sequence", existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_constraint("fk_received_signups_sequence_id_sequences", type_="foreignkey")
        batch_op.drop_column("sequence_id")

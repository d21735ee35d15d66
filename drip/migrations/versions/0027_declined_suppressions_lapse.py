"""a declined signup's suppression goes once its quiet period is over

Someone who declined a signup from its confirmation email left a hash that kept new
confirmations from them for 30 days, and then stayed for good, still refusing imports
of the address and outliving its purpose. The scheduler now deletes it after those 30
days (drip.privacy.end_quiet_periods): an index finds them, and a flag says whether an
erasure of the address also stands behind the hash, which then stays as the erasure's.

Every erasure's hash is flagged. A declined one from before this upgrade is not: an
erasure that came before or after the decline left no trace of its own, so such a hash
is deleted when its quiet period ends. The downgrade drops both.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-04 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("suppressions") as batch_op:
        batch_op.add_column(
            sa.Column("erased", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.create_index(
            "ix_suppressions_reason_created_at", ["reason", "created_at"], unique=False
        )
    op.execute("UPDATE suppressions SET erased = true WHERE reason = 'erased'")


def downgrade() -> None:
    with op.batch_alter_table("suppressions") as batch_op:
        batch_op.drop_index("ix_suppressions_reason_created_at")
        batch_op.drop_column("erased")

"""landing copy, consent versions, suppressions, privacy emails

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 14:13:30.724416
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import drip.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email_hash", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("created_at", drip.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
        sa.UniqueConstraint("email_hash", name=op.f("uq_suppressions_email_hash")),
    )
    with op.batch_alter_table("consent_records") as batch_op:
        batch_op.add_column(
            sa.Column("consent_version", sa.String(length=64), nullable=False, server_default="")
        )
    with op.batch_alter_table("sequences") as batch_op:
        batch_op.add_column(
            sa.Column("tagline", sa.String(length=300), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("description", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("bonuses", sa.JSON(), nullable=False, server_default="[]"))
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_constraint(op.f("ck_deliveries_delivery_kind"), type_="check")
        batch_op.create_check_constraint(
            "delivery_kind", "kind IN ('confirmation', 'step', 'privacy')"
        )


def downgrade() -> None:
    op.execute("DELETE FROM deliveries WHERE kind = 'privacy'")
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_constraint(op.f("ck_deliveries_delivery_kind"), type_="check")
        batch_op.create_check_constraint("delivery_kind", "kind IN ('confirmation', 'step')")
    with op.batch_alter_table("sequences") as batch_op:
        batch_op.drop_column("bonuses")
        batch_op.drop_column("description")
        batch_op.drop_column("tagline")
    with op.batch_alter_table("consent_records") as batch_op:
        batch_op.drop_column("consent_version")
    op.drop_table("suppressions")

"""admins

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 14:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import drip.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "admins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", drip.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", drip.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admins")),
        sa.UniqueConstraint("email", name=op.f("uq_admins_email")),
    )


def downgrade() -> None:
    op.drop_table("admins")

"""indexes for the admin's filters, keyset pages and dashboard counts

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 15:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_subscribers_list", "subscribers", ["sequence_id", "id"])
    op.create_index("ix_subscribers_by_status", "subscribers", ["sequence_id", "status", "id"])
    op.create_index("ix_subscribers_by_step", "subscribers", ["sequence_id", "next_step", "id"])
    op.create_index("ix_subscribers_created", "subscribers", ["sequence_id", "created_at"])
    op.create_index("ix_subscribers_confirmed", "subscribers", ["sequence_id", "confirmed_at"])
    op.create_index("ix_deliveries_step_status", "deliveries", ["step_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_step_status", "deliveries")
    op.drop_index("ix_subscribers_confirmed", "subscribers")
    op.drop_index("ix_subscribers_created", "subscribers")
    op.drop_index("ix_subscribers_by_step", "subscribers")
    op.drop_index("ix_subscribers_by_status", "subscribers")
    op.drop_index("ix_subscribers_list", "subscribers")

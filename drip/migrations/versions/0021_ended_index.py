"""an index of when subscriptions ended, so each scheduler pass finds those to erase

Every pass looks for subscriptions that ended longer ago than DRIP_RETENTION_DAYS
(drip.privacy.erase_ended). Without an index that is a read of the whole list every
30 seconds, most of it ended subscriptions still inside the period; with it, a pass
with nothing to erase reads nothing.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-01 09:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_subscribers_ended", "subscribers", ["ended_at"])


def downgrade() -> None:
    op.drop_index("ix_subscribers_ended", "subscribers")

"""when each complaint arrived, so a complaint counts on the day drip learns of it

The complaint guard (DEL-01) counted the complaints about the emails sent since midnight
UTC. A complaint that came in after midnight about the day before's email counted on no
day at all: it had missed its own day and never entered the next. Readers complain
hours after the email arrives, so a list sending at 08:00 in the Americas (11:00 to
16:00 UTC) lost many of its complaints that way. The guard now counts the complaints that
arrived since midnight, which needs the time each one arrived.

Existing complaints get the time their email was sent (its queue time, if it has no
send time): the best guess left, and one that counts none of them twice.

The index of complaints (0015, on sent_at where bounce = 'complaint') is replaced by one
on complained_at holding only the rows that have one, so counting the day's complaints
still reads the few complaint rows and none of the rest; nothing else used the old one.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-01 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import drip.db

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "deliveries",
        sa.Column("complained_at", drip.db.UTCDateTime(timezone=True), nullable=True),
    )
    op.execute(
        "UPDATE deliveries SET complained_at = COALESCE(sent_at, queued_at) "
        "WHERE bounce = 'complaint'"
    )
    op.drop_index("ix_deliveries_complaints", "deliveries")
    op.create_index(
        "ix_deliveries_complained_at",
        "deliveries",
        ["complained_at"],
        postgresql_where=sa.text("complained_at IS NOT NULL"),
        sqlite_where=sa.text("complained_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_complained_at", "deliveries")
    op.drop_column("deliveries", "complained_at")
    op.create_index(
        "ix_deliveries_complaints",
        "deliveries",
        ["sent_at"],
        postgresql_where=sa.text("bounce = 'complaint'"),
        sqlite_where=sa.text("bounce = 'complaint'"),
    )

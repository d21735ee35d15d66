"""purged signup counts; indexes of bounced emails and of consent events by kind

The purge deletes signups nobody confirmed within DRIP_PENDING_DAYS (drip.privacy). The
dashboard counted signups, and the share confirmed, from the rows still on file, so
each purge made a past day's signups drop and the confirmation rate rise. The purge now
adds what it deletes to a count per series and day, with nothing in it about anyone.
Signups purged before the upgrade are gone and are not counted.

The dashboard now counts each email's bounces and spam complaints. An index holding only
the emails that have one lets it read those few instead of every email sent.

Signups and confirmations are now counted from the consent log, where a past reader who
signed up and confirmed again has a second signup and confirmation; the row keeps only
the latest. An index of the log by kind and time (with the subscriber, to join on)
counts them, and the last 30 days of them, without reading the events' rows.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-04 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "purged_signups",
        sa.Column("sequence_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("signups", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["sequence_id"],
            ["sequences.id"],
            name=op.f("fk_purged_signups_sequence_id_sequences"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sequence_id", "day", name=op.f("pk_purged_signups")),
    )
    op.create_index(
        "ix_deliveries_bounced",
        "deliveries",
        ["step_id", "bounce"],
        postgresql_where=sa.text("bounce IS NOT NULL"),
        sqlite_where=sa.text("bounce IS NOT NULL"),
    )
    op.create_index(
        "ix_consent_events_counted", "consent_events", ["kind", "occurred_at", "subscriber_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_consent_events_counted", "consent_events")
    op.drop_index("ix_deliveries_bounced", "deliveries")
    op.drop_table("purged_signups")

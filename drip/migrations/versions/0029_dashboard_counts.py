"""counts of deleted signups and confirmations; indexes of bounced emails, consent by kind

The purge deletes signups nobody confirmed within DRIP_PENDING_DAYS, and the retention
sweep erases subscriptions that ended more than DRIP_RETENTION_DAYS ago with their
signups and confirmations (drip.privacy). The dashboard counted signups, and the share
confirmed, from the rows still on file, so each purge made a past day's signups drop
and the confirmation rate rise, and the sweep made both sink as the years went by.
Both now add what they delete to a count per series, day and reason, with nothing in
it about anyone (drip.retired). What was deleted before the upgrade is gone and is not
counted.

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


REASON = sa.Enum(
    "purged",
    "expired",
    name="retired_reason",
    native_enum=False,
    create_constraint=True,
    length=16,
)


def upgrade() -> None:
    op.create_table(
        "retired_counts",
        sa.Column("sequence_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("reason", REASON, nullable=False),
        sa.Column("signups", sa.Integer(), nullable=False),
        sa.Column("confirmations", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["sequence_id"],
            ["sequences.id"],
            name=op.f("fk_retired_counts_sequence_id_sequences"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sequence_id", "day", "reason", name=op.f("pk_retired_counts")),
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
    op.drop_table("retired_counts")

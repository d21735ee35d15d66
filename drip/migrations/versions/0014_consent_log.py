"""consent evidence as an append-only log: consent_events and consent_texts (CON-01)

One mutable consent_records row per signup becomes a signup event (same id, so a
confirmation link already in someone's inbox still names it), a confirm event when it
was confirmed (with the confirmation email's Message-ID and send time, taken from its
delivery), and a withdraw event for a subscription that has ended (`hard_bounce` for a
bounced one; for an unsubscribe drip never recorded how, so `method` stays NULL). Each
distinct notice becomes a consent_texts version, in the order it was first shown.

Triggers then refuse every UPDATE of either table, and every DELETE unless an
`erasure_marks` row exists (drip.consent.erasing). The downgrade folds signups and
confirmations back into consent_records; withdrawals, the texts' versions and the new
fields have nowhere to go there and are lost.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 12:00:00
"""

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import drip.db

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GUARDED = ("consent_events", "consent_texts")

SQLITE_TRIGGERS = [
    statement
    for table in GUARDED
    for statement in (
        f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{table} is append-only (standards CON-01)'); END",
        f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
        "WHEN NOT EXISTS (SELECT 1 FROM erasure_marks) "
        f"BEGIN SELECT RAISE(ABORT, '{table} is deleted only by an erasure (LAW-14)'); END",
    )
]

POSTGRESQL_FUNCTION = """
CREATE FUNCTION consent_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM erasure_marks) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '% on % refused: consent evidence is append-only (standards CON-01)',
        TG_OP, TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END
$$
"""

POSTGRESQL_TRIGGERS = [
    statement
    for table in GUARDED
    for statement in (
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION consent_append_only()",
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION consent_append_only()",
    )
]

KIND = sa.Enum(
    "signup",
    "confirm",
    "withdraw",
    "resubscribe",
    name="consent_event_kind",
    native_enum=False,
    create_constraint=True,
    length=16,
)
METHOD = sa.Enum(
    "one_click_post",
    "link",
    "complaint",
    "hard_bounce",
    "admin",
    "erasure",
    name="consent_method",
    native_enum=False,
    create_constraint=True,
    length=16,
)


def upgrade() -> None:
    _create_tables()
    _move_records_into_events(op.get_bind())
    op.drop_index("ix_consent_records_subscriber_id", "consent_records")
    op.drop_table("consent_records")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRESQL_FUNCTION)
        for statement in POSTGRESQL_TRIGGERS:
            op.execute(statement)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table in GUARDED:
        names = ("append_only", "no_truncate") if postgresql else ("no_update", "no_delete")
        for name in names:
            op.execute(f"DROP TRIGGER {table}_{name}" + (f" ON {table}" if postgresql else ""))
    if postgresql:
        op.execute("DROP FUNCTION consent_append_only()")
    _create_records()
    op.execute(
        """
        INSERT INTO consent_records (id, subscriber_id, created_at, ip, user_agent, page,
            consent_text, consent_version, confirmed_at, confirm_ip, confirm_user_agent)
        SELECT s.id, s.subscriber_id, s.occurred_at, COALESCE(s.ip, ''),
            COALESCE(s.user_agent, ''), COALESCE(s.page_url, ''), t.body,
            'sha256:' || substr(t.sha256, 1, 16), c.occurred_at, c.ip, c.user_agent
        FROM consent_events s
        JOIN consent_texts t ON t.id = s.consent_text_id
        LEFT JOIN consent_events c ON c.id = (
            SELECT min(id) FROM consent_events
            WHERE signup_id = s.id AND kind = 'confirm')
        WHERE s.kind = 'signup'
        """
    )
    _continue_ids_after_copy("consent_records")
    op.drop_table("consent_events")
    op.drop_table("consent_texts")
    op.drop_table("erasure_marks")


def _create_tables() -> None:
    op.create_table(
        "consent_texts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("privacy_policy_version", sa.String(length=64), nullable=False),
        sa.Column("created_at", drip.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_consent_texts"),
        sa.UniqueConstraint("version", name="uq_consent_texts_version"),
        sa.UniqueConstraint("sha256", "privacy_policy_version", name="uq_consent_texts_wording"),
    )
    op.create_table(
        "consent_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("kind", KIND, nullable=False),
        sa.Column("signup_id", sa.Integer(), nullable=True),
        sa.Column("occurred_at", drip.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("consent_text_id", sa.Integer(), nullable=True),
        sa.Column("email_entered", sa.String(length=320), nullable=True),
        sa.Column("email_normalised", sa.String(length=254), nullable=True),
        sa.Column("form_id", sa.String(length=32), nullable=True),
        sa.Column("page_url", sa.String(length=500), nullable=True),
        sa.Column("referrer", sa.String(length=500), nullable=True),
        sa.Column("embed_origin", sa.String(length=200), nullable=True),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.String(length=400), nullable=True),
        sa.Column("purposes", sa.String(length=200), nullable=True),
        sa.Column("confirmation_message_id", sa.String(length=255), nullable=True),
        sa.Column("confirmation_sent_at", drip.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("method", METHOD, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_consent_events"),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_consent_events_subscriber_id_subscribers",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["signup_id"],
            ["consent_events.id"],
            name="fk_consent_events_signup_id_consent_events",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["consent_text_id"],
            ["consent_texts.id"],
            name="fk_consent_events_consent_text_id_consent_texts",
        ),
    )
    op.create_index("ix_consent_events_subscriber_id", "consent_events", ["subscriber_id"])
    op.create_index("ix_consent_events_consent_text_id", "consent_events", ["consent_text_id"])
    op.create_table(
        "erasure_marks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_erasure_marks"),
    )


def _move_records_into_events(conn: sa.Connection) -> None:
    texts = sa.table(
        "consent_texts",
        sa.column("version", sa.Integer()),
        sa.column("body", sa.Text()),
        sa.column("sha256", sa.String()),
        sa.column("privacy_policy_version", sa.String()),
        sa.column("created_at", drip.db.UTCDateTime(timezone=True)),
    )
    shown = conn.execute(
        sa.text(
            "SELECT consent_text, min(created_at) AS first_shown FROM consent_records "
            "GROUP BY consent_text ORDER BY min(id)"
        ).columns(first_shown=drip.db.UTCDateTime(timezone=True))
    ).all()
    for version, (body, first_shown) in enumerate(shown, start=1):
        conn.execute(
            texts.insert().values(
                version=version,
                body=body,
                sha256=hashlib.sha256(body.encode()).hexdigest(),
                privacy_policy_version="",
                created_at=first_shown,
            )
        )
    conn.execute(
        sa.text(
            """
            INSERT INTO consent_events (id, subscriber_id, kind, occurred_at, consent_text_id,
                email_normalised, page_url, ip, user_agent, purposes)
            SELECT r.id, r.subscriber_id, 'signup', r.created_at, t.id, s.email, r.page, r.ip,
                r.user_agent, 'series:' || q.slug
            FROM consent_records r
            JOIN consent_texts t ON t.body = r.consent_text
            JOIN subscribers s ON s.id = r.subscriber_id
            JOIN sequences q ON q.id = s.sequence_id
            """
        )
    )
    _continue_ids_after_copy("consent_events")
    conn.execute(
        sa.text(
            """
            INSERT INTO consent_events (subscriber_id, kind, signup_id, occurred_at,
                consent_text_id, ip, user_agent, confirmation_message_id, confirmation_sent_at)
            SELECT e.subscriber_id, 'confirm', e.id, r.confirmed_at, e.consent_text_id,
                r.confirm_ip, r.confirm_user_agent, d.message_id, d.sent_at
            FROM consent_records r
            JOIN consent_events e ON e.id = r.id
            LEFT JOIN deliveries d ON d.id = (
                SELECT max(c.id) FROM deliveries c
                WHERE c.subscriber_id = r.subscriber_id AND c.kind = 'confirmation'
                    AND c.created_at >= r.created_at AND c.sent_at <= r.confirmed_at)
            WHERE r.confirmed_at IS NOT NULL
            ORDER BY r.confirmed_at, r.id
            """
        )
    )
    conn.execute(
        sa.text(
            """
            INSERT INTO consent_events (subscriber_id, kind, signup_id, occurred_at,
                consent_text_id, method)
            SELECT s.id, 'withdraw', e.id, s.ended_at, e.consent_text_id,
                CASE WHEN s.status = 'bounced' THEN 'hard_bounce' END
            FROM subscribers s
            JOIN consent_events e ON e.id = (
                SELECT max(id) FROM consent_events
                WHERE subscriber_id = s.id AND kind = 'signup')
            WHERE s.status IN ('unsubscribed', 'bounced') AND s.ended_at IS NOT NULL
            ORDER BY s.ended_at, s.id
            """
        )
    )


def _continue_ids_after_copy(table: str) -> None:
    """Rows copied with their ids leave PostgreSQL's id sequence behind; SQLite takes
    the next id from the largest one anyway."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"coalesce(max(id), 0) + 1, false) FROM {table}"
        )


def _create_records() -> None:
    op.create_table(
        "consent_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("created_at", drip.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=False),
        sa.Column("user_agent", sa.String(length=400), nullable=False),
        sa.Column("page", sa.String(length=500), nullable=False),
        sa.Column("consent_text", sa.Text(), nullable=False),
        sa.Column("confirmed_at", drip.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("confirm_ip", sa.String(length=45), nullable=True),
        sa.Column("confirm_user_agent", sa.String(length=400), nullable=True),
        sa.Column("consent_version", sa.String(length=64), nullable=False, server_default=""),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_consent_records_subscriber_id_subscribers",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_consent_records"),
    )
    op.create_index("ix_consent_records_subscriber_id", "consent_records", ["subscriber_id"])

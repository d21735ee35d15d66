"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from drip import schema
from drip.db import create_db_engine
from drip.models import Base, Delivery, Subscriber

MIGRATION_ONLY_INDEXES = {"ix_subscribers_name"}
MIGRATION_ONLY_TABLES = {"subscriber_search"}
"""Name search: on SQLite an index on lower(first_name) (migration 0012), on PostgreSQL a
table with trigram indexes, kept by a trigger (0019); the models cannot spell either
for both databases."""


def _described_by_the_models(obj: object, name: str | None, kind: str, *_: object) -> bool:
    return not (
        (kind == "index" and name in MIGRATION_ONLY_INDEXES)
        or (kind == "table" and name in MIGRATION_ONLY_TABLES)
    )


@pytest.mark.filterwarnings(
    "ignore:Skipped unsupported reflection of expression-based index ix_subscribers_name"
)
def test_migrations_match_the_models_and_upgrade_is_repeatable(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        schema.upgrade(engine)
        schema.upgrade(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"include_object": _described_by_the_models}
            )
            diff = compare_metadata(context, Base.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_the_migrations_downgrade_cleanly(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        schema.upgrade(engine)
        schema.migrate(engine, "downgrade", "base")
        with engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() is None
    finally:
        engine.dispose()


ORPHAN_DELIVERY = (
    "INSERT INTO deliveries (id, subscriber_id, kind, status, attempts, created_at, queued_at) "
    "VALUES (1, 1, 'confirmation', 'sent', 1, '2026-01-01 10:00:00', '2026-01-01 10:00:00')"
)
"""A delivery to subscriber 1, who does not exist."""


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)
def test_migrating_sqlite_with_a_row_naming_a_missing_one_changes_nothing(
    database_url: str,
) -> None:
    """Foreign keys are off while SQLite migrates (drip.schema.migrate), so the check
    they would have made comes before the commit, and refuses the whole upgrade."""
    engine = create_db_engine(database_url)
    try:
        schema.migrate(engine, "upgrade", "0018")
        with closing(sqlite3.connect(make_url(database_url).database or "")) as unchecked:
            unchecked.execute(ORPHAN_DELIVERY)
            unchecked.commit()
        with pytest.raises(RuntimeError, match="deliveries"):
            schema.migrate(engine, "upgrade", "head")
        assert schema.revisions(engine)[0] == {"0018"}
        with engine.connect() as conn:
            assert _never_reusing_ids(conn) == set(), "0020's rebuilds were rolled back too"
    finally:
        engine.dispose()


def test_the_revisions_named_by_the_migration_files_are_alembics() -> None:
    script = ScriptDirectory(str(schema.VERSIONS.parent))
    chain = [(r.revision, r.down_revision) for r in script.walk_revisions()]
    known, newest = schema.code_revisions()
    assert {revision for revision, _ in chain} == known
    assert set(script.get_heads()) == newest
    assert all(
        down is None or int(down) == int(revision) - 1
        for revision, down in chain  # type: ignore[arg-type]
    ), "each migration revises the one numbered before it"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_database_at_an_older_revision_is_behind_and_one_at_a_newer_is_not(
    database_url: str,
) -> None:
    engine = create_db_engine(database_url)
    try:
        assert schema.is_behind(engine), "no tables yet"
        schema.upgrade(engine)
        assert not schema.is_behind(engine)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '0010'"))
        assert schema.is_behind(engine)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
        assert not schema.is_behind(engine), "written by newer code during a rolling deploy"
    finally:
        engine.dispose()


def test_the_app_factory_is_importable_from_the_package() -> None:
    import drip

    assert callable(drip.create_app)


RECORDS = [
    # id, subscriber, created_at, ip, user agent, page, text, version, confirmed, its ip and UA
    (3, 1, "2026-01-01 10:00:00", "10.0.0.1", "ua-1", "https://a.example/", "Old notice",
     "sha256:old", None, None, None),
    (5, 1, "2026-01-02 10:00:00", "10.0.0.2", "ua-2", "https://a.example/", "New notice",
     "sha256:new", "2026-01-02 11:00:00", "10.0.0.3", "ua-3"),
    (7, 2, "2026-01-03 10:00:00", "10.0.0.4", "ua-4", "", "Old notice",
     "sha256:old", None, None, None),
]  # fmt: skip
RECORD_COLUMNS = (
    "id, subscriber_id, created_at, ip, user_agent, page, consent_text, consent_version, "
    "confirmed_at, confirm_ip, confirm_user_agent"
)


def _seed_revision_0013(conn: sa.Connection) -> None:
    """A series, ana (signed up twice, confirmed the second time, after her confirmation
    email went out) and bob (never confirmed, his address bounced)."""
    statements = [
        "INSERT INTO sequences (id, slug, name, tagline, description, bonuses, created_at) "
        "VALUES (1, 's', 'S', '', '', '[]', '2026-01-01 00:00:00')",
        "INSERT INTO subscribers (id, sequence_id, email, first_name, timezone, send_hour, "
        "status, created_at, ended_at) VALUES "
        "(1, 1, 'ana@example.com', '', 'UTC', 8, 'active', '2026-01-01 10:00:00', NULL), "
        "(2, 1, 'bob@example.com', '', 'UTC', 8, 'bounced', '2026-01-03 10:00:00', "
        "'2026-01-04 10:00:00')",
        "INSERT INTO deliveries (id, subscriber_id, kind, status, attempts, message_id, "
        "created_at, queued_at, sent_at, due_at, ambiguous_resends) VALUES "
        "(1, 1, 'confirmation', 'sent', 1, '<c@d>', '2026-01-02 10:00:00', "
        "'2026-01-02 10:00:00', '2026-01-02 10:01:00', '2026-01-02 10:00:00', 0)",
    ]
    for statement in statements:
        conn.execute(sa.text(statement))
    for record in RECORDS:
        names = [f"p{n}" for n in range(len(record))]
        conn.execute(
            sa.text(
                f"INSERT INTO consent_records ({RECORD_COLUMNS}) VALUES (:{', :'.join(names)})"
            ),
            dict(zip(names, record, strict=True)),
        )


def test_migration_0014_moves_consent_records_into_the_log_and_back(database_url: str) -> None:
    """Each record becomes a signup with the same id (links in inboxes keep working), a
    confirm event if confirmed, with its confirmation email's Message-ID, and an ended
    subscription a withdrawal; each wording a version. Downgrading folds them back."""
    engine = create_db_engine(database_url)
    try:
        schema.migrate(engine, "upgrade", "0013")
        with engine.begin() as conn:
            _seed_revision_0013(conn)
        schema.migrate(engine, "upgrade", "head")
        with engine.begin() as conn:
            events = conn.execute(
                sa.text(
                    "SELECT e.id, e.subscriber_id, e.kind, e.signup_id, t.version, e.ip, "
                    "e.confirmation_message_id, e.method, e.purposes, e.email_normalised "
                    "FROM consent_events e JOIN consent_texts t ON t.id = e.consent_text_id "
                    "ORDER BY e.id"
                )
            ).all()
            texts = conn.execute(sa.text("SELECT version, body FROM consent_texts")).all()
            conn.execute(
                sa.text(
                    "INSERT INTO consent_events (subscriber_id, kind, occurred_at) "
                    "VALUES (2, 'signup', '2026-02-01 10:00:00')"
                )
            )
        assert sorted(texts) == [(1, "Old notice"), (2, "New notice")]
        assert [tuple(e) for e in events] == [
            (3, 1, "signup", None, 1, "10.0.0.1", None, None, "series:s", "ana@example.com"),
            (5, 1, "signup", None, 2, "10.0.0.2", None, None, "series:s", "ana@example.com"),
            (7, 2, "signup", None, 1, "10.0.0.4", None, None, "series:s", "bob@example.com"),
            (8, 1, "confirm", 5, 2, "10.0.0.3", "<c@d>", None, None, None),
            (9, 2, "withdraw", 7, 1, None, None, "hard_bounce", None, None),
        ]
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM consent_events WHERE id = 10"))
        schema.migrate(engine, "downgrade", "0013")
        with engine.begin() as conn:
            back = conn.execute(
                sa.text(f"SELECT {RECORD_COLUMNS} FROM consent_records WHERE id < 10 ORDER BY id")
            ).all()
        assert [(r[0], r[3], r[6], r[9], r[10]) for r in back] == [
            (r[0], r[3], r[6], r[9], r[10]) for r in RECORDS
        ]
    finally:
        engine.dispose()


SERIES_S = sa.text(
    "INSERT INTO sequences (id, slug, name, tagline, description, bonuses, created_at) "
    "VALUES (4, 's', 'S', '', '', '[]', '2026-01-01 00:00:00')"
)
"""A series, slug "s", for the data tests of migrations after 0014 to hang rows on."""


def test_migration_0018_names_each_received_signups_series_by_id_and_back(
    database_url: str,
) -> None:
    """Signups waiting at upgrade time keep their series, found by slug; one whose
    series is gone (the worker would drop it) goes."""
    engine = create_db_engine(database_url)
    received = (
        "INSERT INTO received_signups (id, email, email_entered, first_name, timezone, "
        "sequence, ip, user_agent, page, referrer, embed_origin, form_id, consent_text, "
        "privacy_policy, received_at, queued_at, attempts) VALUES "
        "(:id, 'a@example.com', 'a@example.com', '', 'UTC', :slug, '', '', '', '', '', "
        "'', 'notice', 'v1', '2026-01-01 10:00:00', '2026-01-01 10:00:00', 0)"
    )
    try:
        schema.migrate(engine, "upgrade", "0017")
        with engine.begin() as conn:
            conn.execute(SERIES_S)
            conn.execute(sa.text(received), [{"id": 1, "slug": "s"}, {"id": 2, "slug": "gone"}])
        schema.migrate(engine, "upgrade", "head")
        with engine.begin() as conn:
            rows = conn.execute(sa.text("SELECT id, sequence_id FROM received_signups")).all()
        assert [tuple(r) for r in rows] == [(1, 4)]
        schema.migrate(engine, "downgrade", "0017")
        with engine.begin() as conn:
            rows = conn.execute(sa.text("SELECT id, sequence FROM received_signups")).all()
        assert [tuple(r) for r in rows] == [(1, "s")]
    finally:
        engine.dispose()


def test_migration_0019_copies_postgresqls_subscribers_into_the_search_table_and_back(
    database_url: str,
) -> None:
    """Subscribers there at upgrade time are found by the new search table, later
    changes reach it through the trigger, and a downgrade puts the indexes back."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite's name search stays on subscribers")
    engine = create_db_engine(database_url)
    try:
        schema.migrate(engine, "upgrade", "0018")
        with engine.begin() as conn:
            conn.execute(SERIES_S)
            conn.execute(
                sa.text(
                    "INSERT INTO subscribers (id, sequence_id, email, first_name, timezone, "
                    "send_hour, status, created_at) VALUES (1, 4, 'ana@example.com', 'Ana', "
                    "'UTC', 8, 'active', '2026-01-01 10:00:00')"
                )
            )
        schema.migrate(engine, "upgrade", "head")
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE subscribers SET first_name = 'Anna' WHERE id = 1"))
            copied = conn.execute(sa.text("SELECT * FROM subscriber_search")).all()
        assert [tuple(r) for r in copied] == [(1, "ana@example.com", "Anna")]
        schema.migrate(engine, "downgrade", "0018")
        with engine.begin() as conn:
            indexes = conn.scalars(
                sa.text("SELECT indexname FROM pg_indexes WHERE tablename = 'subscribers'")
            ).all()
            assert conn.scalar(sa.text("SELECT to_regclass('subscriber_search')")) is None
        assert {"ix_subscribers_email_trgm", "ix_subscribers_name_trgm"} <= set(indexes)
    finally:
        engine.dispose()


IDS_NEVER_REUSED = {
    "admins",
    "steps",
    "template_versions",
    "subscribers",
    "consent_events",
    "deliveries",
    "received_signups",
}
"""The tables migration 0020 gives AUTOINCREMENT on SQLite: their ids leave the database."""

ROW_AT_0019 = {
    "admins": "INSERT INTO admins (id, email, password_hash, created_at) "
    "VALUES (:id, 'admin' || :n || '@example.com', 'x', '2026-01-01 00:00:00')",
    "steps": "INSERT INTO steps (id, sequence_id, number, day_offset) VALUES (:id, 4, :n, :n)",
    "template_versions": "INSERT INTO template_versions (id, step_id, subject, preheader, "
    "body_html, body_text, created_at, created_by) "
    "VALUES (:id, 1, '', '', '', '', '2026-01-01 00:00:00', '')",
    "subscribers": "INSERT INTO subscribers (id, sequence_id, email, first_name, timezone, "
    "send_hour, status, created_at) VALUES (:id, 4, 'p' || :n || '@example.com', '', 'UTC', "
    "8, 'active', '2026-01-01 00:00:00')",
    "consent_events": "INSERT INTO consent_events (id, subscriber_id, kind, occurred_at) "
    "VALUES (:id, 1, 'signup', '2026-01-01 00:00:00')",
    "deliveries": "INSERT INTO deliveries (id, subscriber_id, kind, status, attempts, "
    "created_at, queued_at) VALUES (:id, 1, 'confirmation', 'sent', 1, "
    "'2026-01-01 00:00:00', '2026-01-01 00:00:00')",
    "received_signups": "INSERT INTO received_signups (id, email, email_entered, first_name, "
    "timezone, sequence_id, ip, user_agent, page, referrer, embed_origin, form_id, "
    "consent_text, privacy_policy, received_at, queued_at) VALUES (:id, 'a@example.com', "
    "'a@example.com', '', 'UTC', 4, '', '', '', '', '', '', 'notice', 'v1', "
    "'2026-01-01 10:00:00', '2026-01-01 10:00:00')",
}
"""One row of each table 0020 rebuilds: an :id of None lets the database choose it."""


def _delete_row(conn: sa.Connection, table: str, row_id: int) -> None:
    """Delete one row; the consent log lets a DELETE through during an erasure only."""
    conn.execute(sa.text("INSERT INTO erasure_marks (id) VALUES (1)"))
    conn.execute(sa.text(f"DELETE FROM {table} WHERE id = :id"), {"id": row_id})
    conn.execute(sa.text("DELETE FROM erasure_marks"))


def _sqlite_schema(conn: sa.Connection) -> tuple[dict[str, str | None], dict[str, object]]:
    """What a table rebuild must keep: every index and trigger word for word, and each
    table's columns, foreign keys and constraints (its CREATE TABLE is written anew)."""
    inspector = sa.inspect(conn)
    extras = conn.execute(
        sa.text("SELECT name, sql FROM sqlite_master WHERE type IN ('index', 'trigger')")
    ).all()
    tables = {
        table: (
            conn.exec_driver_sql(f"PRAGMA table_xinfo({table})").all(),
            sorted(map(repr, inspector.get_foreign_keys(table))),
            sorted(map(repr, inspector.get_check_constraints(table))),
            sorted(
                (name, unique, origin, partial, _columns_of(conn, name))
                for _, name, unique, origin, partial in conn.exec_driver_sql(
                    f"PRAGMA index_list({table})"
                )
            ),
        )
        for table in inspector.get_table_names()
    }
    return dict(extras), tables  # type: ignore[arg-type]


def _columns_of(conn: sa.Connection, index: str) -> list[tuple[object, ...]]:
    return [tuple(row) for row in conn.exec_driver_sql(f"PRAGMA index_info({index})")]


def _never_reusing_ids(conn: sa.Connection) -> set[str]:
    tables = "SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE '%AUTOINCREMENT%'"
    return set(conn.scalars(sa.text(tables)))


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)
def test_migration_0020_keeps_sqlite_from_handing_out_an_id_twice_and_back(
    database_url: str,
) -> None:
    """After the upgrade a new row's id is above every id in the table when it ran, even
    once the row holding the largest is deleted; indexes (the partial and expression
    ones too), triggers, keys and constraints come through both ways. A row deleted
    before it is no row to rebuild: its id was free to go again anyway."""
    engine = create_db_engine(database_url)
    try:
        schema.migrate(engine, "upgrade", "0019")
        with engine.begin() as conn:
            conn.execute(SERIES_S)
            for table, insert in ROW_AT_0019.items():
                conn.execute(sa.text(insert), [{"id": n, "n": n} for n in (1, 2, 3)])
                _delete_row(conn, table, 2)
            before = _sqlite_schema(conn)
            assert _never_reusing_ids(conn) == set()
        schema.migrate(engine, "upgrade", "0020")
        with engine.begin() as conn:
            assert _sqlite_schema(conn) == before
            assert _never_reusing_ids(conn) == IDS_NEVER_REUSED
            assert dict(conn.execute(sa.text("SELECT name, seq FROM sqlite_sequence")).all()) == {
                table: 3 for table in IDS_NEVER_REUSED
            }
            for table, insert in ROW_AT_0019.items():
                assert conn.scalars(sa.text(f"SELECT id FROM {table}")).all() == [1, 3]
                _delete_row(conn, table, 3)
                conn.execute(sa.text(insert), {"id": None, "n": 4})
                assert conn.scalars(sa.text(f"SELECT id FROM {table}")).all() == [1, 4], table
        schema.migrate(engine, "downgrade", "0019")
        with engine.begin() as conn:
            assert _sqlite_schema(conn) == before
            assert _never_reusing_ids(conn) == set()
            assert conn.scalar(sa.text("SELECT count(*) FROM sqlite_sequence")) == 0
            assert conn.scalars(sa.text("SELECT id FROM deliveries")).all() == [1, 4]
    finally:
        engine.dispose()


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)
def test_the_models_and_the_migrations_agree_on_which_ids_are_never_reused(
    database_url: str, tmp_path: Path
) -> None:
    migrated = create_db_engine(database_url)
    described = create_db_engine(f"sqlite:///{tmp_path / 'models.db'}")
    try:
        schema.upgrade(migrated)
        Base.metadata.create_all(described)
        with migrated.connect() as one, described.connect() as other:
            assert _never_reusing_ids(one) == _never_reusing_ids(other) == IDS_NEVER_REUSED
    finally:
        migrated.dispose()
        described.dispose()


def test_migration_0022_dates_the_complaints_already_recorded_by_their_email_and_back(
    database_url: str,
) -> None:
    """A complaint recorded before drip kept when it arrived is dated by its email's send
    time (queue time without one): the best guess left. Downgrading drops the dates and
    brings back the old index, and SQLite's deliveries keep AUTOINCREMENT (0020)."""
    engine = create_db_engine(database_url)
    delivery = (
        "INSERT INTO deliveries (id, subscriber_id, kind, status, attempts, created_at, "
        "queued_at, sent_at, bounce) VALUES (:id, 1, 'step', 'sent', 1, "
        "'2026-01-01 00:00:00', '2026-01-01 00:00:00', :sent_at, :bounce)"
    )
    sent_at = "2026-01-02 08:00:00"
    try:
        schema.migrate(engine, "upgrade", "0021")
        with engine.begin() as conn:
            conn.execute(SERIES_S)
            conn.execute(sa.text(ROW_AT_0019["subscribers"]), {"id": 1, "n": 1})
            conn.execute(
                sa.text(delivery),
                [
                    {"id": 1, "sent_at": sent_at, "bounce": "complaint"},
                    {"id": 2, "sent_at": None, "bounce": "complaint"},
                    {"id": 3, "sent_at": sent_at, "bounce": "hard"},
                    {"id": 4, "sent_at": sent_at, "bounce": None},
                ],
            )
        schema.migrate(engine, "upgrade", "head")
        with engine.begin() as conn:
            dated = dict(conn.execute(sa.select(Delivery.id, Delivery.complained_at)).all())
        assert dated == {
            1: datetime(2026, 1, 2, 8, tzinfo=UTC),
            2: datetime(2026, 1, 1, tzinfo=UTC),
            3: None,
            4: None,
        }
        schema.migrate(engine, "downgrade", "0021")
        with engine.begin() as conn:
            inspector = sa.inspect(conn)
            columns = {c["name"] for c in inspector.get_columns("deliveries")}
            indexes = {i["name"] for i in inspector.get_indexes("deliveries")}
            if conn.dialect.name == "sqlite":
                assert "deliveries" in _never_reusing_ids(conn)
        assert "complained_at" not in columns
        assert "ix_deliveries_complaints" in indexes
        assert "ix_deliveries_complained_at" not in indexes
    finally:
        engine.dispose()


def test_migration_0023_lets_a_withdrawal_name_the_privacy_page_and_back(
    database_url: str,
) -> None:
    """After the upgrade a withdrawal may say `privacy_page`; the downgrade turns it back
    into `link`, the only name the old code has for it, and the old list is enforced
    again. The log stays append-only both ways, and on SQLite the rebuilt table keeps
    its AUTOINCREMENT (0020), indexes, triggers and keys, and the largest id it ever
    gave: an erased event's id, gone from the table, is never given again either way.
    (PostgreSQL's sequence is untouched by a constraint change.)"""
    engine = create_db_engine(database_url)
    withdrawal = sa.text(
        "INSERT INTO consent_events (id, subscriber_id, kind, occurred_at, method) "
        "VALUES (:id, 1, 'withdraw', '2026-01-02 00:00:00', :method)"
    )
    try:
        schema.migrate(engine, "upgrade", "0022")
        with engine.begin() as conn:
            conn.execute(SERIES_S)
            conn.execute(sa.text(ROW_AT_0019["subscribers"]), {"id": 1, "n": 1})
            conn.execute(withdrawal, [{"id": 1, "method": "link"}, {"id": 3, "method": "link"}])
            _delete_row(conn, "consent_events", 3)
            before = _sqlite_schema(conn) if conn.dialect.name == "sqlite" else None
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(withdrawal, {"id": 2, "method": "privacy_page"})
        schema.migrate(engine, "upgrade", "0023")
        with engine.begin() as conn:
            conn.execute(withdrawal, {"id": 2, "method": "privacy_page"})
            checks = {c["name"] for c in sa.inspect(conn).get_check_constraints("consent_events")}
            if before is not None:
                assert _sqlite_schema(conn)[0] == before[0], "indexes and triggers"
                assert _never_reusing_ids(conn) == IDS_NEVER_REUSED
                assert _new_withdrawal(conn) == 4, "3 was erased before the upgrade"
                _delete_row(conn, "consent_events", 4)
        assert "ck_consent_events_consent_method" in checks, "a later migration finds it"
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(sa.text("UPDATE consent_events SET method = 'admin' WHERE id = 2"))
        schema.migrate(engine, "downgrade", "0022")
        with engine.begin() as conn:
            methods = conn.execute(sa.text("SELECT id, method FROM consent_events")).all()
            if before is not None:
                assert _sqlite_schema(conn) == before
        assert sorted(map(tuple, methods)) == [(1, "link"), (2, "link")]
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(withdrawal, {"id": 3, "method": "privacy_page"})
        if before is not None:
            with engine.begin() as conn:
                assert _new_withdrawal(conn) == 5, "4 was erased before the downgrade"
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(sa.text("UPDATE consent_events SET method = 'admin' WHERE id = 2"))
    finally:
        engine.dispose()


def _new_withdrawal(conn: sa.Connection) -> int:
    """Log a withdrawal with the id the database chooses, and return that id."""
    return conn.scalar(
        sa.text(
            "INSERT INTO consent_events (subscriber_id, kind, occurred_at, method) "
            "VALUES (1, 'withdraw', '2026-01-03 00:00:00', 'link') RETURNING id"
        )
    )


def test_migration_0024_deletes_the_notices_no_consent_event_points_to(
    database_url: str,
) -> None:
    """A notice left behind by two erasures at once goes; one an event points to stays,
    and the log is append-only again afterwards."""
    engine = create_db_engine(database_url)
    notice = sa.text(
        "INSERT INTO consent_texts (id, version, sha256, body, privacy_policy_version, "
        "created_at) VALUES (:id, :id, :sha, 'notice', 'v1', '2026-01-01 00:00:00')"
    )
    signup = sa.text(
        "INSERT INTO consent_events (id, subscriber_id, kind, occurred_at, consent_text_id) "
        "VALUES (1, 1, 'signup', '2026-01-02 00:00:00', 1)"
    )
    try:
        schema.migrate(engine, "upgrade", "0023")
        with engine.begin() as conn:
            conn.execute(SERIES_S)
            conn.execute(sa.text(ROW_AT_0019["subscribers"]), {"id": 1, "n": 1})
            conn.execute(notice, [{"id": 1, "sha": "a" * 64}, {"id": 2, "sha": "b" * 64}])
            conn.execute(signup)
        schema.migrate(engine, "upgrade", "0024")
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT id FROM consent_texts")).scalars().all() == [1]
            assert conn.execute(sa.text("SELECT count(*) FROM erasure_marks")).scalar() == 0
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM consent_texts WHERE id = 1"))
    finally:
        engine.dispose()


def test_migration_0025_gives_readers_stored_with_a_placeless_zone_utc(database_url: str) -> None:
    """drip.timing no longer knows "localtime" or "Factory": a reader or a waiting signup
    stored with one gets UTC, and every other zone is left alone."""
    engine = create_db_engine(database_url)
    zoned = {1: "localtime", 2: "Factory", 3: "Europe/Berlin"}
    try:
        schema.migrate(engine, "upgrade", "0024")
        with engine.begin() as conn:
            conn.execute(SERIES_S)
            for table in ("subscribers", "received_signups"):
                conn.execute(sa.text(ROW_AT_0019[table]), [{"id": i, "n": i} for i in zoned])
                for i, name in zoned.items():
                    conn.execute(
                        sa.text(f"UPDATE {table} SET timezone = :name WHERE id = :id"),
                        {"id": i, "name": name},
                    )
        schema.migrate(engine, "upgrade", "head")
        with engine.begin() as conn:
            stored = {
                table: dict(conn.execute(sa.text(f"SELECT id, timezone FROM {table}")).all())
                for table in ("subscribers", "received_signups")
            }
        expected = {1: "UTC", 2: "UTC", 3: "Europe/Berlin"}
        assert stored == {"subscribers": expected, "received_signups": expected}
    finally:
        engine.dispose()


def at(text: str | None) -> datetime | None:
    """A time written as the rows below write it, in UTC."""
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_migration_0028_marks_the_subscribers_a_pause_moved_and_back(database_url: str) -> None:
    """Only a next email due on a later local day than the series gives it marks a
    pause (lessons on days 0, 1, 3 and 4 here): not one between two lessons days apart,
    nor one a day after a lesson that went out late, nor one after a resubscribe. The
    pause ends when that email is due, and the next email goes back to the series' time,
    where a pause now leaves it (so a Resume after the upgrade brings it back there).
    The downgrade moves it to the pause's end again, where the old code looks for it.
    One UPDATE moves every paused reader: one per reader kept a big list's `subscribers`
    locked twice as long on PostgreSQL (docs/deploy.md)."""
    engine = create_db_engine(database_url)
    updates: list[int] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def count(_c: object, _cur: object, statement: str, params: object, *_: object) -> None:
        if statement.lstrip().upper().startswith("UPDATE SUBSCRIBERS"):
            updates.append(len(params) if isinstance(params, list) else 1)  # type: ignore[arg-type]

    subscriber = sa.text(
        "INSERT INTO subscribers (id, sequence_id, email, first_name, timezone, send_hour, "
        "status, next_step, next_send_at, last_sent_at, created_at) VALUES (:id, 4, "
        "'p' || :id || '@example.com', '', :tz, 8, :status, :next_step, :next_send_at, "
        ":last_sent_at, '2026-01-01 00:00:00')"
    )
    lesson = sa.text(
        "INSERT INTO deliveries (id, subscriber_id, kind, step_id, status, attempts, "
        "created_at, queued_at, due_at) VALUES (:id, :id, 'step', :step_id, 'sent', 1, "
        ":created_at, :created_at, :due_at)"
    )
    readers = {
        # id: timezone, status, next step, next email, last lesson sent, its step, issued, due
        1: ("UTC", "active", 2, "2026-01-09 08:00", "2026-01-02 08:01", 2, "2026-01-02 08:00"),
        2: ("UTC", "active", 2, "2026-01-04 08:00", "2026-01-02 08:01", 2, "2026-01-02 08:00"),
        3: ("UTC", "active", 3, "2026-01-06 06:00", "2026-01-05 06:00", 3, "2026-01-04 08:00"),
        4: ("UTC", "active", 2, "2026-01-08 08:00", "2026-01-02 08:01", 2, "2026-01-02 08:00"),
        5: ("UTC", "unsubscribed", None, None, "2026-01-02 08:01", 2, "2026-01-02 08:00"),
        6: ("America/Los_Angeles", "active", 2, "2026-01-05 16:00", None, 2, "2026-01-03 02:00"),
    }
    try:
        schema.migrate(engine, "upgrade", "0027")
        with engine.begin() as conn:
            conn.execute(SERIES_S)
            conn.execute(
                sa.text(ROW_AT_0019["steps"].replace(":n, :n", ":n, :day")),
                [{"id": n + 1, "n": n, "day": day} for n, day in enumerate((0, 1, 3, 4))],
            )
            for id, (tz, status, step, next_at, sent, step_id, issued) in readers.items():
                conn.execute(
                    subscriber,
                    {
                        "id": id,
                        "tz": tz,
                        "status": status,
                        "next_step": step,
                        "next_send_at": next_at,
                        "last_sent_at": sent,
                    },
                )
                due = None if id == 6 else issued  # issued before 0010 recorded due times
                conn.execute(
                    lesson, {"id": id, "step_id": step_id, "created_at": issued, "due_at": due}
                )
            conn.execute(
                sa.text(
                    "INSERT INTO consent_events (id, subscriber_id, kind, occurred_at, method) "
                    "VALUES (1, 4, 'resubscribe', '2026-01-07 10:00:00', 'admin')"
                )
            )
        updates.clear()
        schema.migrate(engine, "upgrade", "0028")
        assert updates == [1]
        with engine.begin() as conn:
            paused = dict(conn.execute(sa.select(Subscriber.id, Subscriber.paused_until)).all())
            due = dict(conn.execute(sa.select(Subscriber.id, Subscriber.next_send_at)).all())
        assert paused == {
            1: datetime(2026, 1, 9, 8, tzinfo=UTC),
            2: None,
            3: None,
            4: None,
            5: None,
            6: datetime(2026, 1, 5, 16, tzinfo=UTC),  # a day late in Los Angeles, not in UTC
        }
        series_time = {
            1: datetime(2026, 1, 4, 8, tzinfo=UTC),  # day 3, two days after day 1's lesson
            6: datetime(2026, 1, 4, 16, tzinfo=UTC),  # 08:00 in Los Angeles
        }
        assert due == {id: series_time.get(id, at(row[3])) for id, row in readers.items()}
        schema.migrate(engine, "downgrade", "0027")
        with engine.begin() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("subscribers")}
            due = dict(conn.execute(sa.select(Subscriber.id, Subscriber.next_send_at)).all())
        assert "paused_until" not in columns
        assert due == {id: at(row[3]) for id, row in readers.items()}
    finally:
        engine.dispose()

"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from drip import schema
from drip.db import create_db_engine
from drip.models import Base

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
        config = schema.alembic_config(engine)
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "base")
        with engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() is None
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


def _migrate(engine: sa.Engine, direction: str, revision: str) -> None:
    config = schema.alembic_config(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        getattr(command, direction)(config, revision)


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
        _migrate(engine, "upgrade", "0013")
        with engine.begin() as conn:
            _seed_revision_0013(conn)
        _migrate(engine, "upgrade", "head")
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
        _migrate(engine, "downgrade", "0013")
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
        _migrate(engine, "upgrade", "0017")
        with engine.begin() as conn:
            conn.execute(SERIES_S)
            conn.execute(sa.text(received), [{"id": 1, "slug": "s"}, {"id": 2, "slug": "gone"}])
        _migrate(engine, "upgrade", "head")
        with engine.begin() as conn:
            rows = conn.execute(sa.text("SELECT id, sequence_id FROM received_signups")).all()
        assert [tuple(r) for r in rows] == [(1, 4)]
        _migrate(engine, "downgrade", "0017")
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
        _migrate(engine, "upgrade", "0018")
        with engine.begin() as conn:
            conn.execute(SERIES_S)
            conn.execute(
                sa.text(
                    "INSERT INTO subscribers (id, sequence_id, email, first_name, timezone, "
                    "send_hour, status, created_at) VALUES (1, 4, 'ana@example.com', 'Ana', "
                    "'UTC', 8, 'active', '2026-01-01 10:00:00')"
                )
            )
        _migrate(engine, "upgrade", "head")
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE subscribers SET first_name = 'Anna' WHERE id = 1"))
            copied = conn.execute(sa.text("SELECT * FROM subscriber_search")).all()
        assert [tuple(r) for r in copied] == [(1, "ana@example.com", "Anna")]
        _migrate(engine, "downgrade", "0018")
        with engine.begin() as conn:
            indexes = conn.scalars(
                sa.text("SELECT indexname FROM pg_indexes WHERE tablename = 'subscribers'")
            ).all()
            assert conn.scalar(sa.text("SELECT to_regclass('subscriber_search')")) is None
        assert {"ix_subscribers_email_trgm", "ix_subscribers_name_trgm"} <= set(indexes)
    finally:
        engine.dispose()

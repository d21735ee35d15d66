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

MIGRATION_ONLY_INDEXES = {
    "ix_subscribers_email_trgm",
    "ix_subscribers_name_trgm",
    "ix_subscribers_name",
}
"""Name search (migration 0012): trigram indexes on PostgreSQL, an index on lower(first_name)
on SQLite; the models cannot spell either for both databases."""


def _described_by_the_models(obj: object, name: str | None, kind: str, *_: object) -> bool:
    return not (kind == "index" and name in MIGRATION_ONLY_INDEXES)


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

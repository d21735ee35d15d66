"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

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


def test_the_app_factory_is_importable_from_the_package() -> None:
    import drip

    assert callable(drip.create_app)

"""Creating and upgrading the database: Alembic, driven from code (no alembic.ini)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Engine

from drip.db import READ_ONLY
from drip.settings import PACKAGE_DIR


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(PACKAGE_DIR / "migrations"))
    return config


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest revision; a no-op when it is already there."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def is_current(engine: Engine) -> bool:
    """Is the database at the newest revision the code knows?"""
    script = ScriptDirectory.from_config(alembic_config(engine))
    with engine.connect().execution_options(**{READ_ONLY: True}) as connection:
        current = MigrationContext.configure(connection).get_current_heads()
    return set(current) == set(script.get_heads())


def probe_write(engine: Engine) -> None:
    """Raise unless the database takes a write right now, and leave it unchanged.

    Answering a SELECT is not enough for the unsubscribe route, which must record the
    change: a read-only replica after a failover, a read-only file or a full disk all
    answer reads. The probe rewrites the one row of `alembic_version` (only migrations
    touch it) and rolls back; on SQLite the transaction begins IMMEDIATE (drip.db), so it
    also takes the write lock.
    """
    with engine.connect() as connection, connection.begin() as probe:
        connection.execute(text("UPDATE alembic_version SET version_num = version_num"))
        probe.rollback()

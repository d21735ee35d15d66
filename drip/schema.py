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


def revisions(engine: Engine) -> tuple[set[str], set[str]]:
    """The revisions the database is at, and the newest ones the code knows."""
    script = ScriptDirectory.from_config(alembic_config(engine))
    with engine.connect().execution_options(**{READ_ONLY: True}) as connection:
        current = MigrationContext.configure(connection).get_current_heads()
    return set(current), set(script.get_heads())


def is_behind(engine: Engine) -> bool:
    """Does the database lack migrations this code needs?

    A revision the code does not know was written by newer code: during a rolling
    deploy `drip db upgrade` runs first and the old processes keep serving (migrations
    add before they take away), so a database ahead of the code is not behind.
    """
    current, newest = revisions(engine)
    if current == newest:
        return False
    script = ScriptDirectory.from_config(alembic_config(engine))
    known = {revision.revision for revision in script.walk_revisions()}
    return not current or current <= known


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

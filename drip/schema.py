"""Creating and upgrading the database: Alembic, driven from code (no alembic.ini).

Alembic (with Mako, ~12 MB) is imported only to upgrade: /readyz in every web process
asks whether the database is behind, and answers from the migration file names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy import text
from sqlalchemy.engine import Engine

from drip.db import READ_ONLY
from drip.settings import PACKAGE_DIR

if TYPE_CHECKING:
    from alembic.config import Config

VERSIONS = PACKAGE_DIR / "migrations" / "versions"


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(PACKAGE_DIR / "migrations"))
    return config


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest revision; a no-op when it is already there, told
    from the file names without loading Alembic (every `drip run` starts here)."""
    current, newest = revisions(engine)
    if current == newest:
        return
    from alembic import command

    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def code_revisions() -> tuple[set[str], set[str]]:
    """Every revision the code knows, and the newest, read from the file names: the file
    `NNNN_what.py` holds revision NNNN and revises the one before it (tests/test_schema.py
    holds the migrations to that)."""
    known = {path.name.split("_", 1)[0] for path in VERSIONS.glob("[0-9]*_*.py")}
    return known, {max(known)}


def revisions(engine: Engine) -> tuple[set[str], set[str]]:
    """The revisions the database is at, and the newest ones the code knows."""
    with engine.connect().execution_options(**{READ_ONLY: True}) as connection:
        current = (
            set(connection.scalars(text("SELECT version_num FROM alembic_version")))
            if sa.inspect(connection).has_table("alembic_version")
            else set()
        )
    return current, code_revisions()[1]


def is_behind(engine: Engine) -> bool:
    """Does the database lack migrations this code needs?

    A revision the code does not know was written by newer code: during a rolling
    deploy `drip db upgrade` runs first and the old processes keep serving (migrations
    add before they take away), so a database ahead of the code is not behind.
    """
    current, newest = revisions(engine)
    if current == newest:
        return False
    known, _ = code_revisions()
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

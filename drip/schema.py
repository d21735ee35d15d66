"""Creating and upgrading the database: Alembic, driven from code (no alembic.ini).

Alembic (with Mako, ~12 MB) is imported only to upgrade: /readyz in every web process
asks whether the database is behind, and answers from the migration file names.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Literal

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


def upgrade(engine: Engine) -> bool:
    """Bring the database to the newest revision, and say whether it had to; a no-op
    when it is already there, told from the file names without loading Alembic (every
    `drip run` starts here)."""
    current, newest = revisions(engine)
    if current == newest:
        return False
    migrate(engine, "upgrade", "head")
    return True


def migrate(engine: Engine, direction: Literal["upgrade", "downgrade"], revision: str) -> None:
    """Run Alembic's upgrade or downgrade to `revision`, all in one transaction.

    On SQLite, foreign keys are off meanwhile. A migration that rebuilds a table (a new
    copy, the original dropped, the copy renamed: migration 0020) would otherwise have
    the drop delete every row that references the original, or fail on a trigger. SQLite
    ignores the pragma inside a transaction, so it is set before BEGIN, and
    `PRAGMA foreign_key_check` stands in for the skipped checks before the commit (it
    reads every referencing table once: seconds on a big list, at upgrade time only).
    """
    from alembic import command

    config = alembic_config(engine)
    with engine.connect() as connection, _foreign_keys_off(connection), connection.begin():
        config.attributes["connection"] = connection
        getattr(command, direction)(config, revision)
        _check_foreign_keys(connection)


@contextmanager
def _foreign_keys_off(connection: sa.Connection) -> Iterator[None]:
    """Foreign keys off on SQLite while the block runs; on the raw connection, which
    begins no transaction of its own (SQLAlchemy's would, and ignore the pragma)."""
    if connection.dialect.name != "sqlite":
        yield
        return
    raw = connection.connection.driver_connection
    assert raw is not None
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        raw.execute("PRAGMA foreign_keys=ON")


def _check_foreign_keys(connection: sa.Connection) -> None:
    if connection.dialect.name != "sqlite":
        return
    broken = {row[0] for row in connection.exec_driver_sql("PRAGMA foreign_key_check")}
    if broken:
        raise RuntimeError(
            f"after migrating, rows of {', '.join(sorted(broken))} name rows that do not "
            "exist; nothing was changed"
        )


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


def listed(revisions: set[str]) -> str:
    """Revisions for a message: "0023", or what no revision means."""
    return ", ".join(sorted(revisions)) or "nothing (an empty database)"


def is_behind(engine: Engine) -> bool:
    """Does the database lack migrations this code needs?"""
    return behind(*revisions(engine))


def behind(current: set[str], newest: set[str]) -> bool:
    """Do the revisions `current` lack migrations up to `newest` (from `revisions`)?

    A revision the code does not know was written by newer code: during a rolling
    deploy `drip db upgrade` runs first and the old processes keep serving (migrations
    add before they take away), so a database ahead of the code is not behind.
    """
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

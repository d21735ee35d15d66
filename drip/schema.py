"""Creating and upgrading the database: Alembic, driven from code (no alembic.ini)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

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
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_heads()
    return set(current), set(script.get_heads())


def is_current(engine: Engine) -> bool:
    """Is the database at the newest revision the code knows?"""
    current, newest = revisions(engine)
    return current == newest

"""What every command shares: its settings, its database and how its errors end it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any

import click
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from drip.clock import Clock
from drip.db import SessionFactory, is_conflict
from drip.db_problems import is_unreachable, require_database, unreachable
from drip.errors import DripError
from drip.settings import Settings, load_settings

SETTINGS = "drip.settings"
"""Where configured_settings leaves the settings in click's context, for handles_errors."""


def configured_settings(*, create_instance: bool = True) -> Settings:
    """The settings, with logging set up from them (every command comes through here).
    A command that writes nothing to the instance folder passes create_instance=False
    (load_settings)."""
    from drip.logs import configure_logging

    settings = load_settings(create_instance=create_instance)
    configure_logging(settings)
    click.get_current_context().meta[SETTINGS] = settings
    return settings


CONFLICT = (
    "the database aborted a step for a clash with another change; that step changed "
    "nothing (steps before it are kept), run the command again"
)


def handles_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A command's errors as a message and exit status 1, not a traceback.

    A bad setting is no usage error (status 2, with the command's usage): the
    environment is wrong, not the command line. A database that cannot be reached
    (drip.db_problems.is_unreachable) is named, its password masked; any other failed
    statement is a bug and keeps its traceback. When PostgreSQL aborts a command's
    transaction to let a clashing one through (drip.db.CONFLICTS; the purge of
    unconfirmed signups can still deadlock with `drip privacy erase`, drip.privacy.erase),
    the aborted transaction leaves nothing behind (a command that commits in steps, as
    `bounces process` does, keeps the steps before it) and the same command run again
    normally goes through, so the message says that instead of a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DripError as exc:
            raise click.ClickException(str(exc)) from None
        except DBAPIError as exc:
            if is_conflict(exc):
                raise click.ClickException(CONFLICT) from None
            settings = click.get_current_context().meta.get(SETTINGS)
            if settings is None or not is_unreachable(exc):
                raise
            raise click.ClickException(unreachable(settings.database_url, exc)) from None

    return wrapper


@contextmanager
def database_session(*, create_instance: bool = True) -> Iterator[tuple[Session, Clock]]:
    """One transaction on the configured database, for commands that change a few rows."""
    from drip.db import transaction

    with (
        database_sessions(create_instance=create_instance) as (sessions, clock),
        transaction(sessions) as session,
    ):
        yield session, clock


@contextmanager
def database_sessions(*, create_instance: bool = True) -> Iterator[tuple[SessionFactory, Clock]]:
    """The configured database, for commands that commit as they go; refused, and not
    created, when it is a SQLite file that does not exist yet."""
    from drip.db import make_session_factory
    from drip.wiring import make_clock, make_engine

    settings = configured_settings(create_instance=create_instance)
    require_database(settings.database_url)
    engine = make_engine(settings)
    try:
        yield make_session_factory(engine), make_clock(settings)
    finally:
        engine.dispose()

"""What keeps drip from its database, said for an operator: no database yet, or a server
or file it cannot reach (named with its password masked). The CLI and `drip doctor` say
it the same way."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from drip.errors import DripError

FIRST_RUN = "run drip init (or drip db upgrade)"


def shown(url: str) -> str:
    """The database URL with its password masked, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def missing_file(url: str) -> Path | None:
    """The SQLite file `url` names, when it does not exist yet. Connecting would create
    it empty, so a command that needs the tables asks this first and creates nothing."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.query.get("uri"):
        return None
    if not parsed.database or parsed.database == ":memory:":
        return None
    path = Path(parsed.database)
    return None if path.exists() else path


def require_database(url: str) -> None:
    """DripError when `url` names a SQLite file that does not exist yet."""
    path = missing_file(url)
    if path is not None:
        raise DripError(f"no database yet at {path}; {FIRST_RUN}")


def is_unreachable(exc: BaseException) -> bool:
    """Whether `exc` is the database not answering: no connection could be made
    (SQLAlchemy raises that without a statement: a refused connection, a SQLite file in
    a folder that does not exist) or one was lost. A statement that failed is not: on
    SQLite a missing table is an OperationalError too, and it is a bug to show in full."""
    return isinstance(exc, sa.exc.OperationalError) and (
        exc.statement is None or exc.connection_invalidated
    )


PASSING = (sa.exc.OperationalError, sa.exc.InterfaceError)
"""The database's trouble rather than drip's, which a later try of the same work may
not meet: a connection refused or lost, a lock held past the wait (SQLite's "database
is locked"), a timeout, a full disk, a transaction PostgreSQL aborted for a clash
(drip.db.CONFLICTS). A later try is no cure for what raises anything else (a broken
constraint, a bad statement: a bug). SQLite reports a missing table with an
OperationalError too; a later try finds it once the database is upgraded."""


def is_passing(exc: BaseException) -> bool:
    """Whether `exc` is one of PASSING, or any failure SQLAlchemy found to have lost
    the connection (it invalidates it: the next try gets a new one)."""
    return isinstance(exc, PASSING) or (
        isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated
    )


def reason(exc: sa.exc.DBAPIError) -> str:
    """The driver's own words on one line (psycopg adds a hint on a second)."""
    return "; ".join(filter(None, (line.strip() for line in str(exc.orig).splitlines())))


def unreachable(url: str, exc: sa.exc.DBAPIError) -> str:
    return f"cannot reach the database at {shown(url)}: {reason(exc)}"

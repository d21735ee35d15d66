"""Engine, sessions and the UTC column type.

SQLite note: Python's sqlite3 starts a transaction only at the first write, so a
"select then update" claim is not atomic there, and FOR UPDATE is silently dropped.
Every SQLite transaction that may write therefore starts with BEGIN IMMEDIATE, which
takes the single write lock up front: two claimers serialise instead of both picking the
same rows. Read-only transactions (`reading`) start with a plain BEGIN. Within one
process, writers wait their turn on a lock instead (TurnTaking).
On PostgreSQL the claims use SELECT ... FOR UPDATE SKIP LOCKED instead.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import Session, sessionmaker

from drip.private_files import create_private

log = logging.getLogger(__name__)
SessionFactory = sessionmaker[Session]
READ_ONLY = "drip_read_only"
BUSY_WAIT = 30.0
"""Seconds a SQLite statement waits for a lock another connection holds, then fails."""
_BUSY_TIMEOUT = f"PRAGMA busy_timeout={BUSY_WAIT * 1000:.0f}"


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Stores aware datetimes as UTC and always hands back aware UTC datetimes.

    SQLite has no timezone type, so values are stored naive-in-UTC there; refusing naive
    input keeps a local wall time from ever being compared with a UTC one.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_day(dialect: str, column: sa.ColumnElement[datetime]) -> sa.ColumnElement[Any]:
    """The UTC day of a UTCDateTime column, for counts per day. SQLite stores UTC
    already; PostgreSQL's cast of a timestamptz to a date takes the day in the session's
    timezone, which the server's or database's configuration chooses, so the instant is
    turned into UTC wall time first. In the query rather than by setting the timezone on
    drip's connections: PgBouncer (docs/deploy.md) refuses startup options and does not
    keep a session's SET in transaction pooling. SQLite answers a string: `as_date`."""
    if dialect == "sqlite":
        return sa.func.date(column)
    return sa.cast(sa.func.timezone("UTC", column), sa.Date)


def as_date(value: date | str) -> date:
    """A `utc_day` as read back, whichever database answered."""
    return value if isinstance(value, date) else date.fromisoformat(value)


def create_db_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        connect_args = {"timeout": BUSY_WAIT, "check_same_thread": False, "factory": _turns()}
        engine = sa.create_engine(url, connect_args=connect_args, **kwargs)
        event.listen(engine, "do_connect", _sqlite_create_private)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(url, **kwargs)


def _sqlite_create_private(_dialect: Dialect, _record: Any, cargs: list[Any], cparams: Any) -> None:
    """Create a new database file for its owner alone before SQLite opens it: SQLite would
    create it readable by every account (umask 022), and gives its -wal and -shm files
    the database file's mode. An in-memory or URI-named database is left to SQLite."""
    database = cargs[0] if cargs else ""
    if database and database != ":memory:" and not cparams.get("uri"):
        create_private(Path(database))


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None
    dbapi_conn.create_function("drip_lower", 1, _lower, deterministic=True)
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(_BUSY_TIMEOUT)
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def _lower(text: object) -> object:
    """`drip_lower(text)` on SQLite: lower case as Python's str.lower, for the name
    search (drip.directory). SQLite's own lower() changes only A to Z, so no search with
    another letter could find "Élodie". Used in queries only, never in an index or a
    trigger: a database must stay writable by connections that lack it (the sqlite3
    shell, an older drip)."""
    return text.lower() if isinstance(text, str) else text


def _sqlite_begin_immediate(conn: sa.Connection) -> None:
    """Raises what SQLAlchemy raises for a failed statement: SQLAlchemy does not wrap what
    a "begin" listener raises, and callers (the actors' retries) expect its errors."""
    if conn.get_execution_options().get(READ_ONLY, False):
        conn.exec_driver_sql("BEGIN")
        return
    try:
        take_write_lock(conn.connection.driver_connection, wait=BUSY_WAIT)
    except sqlite3.OperationalError as exc:
        raise sa.exc.OperationalError("BEGIN IMMEDIATE", None, exc) from exc


class Turn:
    """One engine's write turn: a lock, and the connection holding it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.holder: TurnTaking | None = None


class TurnTaking(sqlite3.Connection):
    """A connection whose write transactions take turns with those of the other
    connections of its engine in this process: BEGIN IMMEDIATE waits for the turn, which
    COMMIT, ROLLBACK and close hand on, and polls only for writers in other processes.

    Eight sending threads that all polled spent 3 ms of CPU per email failing and
    sleeping, a quarter of the total, and sent 79 a second instead of 99-104
    (docs/performance.md, run 10). SQLite's own lock still keeps writers apart; the turn
    only saves the polling. So a turn that was never handed on (a Dramatiq time limit
    interrupts a thread between taking it and noting so) is taken over by the first
    writer that waited the full `wait` for it, and a writer that is really that slow is
    left alone: the waiter then tries SQLite's lock once, as without turns.
    """

    turn: ClassVar[Turn]

    def take_turn(self, wait: float) -> None:
        turn = self.turn
        if not turn.lock.acquire(timeout=wait):
            if _writing(turn.holder):
                return
            log.warning("a SQLite write turn was never handed on; taking it over")
        turn.holder = self

    def end_turn(self) -> None:
        turn = self.turn
        if turn.holder is self:
            turn.holder = None
            turn.lock.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.end_turn()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.end_turn()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.end_turn()


def _writing(connection: TurnTaking | None) -> bool:
    try:
        return connection is not None and connection.in_transaction
    except sqlite3.ProgrammingError:  # closed
        return False


def _turns() -> type[TurnTaking]:
    """A connection class with a turn of its own, for one engine's connections."""
    return type("EngineTurnTaking", (TurnTaking,), {"turn": Turn()})


def take_write_lock(dbapi_conn: sqlite3.Connection, *, wait: float = BUSY_WAIT) -> None:
    """BEGIN IMMEDIATE, tried again every few hundred microseconds while another
    connection holds the write lock, for up to `wait` seconds; a TurnTaking connection
    first waits for its turn, within the same `wait`.

    SQLite's own busy handler backs off to sleeps of 25, 50 and then 100 ms. Under steady
    contention (four web processes, or eight sending threads) a waiter keeps sleeping long
    after the lock came free: that made the 540 ms p99 of SQLite signups in
    docs/performance.md. Short, capped pauses hand the lock on within a couple of
    milliseconds. Other statements keep the busy timeout.
    """
    deadline = time.monotonic() + wait
    if isinstance(dbapi_conn, TurnTaking):
        dbapi_conn.take_turn(wait)
    try:
        _begin_immediate(dbapi_conn, deadline)
    except BaseException:
        if isinstance(dbapi_conn, TurnTaking):
            dbapi_conn.end_turn()
        raise


def _begin_immediate(dbapi_conn: sqlite3.Connection, deadline: float) -> None:
    pause = 0.0001
    dbapi_conn.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                dbapi_conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.002)
    finally:
        dbapi_conn.execute(_BUSY_TIMEOUT)


def make_session_factory(engine: Engine) -> SessionFactory:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: SessionFactory) -> Iterator[Session]:
    """One short unit of work: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session


@contextmanager
def reading(factory: SessionFactory) -> Iterator[Session]:
    """A transaction that only reads: on SQLite it does not take the write lock, so page
    views never queue behind the scheduler or the workers."""
    with factory() as session, session.begin():
        session.connection(execution_options={READ_ONLY: True})
        yield session


@contextmanager
def writing(factory: SessionFactory) -> Iterator[sa.Connection]:
    """`transaction` without the ORM, on the factory's engine: for the send path, which
    runs only plain statements for every email, and where a Session's own bookkeeping
    (its transaction, identity map and flush) cost more than the statements."""
    with engine_of(factory).begin() as connection:
        yield connection


@contextmanager
def looking(factory: SessionFactory) -> Iterator[sa.Connection]:
    """`reading` without the ORM (see `writing`)."""
    with engine_of(factory).connect() as connection:
        connection.execution_options(**{READ_ONLY: True})
        with connection.begin():
            yield connection


def engine_of(factory: SessionFactory) -> Engine:
    bind = factory.kw["bind"]
    assert isinstance(bind, Engine), "drip's session factories are bound to an engine"
    return bind


FOR_NO_KEY_UPDATE = {"key_share": True}
"""Row lock for rows drip updates but whose key never changes (`with_for_update=` value).

A plain FOR UPDATE on a subscriber also blocks the KEY SHARE lock that PostgreSQL's
foreign-key check takes when a worker updates one of that subscriber's deliveries, and
the two transactions deadlock; FOR NO KEY UPDATE does not. SQLite ignores both.
"""


CONFLICTS = frozenset({"40001", "40P01"})
"""PostgreSQL's serialization_failure and deadlock_detected: it aborted this transaction
so that another, which clashed with it, could go on. Nothing this one did is left, and
the same work tried again a moment later normally goes through."""


def is_conflict(exc: BaseException) -> bool:
    """Whether `exc` is the database giving up on a transaction for one of `CONFLICTS`;
    SQLite, whose writers take turns, never raises one."""
    return isinstance(exc, sa.exc.DBAPIError) and getattr(exc.orig, "sqlstate", None) in CONFLICTS


def scrub(engine: Engine) -> None:
    """After an erasure on SQLite: fold the write-ahead log into the database file and
    empty it, so erased rows survive in neither. PostgreSQL reclaims dead rows itself.

    The checkpoint runs on the raw connection, outside any transaction (SQLite refuses
    it inside one)."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as connection:
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        cursor.close()

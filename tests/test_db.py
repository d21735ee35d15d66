"""SQLite's write lock: a waiting writer gets it as soon as it is free, and gives up in time;
only transactions that may write take it."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from drip.db import (
    BUSY_WAIT,
    TurnTaking,
    create_db_engine,
    looking,
    make_session_factory,
    take_write_lock,
    writing,
)
from tests.helpers import is_private


@pytest.fixture
def connect(tmp_path: Path) -> Iterator[Callable[[], sqlite3.Connection]]:
    """Opens connections to one database file, in WAL mode; closes them after the test."""
    opened: list[sqlite3.Connection] = []

    def open_one() -> sqlite3.Connection:
        conn = sqlite3.connect(tmp_path / "d.db", isolation_level=None, check_same_thread=False)
        opened.append(conn)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn

    yield open_one
    for conn in opened:
        conn.close()


def test_a_waiting_writer_takes_the_lock_once_the_holder_commits(
    connect: Callable[[], sqlite3.Connection],
) -> None:
    holder, waiter = connect(), connect()
    holder.execute("CREATE TABLE t (x)")
    take_write_lock(holder)
    attempts: list[str] = []
    retried = threading.Event()

    def traced(statement: str) -> None:
        if statement == "BEGIN IMMEDIATE":
            attempts.append(statement)
            if len(attempts) >= 2:
                retried.set()

    waiter.set_trace_callback(traced)
    thread = threading.Thread(target=take_write_lock, args=(waiter,), kwargs={"wait": 60})
    thread.start()
    assert retried.wait(10), "the waiter tried again while the lock was held"
    holder.execute("INSERT INTO t VALUES (1)")
    holder.execute("COMMIT")
    thread.join(60)
    assert not thread.is_alive()
    assert waiter.in_transaction, "the waiter holds the lock now"
    waiter.execute("INSERT INTO t VALUES (2)")
    waiter.execute("COMMIT")
    timeout = waiter.execute("PRAGMA busy_timeout").fetchone()[0]
    assert timeout == BUSY_WAIT * 1000, "other statements keep the busy timeout"


def test_a_writer_gives_up_when_the_lock_stays_taken(
    connect: Callable[[], sqlite3.Connection],
) -> None:
    holder, waiter = connect(), connect()
    take_write_lock(holder)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        take_write_lock(waiter, wait=0.05)
    assert not waiter.in_transaction
    assert waiter.execute("PRAGMA busy_timeout").fetchone()[0] == BUSY_WAIT * 1000


def test_a_plain_write_transaction_holds_the_write_lock_and_a_plain_read_does_not_wait(
    tmp_path: Path, connect: Callable[[], sqlite3.Connection]
) -> None:
    """The send path's connections without the ORM start their transactions as sessions do."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'd.db'}")
    factory = make_session_factory(engine)
    with writing(factory) as connection:
        connection.exec_driver_sql("CREATE TABLE t (x)")
    try:
        with writing(factory) as connection:
            connection.exec_driver_sql("INSERT INTO t VALUES (1)")
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                take_write_lock(connect(), wait=0.05)
            with looking(factory) as reader:
                assert reader.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
        with looking(factory) as reader:
            assert reader.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1
    finally:
        engine.dispose()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'd.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x)")
    yield engine
    engine.dispose()


def test_writers_in_one_process_wait_their_turn_instead_of_polling(engine: sa.Engine) -> None:
    attempts: list[str] = []
    done = threading.Event()

    def write() -> None:
        with engine.connect() as connection:
            connection.connection.driver_connection.set_trace_callback(  # type: ignore[union-attr]
                lambda statement: attempts.append(statement) if "BEGIN" in statement else None
            )
            with connection.begin():
                connection.exec_driver_sql("INSERT INTO t VALUES (2)")
        done.set()

    with engine.begin() as holder:
        holder.exec_driver_sql("INSERT INTO t VALUES (1)")
        thread = threading.Thread(target=write)
        thread.start()
        assert not done.wait(0.3), "the other writer waits while this one holds the lock"
    thread.join(10)

    assert done.is_set()
    assert attempts == ["BEGIN IMMEDIATE"], "one try, once its turn came"


def test_a_rolled_back_transaction_hands_on_the_turn(engine: sa.Engine) -> None:
    with pytest.raises(ZeroDivisionError), engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO t VALUES (1)")
        1 / 0  # noqa: B018
    with engine.connect() as connection:
        take_write_lock(connection.connection.driver_connection, wait=0.05)  # type: ignore[arg-type]
        connection.connection.driver_connection.rollback()  # type: ignore[union-attr]


def test_a_writer_gives_up_when_its_turn_does_not_come(engine: sa.Engine) -> None:
    with engine.begin() as holder:
        holder.exec_driver_sql("INSERT INTO t VALUES (1)")
        with engine.connect() as waiter:
            raw = waiter.connection.driver_connection
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                take_write_lock(raw, wait=0.05)  # type: ignore[arg-type]
            assert not raw.in_transaction  # type: ignore[union-attr]
    with engine.begin() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1


def test_a_turn_never_handed_on_is_taken_over(
    engine: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """As when a Dramatiq time limit interrupts a thread just after it took the turn."""
    with engine.connect() as connection:
        raw = connection.connection.driver_connection
        assert isinstance(raw, TurnTaking)
        raw.turn.lock.acquire()

        take_write_lock(raw, wait=0.05)
        raw.commit()

        assert raw.turn.lock.acquire(blocking=False), "handed on at the commit"
        raw.turn.lock.release()
    assert "never handed on" in caplog.text


def test_a_write_transaction_that_cannot_start_fails_as_sqlalchemy_fails(
    engine: sa.Engine, connect: Callable[[], sqlite3.Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The actors retry SQLAlchemy's OperationalError; the lock's own error escaped them."""
    monkeypatch.setattr("drip.db.BUSY_WAIT", 0.05)
    other_process = connect()
    take_write_lock(other_process)
    with pytest.raises(sa.exc.OperationalError, match="locked"), engine.begin():
        pass
    other_process.rollback()
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO t VALUES (1)")


@pytest.mark.usefixtures("usual_umask")
def test_a_new_database_file_and_its_wal_files_are_readable_by_their_owner_only(
    tmp_path: Path,
) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'drip.db'}")
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE t (x)")
            files = sorted(path.name for path in tmp_path.iterdir())
            assert files == ["drip.db", "drip.db-shm", "drip.db-wal"]
            assert all(is_private(tmp_path / name) for name in files)
    finally:
        engine.dispose()

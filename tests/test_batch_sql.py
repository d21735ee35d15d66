"""How a scheduler batch is written: on PostgreSQL as arrays in two short statements,
and on either database without issuing a step twice."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import pq
from psycopg.adapt import PyFormat
from sqlalchemy import event

from drip.batch_sql import ISSUED, SHARED, batch_statements
from drip.db import transaction
from drip.models import Delivery, DeliveryKind, DeliveryStatus, Step, SubscriberStatus
from drip.schedule import _delivery_row
from tests.helpers import System


@contextmanager
def batch_writes(system: System) -> Iterator[list[tuple[str, bool]]]:
    """Each UPDATE of subscribers and INSERT into deliveries sent to the database while
    inside: its text, and whether it went as an executemany."""
    engine = system.sessions.kw["bind"]
    seen: list[tuple[str, bool]] = []

    def record(*args: Any) -> None:
        statement, executemany = args[2], args[5]
        if statement.startswith(("UPDATE subscribers", "INSERT INTO deliveries")):
            seen.append((statement, executemany))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def one_claimer(system: System) -> None:
    """For a test that counts a pass's statements: two claimers at once may split a few
    due subscribers into two batches."""
    system.settings = dataclasses.replace(system.settings, scheduler_claimers=1)


def test_on_postgresql_a_batch_is_two_statements_whatever_its_size(system: System) -> None:
    """psycopg runs an executemany a row at a time, and parses a multi-row INSERT of a
    whole batch afresh each time: the pass was several times slower (bench/scheduler.py)."""
    if system.sessions.kw["bind"].dialect.name != "postgresql":
        pytest.skip("SQLite keeps the rows: it runs an executemany in one C loop")
    one_claimer(system)
    system.join_many(2, prefix="a")
    system.clock.advance(timedelta(days=1, hours=3))
    system.stop_worker()  # recording a sent lesson is an UPDATE subscribers too
    with batch_writes(system) as small:
        assert len(system.tick().issued) == 2
    system.join_many(7, prefix="b")
    system.clock.advance(timedelta(days=1, hours=3))
    system.stop_worker()
    with batch_writes(system) as large:
        assert len(system.tick().issued) == 9

    assert [executemany for _, executemany in small + large] == [False] * 4
    assert small == large, "the same two statements, so each is parsed and planned once"


def test_on_postgresql_a_batch_goes_as_binary_arrays(system: System) -> None:
    """psycopg quotes and escapes each element of an array sent as text, in Python:
    about ten times the cost of a timestamp sent in binary. (An array of nothing but
    NULLs still goes as text: psycopg cannot tell its type, and it costs nothing.)"""
    engine = system.sessions.kw["bind"]
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no arrays")
    one_claimer(system)
    system.join_many(3, prefix="d")
    system.clock.advance(timedelta(days=1, hours=3))
    system.stop_worker()
    formats: list[pq.Format] = []

    def record(*args: Any) -> None:
        cursor, statement, parameters = args[1:4]
        if statement.startswith(("UPDATE subscribers", "INSERT INTO deliveries")):
            dumpers = psycopg.adapt.Transformer(cursor)
            formats.extend(
                dumpers.get_dumper(value, PyFormat.AUTO).format
                for value in parameters.values()
                if isinstance(value, list) and any(v is not None for v in value)
            )

    event.listen(engine, "before_cursor_execute", record)
    try:
        assert len(system.tick().issued) == 3
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert len(formats) == 7, "subscribers' five columns but ended_at (all NULL); three"
    assert set(formats) == {pq.Format.BINARY}


def test_a_step_already_issued_is_skipped_and_its_subscriber_moves_on(system: System) -> None:
    first, second = system.join_many(2, prefix="c")
    system.clock.advance(timedelta(days=1, hours=3))
    with transaction(system.sessions) as session:
        early = system.subscriber(first, session=session)
        due_step = session.scalars(
            sa.select(Step.id).where(
                Step.sequence_id == early.sequence_id, Step.number == early.next_step
            )
        ).one()
        session.add(
            Delivery(
                subscriber_id=early.id,
                kind=DeliveryKind.STEP,
                step_id=due_step,
                status=DeliveryStatus.SENT,
                created_at=system.clock.now(),
                queued_at=system.clock.now(),
            )
        )
        before = early.next_step

    issued = system.tick().issued

    with transaction(system.sessions) as session:
        late = system.subscriber(second, session=session)
        assert (
            issued
            == list(
                session.scalars(sa.select(Delivery.id).where(Delivery.subscriber_id == late.id))
            )[-1:]
        )
        moved = system.subscriber(first, session=session)
        assert moved.status is SubscriberStatus.ACTIVE
        assert moved.next_step == before + 1
        assert (
            session.scalar(
                sa.select(sa.func.count()).where(
                    Delivery.subscriber_id == moved.id, Delivery.step_id == due_step
                )
            )
            == 1
        )


def test_the_array_insert_writes_every_column_of_a_delivery_row() -> None:
    """The PostgreSQL INSERT names its columns once (ISSUED); a column added to the rows
    and not there would be left out without an error."""
    row = _delivery_row(1, DeliveryKind.STEP, 2, datetime(2026, 10, 24, tzinfo=UTC))
    assert set(row) == set(ISSUED)


def test_on_postgresql_a_batch_binds_what_its_deliveries_share_once() -> None:
    """kind, status, attempts and the two times go as one value each, not as arrays;
    a batch whose deliveries differ in one of them is refused, not written wrong."""
    now = datetime(2026, 10, 24, tzinfo=UTC)
    rows = [_delivery_row(n, DeliveryKind.STEP, 2, now, now) for n in (1, 2)]
    bound = batch_statements("postgresql").bind_issued(rows)
    assert isinstance(bound, dict)
    assert {key: bound[key] for key in SHARED} == {key: rows[0][key] for key in SHARED}
    assert bound["subscriber_id"] == [1, 2]

    rows[1] = _delivery_row(2, DeliveryKind.STEP, 2, now + timedelta(seconds=1), now)
    with pytest.raises(ValueError, match="must agree"):
        batch_statements("postgresql").bind_issued(rows)

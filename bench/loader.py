"""Bulk-loading subscribers straight into the tables: COPY on PostgreSQL, one multi-row
INSERT per chunk on SQLite. A million rows through the ORM would take minutes
(stack-notes 3e: `add_all` runs at ~15k rows/s); these paths skip it."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from drip.bootstrap import initialise
from drip.clock import FixedClock
from drip.models import (
    ConsentEvent,
    ConsentEventKind,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Sequence,
    Step,
    Subscriber,
)
from drip.settings import load_settings
from drip.wiring import make_engine, make_renderer

CHUNK = 50_000
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney")
STATUS_MIX = ("active",) * 14 + ("completed",) * 3 + ("unsubscribed",) * 2 + ("pending",)
"""Not-due subscribers: 70% active, 15% completed, 10% unsubscribed, 5% pending."""
PAUSED_EVERY = 7
"""One not-due active subscriber in 7 is paused (10% of the not-due) until what would
have been their next email, with next_send_at at the series' time, as a pause leaves it:
already past for all of them (the worst case, where every paused reader lies in the
range of due subscribers a pass reads)."""
COLUMNS = (
    "sequence_id",
    "email",
    "first_name",
    "timezone",
    "send_hour",
    "status",
    "next_step",
    "next_send_at",
    "created_at",
    "confirmation_sent_at",
    "confirmed_at",
    "last_sent_at",
    "ended_at",
    "paused_until",
)
DELIVERY_COLUMNS = (
    "subscriber_id",
    "kind",
    "step_id",
    "status",
    "attempts",
    "created_at",
    "queued_at",
    "sent_at",
)


def prepare(env: dict[str, str], now: datetime) -> tuple[Engine, int]:
    """Create the schema and install the shipped series, as `drip init` does."""
    settings = load_settings(env)
    engine = make_engine(settings)
    initialise(settings, engine, FixedClock(now), make_renderer(settings))
    with engine.connect() as conn:
        sequence_id = conn.scalar(sa.select(Sequence.id))
    assert sequence_id is not None
    return engine, sequence_id


def load_subscribers(
    engine: Engine, sequence_id: int, *, start: int, count: int, due_every: int, now: datetime
) -> None:
    """Add subscribers numbered start..start+count-1; every `due_every`-th one (1 = all)
    is active with lesson 1 due a minute ago, the rest are not due."""
    rows = (_row(sequence_id, i, due_every, now) for i in range(start, start + count))
    _copy_or_insert(engine, Subscriber.__table__, COLUMNS, rows)


def load_sent_deliveries(engine: Engine, sequence_id: int, *, after: int) -> int:
    """One sent step-1 delivery for every subscriber past pending whose id is above
    `after` (the dashboard's funnel); returns how many deliveries there are now."""
    with engine.begin() as conn:
        step_id = conn.scalar(
            sa.select(Step.id).where(Step.sequence_id == sequence_id, Step.number == 1)
        )
        conn.execute(
            sa.insert(Delivery.__table__).from_select(
                DELIVERY_COLUMNS,
                sa.select(
                    Subscriber.id,
                    sa.literal(DeliveryKind.STEP.value),
                    sa.literal(step_id),
                    sa.literal(DeliveryStatus.SENT.value),
                    sa.literal(1),
                    Subscriber.created_at,
                    Subscriber.created_at,
                    Subscriber.created_at,
                ).where(Subscriber.status != "pending", Subscriber.id > after),
            )
        )
        count = conn.scalar(sa.select(sa.func.count()).select_from(Delivery))
    return int(count or 0)


def load_consent_events(engine: Engine, *, after: int) -> None:
    """A signup event for every subscriber whose id is above `after`, and a confirmation
    for each confirmed one: the dashboard counts signups and confirmations from them."""
    events = ConsentEvent.__table__
    signup = events.alias("signup")
    with engine.begin() as conn:
        conn.execute(
            sa.insert(events).from_select(
                ("subscriber_id", "kind", "occurred_at"),
                sa.select(
                    Subscriber.id, sa.literal(ConsentEventKind.SIGNUP.value), Subscriber.created_at
                ).where(Subscriber.id > after),
            )
        )
        conn.execute(
            sa.insert(events).from_select(
                ("subscriber_id", "kind", "signup_id", "occurred_at"),
                sa.select(
                    Subscriber.id,
                    sa.literal(ConsentEventKind.CONFIRM.value),
                    signup.c.id,
                    Subscriber.confirmed_at,
                )
                .join(signup, signup.c.subscriber_id == Subscriber.id)
                .where(Subscriber.id > after, Subscriber.confirmed_at.is_not(None)),
            )
        )


def analyse(engine: Engine) -> None:
    """Refresh the planner's statistics after a bulk load, as autovacuum would."""
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")


def _row(sequence_id: int, i: int, due_every: int, now: datetime) -> tuple[object, ...]:
    created = now - timedelta(minutes=(i * 7) % (60 * 24 * 60))
    zone = ZONES[i % len(ZONES)]
    if i % due_every == 0:
        status, step, next_at = "active", 1, now - timedelta(minutes=1)
    else:
        status = STATUS_MIX[i % len(STATUS_MIX)]
        step = 1 + i % 10 if status == "active" else None
        next_at = now + timedelta(minutes=1 + i % (24 * 60)) if status == "active" else None
    confirmed = None if status == "pending" else created + timedelta(minutes=5)
    ended = now - timedelta(days=1) if status in ("completed", "unsubscribed") else None
    paused = next_at if status == "active" and i % due_every and i % PAUSED_EVERY == 0 else None
    if paused is not None:
        next_at = now - timedelta(minutes=1 + i % (6 * 24 * 60))
    return (
        sequence_id,
        f"reader{i}@example.com",
        f"Reader {i}",
        zone,
        8,
        status,
        step,
        next_at,
        created,
        created,
        confirmed,
        None,
        ended,
        paused,
    )


def _copy_or_insert(
    engine: Engine, table: sa.Table, columns: tuple[str, ...], rows: Iterator[tuple[object, ...]]
) -> None:
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            cursor = conn.connection.cursor()
            with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        return
    statement = sa.insert(table)
    with engine.begin() as conn:
        while chunk := list(itertools.islice(rows, CHUNK)):
            conn.execute(statement, [dict(zip(columns, row, strict=True)) for row in chunk])

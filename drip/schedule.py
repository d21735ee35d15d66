"""Turning a subscriber's place in the series into delivery rows.

`issue_next` is the one place a step delivery is created and the subscriber moved on,
used both by confirmation (the welcome, at once) and by the scheduler (each lesson when
it falls due). The delivery insert ignores a duplicate (subscriber, step), so running it
twice for the same step can never produce a second email.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from drip import timing
from drip.models import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Step,
    Subscriber,
    SubscriberStatus,
)


def steps_of(session: Session, sequence_id: int) -> list[Step]:
    return list(
        session.scalars(
            sa.select(Step).where(Step.sequence_id == sequence_id).order_by(Step.number)
        )
    )


def issue_next(
    session: Session, subscriber: Subscriber, steps: list[Step], now: datetime
) -> int | None:
    """Create the delivery for the subscriber's due step and schedule the one after it.

    Returns the new delivery's id, or None when there was nothing (left) to create.
    """
    row = _advance(subscriber, steps, now)
    if row is None:
        return None
    return session.connection().scalar(_insert(session, [row]))


def issue_many(
    session: Session, subscribers: list[Subscriber], steps: dict[int, list[Step]], now: datetime
) -> list[int]:
    """`issue_next` for a batch of due subscribers (a scheduler pass): the new deliveries
    go in as one INSERT, not one round trip per subscriber. `steps` maps each series id
    to its steps."""
    rows = [_advance(subscriber, steps[subscriber.sequence_id], now) for subscriber in subscribers]
    planned = [row for row in rows if row is not None]
    if not planned:
        return []
    return list(session.connection().scalars(_insert(session, planned)))


def _advance(subscriber: Subscriber, steps: list[Step], now: datetime) -> dict[str, object] | None:
    """Move the subscriber past its due step and schedule the one after it; the delivery
    row to insert for the due step, or None when nothing goes out today (or ever again)."""
    due_at = subscriber.next_send_at or now
    first = subscriber.next_step
    remaining = [s for s in steps if first is not None and s.number >= first]
    if not remaining:
        subscriber.status = SubscriberStatus.COMPLETED
        subscriber.ended_at = now
        subscriber.next_step = None
        subscriber.next_send_at = None
        return None
    if _sent_a_lesson_today(subscriber, now):
        subscriber.next_send_at = send_hour_after(subscriber, now)
        return None
    step, following = remaining[0], remaining[1] if len(remaining) > 1 else None
    if following is None:
        subscriber.next_step = None
        subscriber.next_send_at = None
    else:
        subscriber.next_step = following.number
        subscriber.next_send_at = timing.next_send_at(
            due_at=due_at,
            now=now,
            day_gap=following.day_offset - step.day_offset,
            hour=subscriber.send_hour,
            tz=timing.zone(subscriber.timezone),
        )
    return _delivery_row(subscriber.id, DeliveryKind.STEP, step.id, now, due_at)


def lesson_sent(subscriber: Subscriber, delivery: Delivery, now: datetime) -> None:
    """Note that a lesson went out at `now`; if it went out late, the next one waits a full
    day after it (drip.timing.catch_up). Applied when the send is recorded, not when the
    lesson was issued, because retries and worker outages make it late too."""
    subscriber.last_sent_at = now
    if subscriber.next_send_at is not None and delivery.due_at is not None:
        subscriber.next_send_at = timing.catch_up(
            subscriber.next_send_at, due_at=delivery.due_at, sent_at=now
        )


def send_hour_after(subscriber: Subscriber, now: datetime, *, days: int = 1) -> datetime:
    """The subscriber's send hour, `days` local days after today in their timezone."""
    tz = timing.zone(subscriber.timezone)
    return timing.at_send_hour(
        timing.local_date(now, tz) + timedelta(days=days), subscriber.send_hour, tz
    )


def _sent_a_lesson_today(subscriber: Subscriber, now: datetime) -> bool:
    """One email of the series per local day, even when a late one went out this afternoon."""
    if subscriber.last_sent_at is None:
        return False
    tz = timing.zone(subscriber.timezone)
    return timing.local_date(subscriber.last_sent_at, tz) >= timing.local_date(now, tz)


def insert_delivery(
    session: Session,
    *,
    subscriber_id: int,
    kind: DeliveryKind,
    step_id: int | None,
    now: datetime,
) -> int | None:
    """INSERT ... ON CONFLICT DO NOTHING: the id of the new row, or None if it existed.
    For confirmation and privacy emails; lessons go through `issue_next`/`issue_many`."""
    row = _delivery_row(subscriber_id, kind, step_id, now)
    return session.connection().scalar(_insert(session, [row]))


def _delivery_row(
    subscriber_id: int,
    kind: DeliveryKind,
    step_id: int | None,
    now: datetime,
    due_at: datetime | None = None,
) -> dict[str, object]:
    return {
        "due_at": due_at,
        "subscriber_id": subscriber_id,
        "kind": kind,
        "step_id": step_id,
        "status": DeliveryStatus.QUEUED,
        "attempts": 0,
        "created_at": now,
        "queued_at": now,
    }


def _insert(session: Session, rows: list[dict[str, object]]) -> sa.Insert:
    """One INSERT of `rows` that skips any (subscriber, step) already issued, returning
    the new ids. Run on the connection, not the session: an ORM execute would autoflush
    first, writing each pending subscriber UPDATE on its own; left to the commit they go
    out together (bench/scheduler.py)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(Delivery)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["subscriber_id", "step_id"])
        .returning(Delivery.id)
    )


def resume_point(session: Session, subscriber: Subscriber, steps: list[Step]) -> int | None:
    """Where a returning subscriber resumes: each step is sent to a subscriber only once
    (deliveries are unique per subscriber and step), so someone who unsubscribed after
    lesson 4 and signs up again continues with lesson 5. Steps cancelled unsent are
    forgotten so they can be issued again."""
    session.execute(
        sa.delete(Delivery).where(
            Delivery.subscriber_id == subscriber.id,
            Delivery.kind == DeliveryKind.STEP,
            Delivery.status == DeliveryStatus.CANCELLED,
        )
    )
    issued = set(
        session.scalars(
            sa.select(Step.number)
            .join(Delivery, Delivery.step_id == Step.id)
            .where(Delivery.subscriber_id == subscriber.id)
        )
    )
    return next((s.number for s in steps if s.number not in issued), None)

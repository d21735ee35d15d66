"""Turning a subscriber's place in the series into delivery rows.

`issue_next` is the one place a step delivery is created and the subscriber moved on,
used both by confirmation (the welcome, at once) and by the scheduler (each lesson when
it falls due). The delivery insert ignores a duplicate (subscriber, step), so running it
twice for the same step can never produce a second email.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drip import timing
from drip.batch_sql import batch_statements, delivery_insert
from drip.models import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Step,
    Subscriber,
    SubscriberStatus,
)


class Place(Protocol):
    """What deciding a subscriber's next step reads: a Subscriber, or one of the plain
    rows the scheduler selects (`PLACE_COLUMNS`) so a pass loads no ORM objects."""

    id: int
    sequence_id: int
    status: SubscriberStatus
    next_step: int | None
    next_send_at: datetime | None
    last_sent_at: datetime | None
    ended_at: datetime | None
    timezone: str
    send_hour: int


PLACE_COLUMNS = (
    Subscriber.id,
    Subscriber.sequence_id,
    Subscriber.status,
    Subscriber.next_step,
    Subscriber.next_send_at,
    Subscriber.last_sent_at,
    Subscriber.ended_at,
    Subscriber.timezone,
    Subscriber.send_hour,
)


@dataclass(frozen=True)
class Advance:
    """A subscriber's schedule after its due step, and the delivery row to insert for it
    (None when nothing goes out today, or ever again)."""

    status: SubscriberStatus
    next_step: int | None
    next_send_at: datetime | None
    ended_at: datetime | None
    delivery: dict[str, object] | None

    def columns(self) -> dict[str, object]:
        return {
            "status": self.status,
            "next_step": self.next_step,
            "next_send_at": self.next_send_at,
            "ended_at": self.ended_at,
        }


_number = attrgetter("number")


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
    advance = _advance(subscriber, steps, now)
    for name, value in advance.columns().items():
        setattr(subscriber, name, value)
    if advance.delivery is None:
        return None
    return session.connection().scalar(_insert(session), advance.delivery)


def issue_many(
    session: Session, places: Sequence[Place], steps: dict[int, list[Step]], now: datetime
) -> list[int]:
    """`issue_next` for a batch of due subscribers (a scheduler pass), read as plain rows:
    one UPDATE moves them all on and one INSERT creates their deliveries, instead of
    loading, tracking and flushing an ORM object per subscriber. `steps` maps each series
    id to its steps."""
    advances = [(place.id, _advance(place, steps[place.sequence_id], now)) for place in places]
    if not advances:
        return []
    connection = session.connection()
    batch = batch_statements(connection.dialect.name)
    connection.execute(
        batch.advance, batch.bind([{"place_id": id, **a.columns()} for id, a in advances])
    )
    planned = [a.delivery for _, a in advances if a.delivery is not None]
    if not planned:
        return []
    return list(connection.scalars(batch.insert, batch.bind_issued(planned)))


def _advance(place: Place, steps: list[Step], now: datetime) -> Advance:
    """The subscriber's schedule once past its due step, and the delivery row for that
    step unless nothing goes out today (or ever again). Reads `place`, changes nothing.
    `steps` are in order (steps_of): the due one is found by bisection, since a pass
    runs this for every due subscriber."""
    due_at = place.next_send_at or now
    first = place.next_step
    at = len(steps) if first is None else bisect_left(steps, first, key=_number)
    if at == len(steps):
        return Advance(SubscriberStatus.COMPLETED, None, None, now, None)
    if _sent_a_lesson_today(place, now):
        return Advance(
            place.status, place.next_step, send_hour_after(place, now), place.ended_at, None
        )
    step, following = steps[at], steps[at + 1] if at + 1 < len(steps) else None
    delivery = _delivery_row(place.id, DeliveryKind.STEP, step.id, now, due_at)
    if following is None:
        return Advance(place.status, None, None, place.ended_at, delivery)
    next_send_at = timing.next_send_at(
        due_at=due_at,
        now=now,
        day_gap=following.day_offset - step.day_offset,
        hour=place.send_hour,
        tz=timing.zone(place.timezone),
    )
    return Advance(place.status, following.number, next_send_at, place.ended_at, delivery)


def lesson_sent(subscriber: Place, due_at: datetime | None, now: datetime) -> dict[str, object]:
    """The subscriber's columns once a lesson due at `due_at` went out at `now`; if it went
    out late, the next one waits a full day after it (drip.timing.catch_up). Applied when
    the send is recorded, not when the lesson was issued, because retries and worker
    outages make it late too."""
    changes: dict[str, object] = {"last_sent_at": now}
    if subscriber.next_send_at is not None and due_at is not None:
        changes["next_send_at"] = timing.catch_up(
            subscriber.next_send_at, due_at=due_at, sent_at=now
        )
    return changes


def send_hour_after(subscriber: Place, now: datetime, *, days: int = 1) -> datetime:
    """The subscriber's send hour, `days` local days after today in their timezone."""
    tz = timing.zone(subscriber.timezone)
    return timing.at_send_hour(
        timing.local_date(now, tz) + timedelta(days=days), subscriber.send_hour, tz
    )


def next_send_hour(subscriber: Place, now: datetime) -> datetime:
    """The subscriber's send hour still to come: today's if it has not passed, else
    tomorrow's."""
    today = send_hour_after(subscriber, now, days=0)
    return today if today > now else send_hour_after(subscriber, now)


def series_next_send_at(session: Session, subscriber: Subscriber) -> datetime | None:
    """When the series itself has the subscriber's next step, whatever a pause did to
    next_send_at: as issuing their last lesson set it (the day gap after that one was
    due, at their send hour), and a full day after it went out if it went out late, as
    recording the send did. None without a lesson issued or a next step."""
    last = session.execute(
        sa.select(Delivery.due_at, Delivery.created_at, Delivery.sent_at, Step.day_offset)
        .join(Step, Step.id == Delivery.step_id)
        .where(Delivery.subscriber_id == subscriber.id, Delivery.kind == DeliveryKind.STEP)
        .order_by(Delivery.id.desc())
        .limit(1)
    ).first()
    following = session.scalar(
        sa.select(Step.day_offset).where(
            Step.sequence_id == subscriber.sequence_id, Step.number == subscriber.next_step
        )
    )
    if last is None or following is None:
        return None
    due_at = last.due_at or last.created_at
    planned = timing.next_send_at(
        due_at=due_at,
        now=last.created_at,
        day_gap=following - last.day_offset,
        hour=subscriber.send_hour,
        tz=timing.zone(subscriber.timezone),
    )
    if last.sent_at is None:
        return planned
    return timing.catch_up(planned, due_at=due_at, sent_at=last.sent_at)


def _sent_a_lesson_today(subscriber: Place, now: datetime) -> bool:
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
    return session.connection().scalar(_insert(session), row)


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


def _insert(session: Session) -> sa.Insert:
    return delivery_insert(session.get_bind().dialect.name)


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

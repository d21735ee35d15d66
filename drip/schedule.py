"""Turning a subscriber's place in the series into delivery rows.

`issue_next` is the one place a step delivery is created and the subscriber moved on,
used both by confirmation (the welcome, at once) and by the scheduler (each lesson when
it falls due). The delivery insert ignores a duplicate (subscriber, step), so running it
twice for the same step can never produce a second email.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Protocol
from zoneinfo import ZoneInfo

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

log = logging.getLogger(__name__)


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


def steps_of(session: Session, sequence_id: int, *, shared: bool = False) -> list[Step]:
    """The series' steps in order. `shared` (a scheduler pass, which issues them) holds
    each with FOR KEY SHARE until the transaction ends, as inserting a delivery for one
    would: a removal of the last lesson (drip.lessons.remove_step) waits for the pass,
    and a pass that comes during a removal waits for it and reads the steps without the
    removed one, rather than issue a lesson that is gone (a foreign-key violation that
    failed the whole pass)."""
    query = sa.select(Step).where(Step.sequence_id == sequence_id).order_by(Step.number)
    if shared:
        query = query.with_for_update(read=True, key_share=True)
    return list(session.scalars(query))


def issue_next(
    session: Session,
    subscriber: Subscriber,
    steps: list[Step],
    now: datetime,
    *,
    default_timezone: str,
) -> int | None:
    """Create the delivery for the subscriber's due step and schedule the one after it.
    A zone this server does not know reads as `default_timezone` (zone_of), as in a pass.

    Returns the new delivery's id, or None when there was nothing (left) to create.
    """
    advance = _advance(subscriber, steps, now, zone_of(subscriber, default_timezone))
    for name, value in advance.columns().items():
        setattr(subscriber, name, value)
    if advance.delivery is None:
        return None
    return session.connection().scalar(_insert(session), advance.delivery)


def issue_many(
    session: Session,
    places: Sequence[Place],
    steps: dict[int, list[Step]],
    now: datetime,
    *,
    default_timezone: str,
) -> list[int]:
    """`issue_next` for a batch of due subscribers (a scheduler pass), read as plain rows:
    one UPDATE moves them all on and one INSERT creates their deliveries, instead of
    loading, tracking and flushing an ORM object per subscriber. `steps` maps each series
    id to its steps; a zone this server does not know reads as `default_timezone`
    (zone_of)."""
    advances = [
        (place.id, _advance(place, steps[place.sequence_id], now, zone_of(place, default_timezone)))
        for place in places
    ]
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


def _advance(place: Place, steps: list[Step], now: datetime, tz: ZoneInfo) -> Advance:
    """The subscriber's schedule once past its due step, and the delivery row for that
    step unless nothing goes out today (or ever again). Reads `place`, changes nothing.
    `steps` are in order (steps_of): the due one is found by bisection, since a pass
    runs this for every due subscriber. `tz` is the subscriber's zone.

    No paused subscriber is due: a pass ends a pause that is over before it claims, and
    moves next_send_at to the pause's end (drip.subscriptions.end_pauses)."""
    due_at = place.next_send_at or now
    first = place.next_step
    at = len(steps) if first is None else bisect_left(steps, first, key=_number)
    if at == len(steps):
        return Advance(SubscriberStatus.COMPLETED, None, None, now, None)
    if _sent_a_lesson_today(place, now, tz):
        tomorrow = timing.send_hour_after(now, hour=place.send_hour, tz=tz)
        return Advance(place.status, place.next_step, tomorrow, place.ended_at, None)
    step, following = steps[at], steps[at + 1] if at + 1 < len(steps) else None
    delivery = _delivery_row(place.id, DeliveryKind.STEP, step.id, now, due_at)
    if following is None:
        return Advance(place.status, None, None, place.ended_at, delivery)
    next_send_at = timing.next_send_at(
        due_at=due_at,
        now=now,
        day_gap=following.day_offset - step.day_offset,
        hour=place.send_hour,
        tz=tz,
    )
    return Advance(place.status, following.number, next_send_at, place.ended_at, delivery)


def lesson_sent(
    connection: sa.Connection,
    subscriber: Place,
    *,
    step_id: int | None,
    due_at: datetime | None,
    now: datetime,
    default_timezone: str,
) -> dict[str, object]:
    """The subscriber's columns once the lesson of `step_id`, due at `due_at`, went out at
    `now`; if it went out late, the next one waits for the first send hour its planned
    gap (a day or more) after it (drip.timing.catch_up). Applied when the send is
    recorded, not when the lesson was issued, because retries and worker outages make it
    late too. A zone this server does not know reads as `default_timezone` (zone_of).

    Only the lesson right before the subscriber's next step sets the next one's time. An
    older one sent late is an admin's "Send again" of a lesson that failed days ago: the
    lessons after it went out meanwhile, and the next keeps its time. The steps are read
    only for a late lesson, so sending on time costs no query."""
    changes: dict[str, object] = {"last_sent_at": now}
    next_due = subscriber.next_send_at
    if next_due is None or due_at is None or not timing.overdue(due_at, now):
        return changes
    gap = _days_to_next(connection, subscriber, step_id)
    if gap is not None:
        changes["next_send_at"] = timing.catch_up(
            next_due,
            sent_at=now,
            day_gap=gap,
            hour=subscriber.send_hour,
            tz=zone_of(subscriber, default_timezone),
        )
    return changes


def last_lesson(runner: sa.Connection | Session, subscriber_id: int) -> DeliveryStatus | None:
    """What became of the lesson issued to the subscriber last (None before any). Once
    nothing more is scheduled for them, it tells whether they have had the series (sent),
    are about to (queued, sending), or did not get its last lesson (failed, cancelled),
    which an admin may send again (drip.subscriber_actions)."""
    return runner.scalar(_LAST_LESSON, {"subscriber_id": subscriber_id})


_LAST_LESSON = (
    sa.select(Delivery.status)
    .where(
        Delivery.subscriber_id == sa.bindparam("subscriber_id"),
        Delivery.kind == DeliveryKind.STEP,
    )
    .order_by(Delivery.id.desc())
    .limit(1)
)


def _days_to_next(connection: sa.Connection, subscriber: Place, step_id: int | None) -> int | None:
    """The days the series plans between the step of `step_id` and the subscriber's next
    step, if `step_id` is the one right before it; None otherwise. Step numbers need not
    be consecutive: a series file may skip some."""
    if subscriber.next_step is None or step_id is None:
        return None
    rows = connection.execute(
        _UP_TO_NEXT, {"sequence_id": subscriber.sequence_id, "number": subscriber.next_step}
    ).all()
    if len(rows) == 2 and rows[0].number == subscriber.next_step and rows[1].id == step_id:
        return rows[0].day_offset - rows[1].day_offset
    return None


_UP_TO_NEXT = (
    sa.select(Step.id, Step.number, Step.day_offset)
    .where(Step.sequence_id == sa.bindparam("sequence_id"), Step.number <= sa.bindparam("number"))
    .order_by(Step.number.desc())
    .limit(2)
)


def follow_new_day(
    session: Session, step: Step, old_day: int, *, now: datetime, default_timezone: str
) -> int:
    """Move the next email of every reader waiting for `step` by as many local days as
    the writer moved the step, from `old_day` to its day now; returns how many moved.

    A writer who makes "Day 5" "Day 6" means readers who have not had it yet to get it on
    day 6. Their next_send_at was worked out from the old day when the lesson before it
    was issued, so without this they would get it on day 5 anyway, and only readers
    reaching that lesson later would follow the new day. Each keeps their own hour, and
    whatever an outage added; a pause is kept apart (paused_until) and still holds the
    lesson until it ends. A day that is already past comes at their next
    send hour (the one-a-day rule still holds: drip.schedule._advance). Readers who had
    the step are left alone: the lessons after it keep their days, counted from the
    reader's confirmation. A zone this server does not know reads as `default_timezone`
    (zone_of)."""
    shift = step.day_offset - old_day
    if shift == 0:
        return 0
    waiting = session.execute(
        sa.select(*PLACE_COLUMNS).where(
            Subscriber.sequence_id == step.sequence_id,
            Subscriber.next_step == step.number,
            Subscriber.status == SubscriberStatus.ACTIVE,
            Subscriber.next_send_at.is_not(None),
        )
    ).all()
    moves = [
        {
            "place_id": place.id,
            "number": step.number,
            "was_due": place.next_send_at,
            "due": _moved(
                place.next_send_at,
                shift,
                now,
                hour=place.send_hour,
                tz=zone_of(place, default_timezone),
            ),
        }
        for place in waiting
    ]
    if moves:
        session.execute(_MOVE, moves)
    return len(moves)


_MOVE = (
    sa.update(Subscriber.__table__)
    .where(
        Subscriber.id == sa.bindparam("place_id"),
        Subscriber.next_step == sa.bindparam("number"),
        Subscriber.next_send_at == sa.bindparam("was_due"),
    )
    .values(next_send_at=sa.bindparam("due"))
)
"""Only while the reader still waits for the step at the time read: a scheduler pass
that issued it meanwhile has timed the next lesson from the new day already."""


def _moved(due: datetime, shift: int, now: datetime, *, hour: int, tz: ZoneInfo) -> datetime:
    """`due` moved `shift` local days later (earlier, if negative), at the send hour
    `hour`, and no earlier than the first send hour from `now`."""
    day = timing.local_date(due, tz) + timedelta(days=shift)
    return max(timing.at_send_hour(day, hour, tz), timing.first_send_hour(now, hour=hour, tz=tz))


def send_hour_after(
    subscriber: Place, now: datetime, *, default_timezone: str, days: int = 1
) -> datetime:
    """The subscriber's send hour, `days` local days after today in their timezone (or
    in `default_timezone` if this server does not know theirs: zone_of)."""
    tz = zone_of(subscriber, default_timezone)
    return timing.send_hour_after(now, hour=subscriber.send_hour, tz=tz, days=days)


def zone_of(place: Place, default_timezone: str) -> ZoneInfo:
    """The subscriber's zone, or `default_timezone` (DRIP_DEFAULT_TIMEZONE) when this
    server's tz database does not know it: one a newer tz database accepted at signup,
    or a row edited by hand. Raising instead would stop the whole scheduler pass, for
    every subscriber, at that one row. The warning names the subscriber by id, never by
    address, and the zone, so an operator sees that tzdata wants updating."""
    try:
        return timing.zone(place.timezone)
    except ValueError:
        log.warning(
            "timezone_unknown subscriber %d timezone=%r: not in this server's tz database; "
            "scheduling by DRIP_DEFAULT_TIMEZONE %s",
            place.id,
            place.timezone[:64],
            default_timezone,
            extra={"event": "timezone_unknown", "subscriber_id": place.id},
        )
        return timing.zone(default_timezone)


def next_send_hour(subscriber: Place, now: datetime, *, default_timezone: str) -> datetime:
    """The subscriber's send hour still to come: today's if it has not passed, else
    tomorrow's."""
    today = send_hour_after(subscriber, now, default_timezone=default_timezone, days=0)
    if today > now:
        return today
    return send_hour_after(subscriber, now, default_timezone=default_timezone)


def _sent_a_lesson_today(subscriber: Place, now: datetime, tz: ZoneInfo) -> bool:
    """One email of the series per local day, even when a late one went out this afternoon."""
    if subscriber.last_sent_at is None:
        return False
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

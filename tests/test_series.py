"""The whole series, end to end: real scheduler, real Dramatiq worker on the embedded Redis,
real SMTP server, driven day by day by the injected clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from itertools import pairwise
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from drip.db import transaction
from drip.lessons import set_day
from drip.models import (
    ConsentMethod,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Step,
    Subscriber,
    SubscriberStatus,
)
from drip.subscriber_actions import resend
from drip.subscriptions import unsubscribe
from tests.helpers import System

HALF_HOUR = timedelta(minutes=30)


def run_until(
    system: System, end: datetime, events: dict[datetime, Callable[[], object]] | None = None
) -> None:
    """Move the clock in half-hour steps, running one scheduler pass (and the worker) at
    each where a pass has something to do."""
    events = events or {}
    while system.clock.now() <= end:
        if system.clock.now() in events:
            events[system.clock.now()]()
        if not idle(system) and (system.tick().issued or system.enqueued):
            system.drain()
            system.enqueued.clear()
        system.clock.advance(HALF_HOUR)


def idle(system: System) -> bool:
    """Nobody is due and no email waits or is in flight: a pass now could only tidy up
    (nothing these tests look at), so the most of a simulated fortnight is skipped."""
    unsettled = Delivery.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.SENDING])
    with transaction(system.sessions) as session:
        busy = session.scalar(
            sa.select(
                sa.exists().where(unsettled)
                | sa.exists().where(Subscriber.next_send_at <= system.clock.now())
            )
        )
    return not busy


def step_of(system: System, msg: EmailMessage) -> int:
    """Which step a received message is, looked up by its Message-ID."""
    with transaction(system.sessions) as session:
        number = session.scalar(
            sa.select(Step.number)
            .join(Delivery, Delivery.step_id == Step.id)
            .where(Delivery.message_id == msg["Message-ID"])
        )
    return -1 if number is None else number


def sent_at(msg: EmailMessage) -> datetime:
    return parsedate_to_datetime(str(msg["Date"])).astimezone(UTC)


def lessons_received(system: System, address: str) -> list[tuple[int, datetime]]:
    return [(step_of(system, m), sent_at(m)) for m in system.smtp.to(address)][1:]


def test_every_subscriber_gets_each_lesson_once_a_day_at_their_local_hour(
    system: System, start: datetime
) -> None:
    people = {
        # Berlin leaves summer time on day 1, New York on day 8; Tokyo has none and
        # confirms at 23:30 local time, half a day before its first lesson is due.
        "ana@example.com": ("Europe/Berlin", start),
        "ben@example.com": ("America/New_York", start + timedelta(hours=10)),
        "kim@example.com": ("Asia/Tokyo", start + timedelta(hours=8, minutes=30)),
        "uma@example.com": ("UTC", start + timedelta(hours=17)),
    }
    for address, (tz, _) in people.items():
        system.signup(address, timezone=tz)
    system.drain()
    confirmations = {
        when: (lambda a=address: system.confirm(a)) for address, (_, when) in people.items()
    }

    run_until(system, start + timedelta(days=13), confirmations)

    for address, (tz, confirmed_at) in people.items():
        local = ZoneInfo(tz)
        received = lessons_received(system, address)
        assert [number for number, _ in received] == list(range(11)), address
        (_, welcome_at), *lessons = received
        assert welcome_at == confirmed_at
        first_day = confirmed_at.astimezone(local).date()
        for number, when in lessons:
            assert when.astimezone(local).date() == first_day + timedelta(days=number), address
            assert when.astimezone(local).time().isoformat() == "08:00:00", (address, number)
        gaps = [b - a for (_, a), (_, b) in pairwise(received)]
        assert min(gaps) >= timedelta(hours=8), address
    with transaction(system.sessions) as session:
        statuses = set(session.scalars(sa.select(Subscriber.status)))
        undelivered = session.scalar(
            sa.select(sa.func.count()).where(Delivery.status != DeliveryStatus.SENT)
        )
    assert statuses == {SubscriberStatus.COMPLETED}
    assert undelivered == 0


def test_the_daylight_saving_change_moves_the_utc_hour_not_the_day(
    system: System, start: datetime
) -> None:
    system.signup("ana@example.com", timezone="Europe/Berlin")
    system.drain()
    system.confirm("ana@example.com")
    run_until(system, start + timedelta(days=2, hours=12))

    lessons = lessons_received(system, "ana@example.com")[1:]
    assert [(n, when.isoformat()) for n, when in lessons] == [
        (1, "2026-10-25T07:00:00+00:00"),  # 08:00 CET, the morning the clocks went back
        (2, "2026-10-26T07:00:00+00:00"),
    ]


def test_unsubscribing_mid_series_stops_the_rest_even_what_is_already_queued(
    system: System, start: datetime
) -> None:
    system.signup("ana@example.com")
    system.drain()
    system.confirm("ana@example.com")
    run_until(system, start + timedelta(days=3, hours=3))
    assert [n for n, _ in lessons_received(system, "ana@example.com")] == [0, 1, 2, 3]

    system.clock.set(datetime(2026, 10, 28, 8, 0, tzinfo=UTC))
    system.stop_worker()  # lesson 4 must still be waiting when Ana unsubscribes
    queued = system.tick().issued
    assert len(queued) == 1, "lesson 4 is in Redis, not yet sent"
    with transaction(system.sessions) as session:
        unsubscribe(
            session,
            system.subscriber("ana@example.com").id,
            system.clock.now(),
            method=ConsentMethod.ADMIN,
        )
    system.drain()
    run_until(system, start + timedelta(days=12))

    assert [n for n, _ in lessons_received(system, "ana@example.com")] == [0, 1, 2, 3]
    with transaction(system.sessions) as session:
        lesson_4 = session.get_one(Delivery, queued[0])
        assert lesson_4.status == DeliveryStatus.CANCELLED
        assert (
            session.get_one(Subscriber, lesson_4.subscriber_id).status
            == SubscriberStatus.UNSUBSCRIBED
        )


def test_a_hard_bounce_stops_the_series_for_that_address_only(
    system: System, start: datetime
) -> None:
    for address in ("bob@example.com", "cat@example.com"):
        system.signup(address)
    system.drain()
    for address in ("bob@example.com", "cat@example.com"):
        system.confirm(address)
    run_until(system, start + timedelta(days=1, hours=3))
    system.smtp.script("bob@example.com", "550 5.1.1 No such user here")

    run_until(system, start + timedelta(days=12))

    assert [n for n, _ in lessons_received(system, "bob@example.com")] == [0, 1]
    assert len(lessons_received(system, "cat@example.com")) == 11
    with transaction(system.sessions) as session:
        bob = system.subscriber("bob@example.com", session=session)
        assert bob.status == SubscriberStatus.BOUNCED
        failed = session.scalars(
            sa.select(Delivery).where(Delivery.status == DeliveryStatus.FAILED)
        ).all()
        assert [(d.subscriber_id, d.kind) for d in failed] == [(bob.id, DeliveryKind.STEP)]
        assert "550" in (failed[0].last_error or "")


def test_lessons_missed_during_an_outage_resume_one_a_day(system: System, start: datetime) -> None:
    system.signup("ana@example.com")
    system.drain()
    system.confirm("ana@example.com")
    run_until(system, start + timedelta(days=2, hours=3))
    system.clock.set(start + timedelta(days=5, hours=5))  # three days with no scheduler at all

    run_until(system, start + timedelta(days=14))

    lessons = lessons_received(system, "ana@example.com")[1:]
    days = [when.date() for _, when in lessons]
    assert [n for n, _ in lessons] == list(range(1, 11))
    assert len(set(days)) == len(days), "never two lessons on one day"
    assert days[2] == date(2026, 10, 29)


def test_lessons_held_up_by_a_worker_outage_do_not_arrive_together(
    system: System, start: datetime
) -> None:
    system.join("ana@example.com")
    system.stop_worker()
    while system.clock.now() < start + timedelta(days=3, hours=3):  # scheduler runs, workers down
        system.tick()
        system.clock.advance(HALF_HOUR)
    system.broker.client.flushall()

    run_until(system, start + timedelta(days=14))

    lessons = lessons_received(system, "ana@example.com")[1:]
    assert [n for n, _ in lessons] == list(range(1, 11))
    days = [when.date() for _, when in lessons]
    assert len(set(days)) == len(days), "never two lessons on one day"


def test_a_lesson_caught_up_in_the_evening_is_followed_a_full_day_later_at_the_send_hour(
    system: System, start: datetime
) -> None:
    system.signup("ana@example.com", timezone="UTC")
    system.drain()
    system.confirm("ana@example.com")
    run_until(system, start + timedelta(days=2, hours=3))
    system.clock.set(datetime(2026, 10, 29, 20, 0, tzinfo=UTC))  # scheduler down three days

    run_until(system, start + timedelta(days=9, hours=3))

    lessons = lessons_received(system, "ana@example.com")[1:]
    assert [(n, when.isoformat()) for n, when in lessons[2:]] == [
        (3, "2026-10-29T20:00:00+00:00"),  # 60 hours late
        (4, "2026-10-31T08:00:00+00:00"),  # not at 08:00 the morning after, nor at 20:00
        (5, "2026-11-01T08:00:00+00:00"),
        (6, "2026-11-02T08:00:00+00:00"),
    ]


def test_sending_an_old_failed_lesson_again_leaves_the_next_lesson_at_its_hour(
    system: System, start: datetime
) -> None:
    """Lesson 1 is refused for a day and fails; lessons 2 and 3 follow. An admin's "Send
    again" of lesson 1 two days late is not the catch-up of a late lesson: lesson 4 keeps
    its 08:00 the next morning instead of moving to the hour of the resend."""
    system.join("ana@example.com")
    system.smtp.script("ana@example.com", *["451 4.2.0 Mailbox busy"] * 8)

    def send_lesson_1_again() -> None:
        with transaction(system.sessions) as session:
            ana = system.subscriber("ana@example.com", session=session)
            failed = session.scalars(
                sa.select(Delivery.id).where(
                    Delivery.subscriber_id == ana.id, Delivery.status == DeliveryStatus.FAILED
                )
            ).one()
            resend(
                session, failed, ana.id, now=system.clock.now(), secret=system.settings.secret_key
            )
        system.enqueue([failed])
        system.drain()

    resent_at = datetime(2026, 10, 27, 15, 0, tzinfo=UTC)
    run_until(system, start + timedelta(days=5, hours=3), {resent_at: send_lesson_1_again})

    lessons = lessons_received(system, "ana@example.com")[1:]
    assert [n for n, _ in lessons] == [2, 3, 1, 4, 5]
    by_number = dict(lessons)
    assert by_number[1] == resent_at
    assert by_number[4] == datetime(2026, 10, 28, 8, 0, tzinfo=UTC)


def test_a_lesson_moved_to_a_later_day_reaches_the_readers_waiting_for_it_on_that_day(
    system: System, start: datetime
) -> None:
    """The writer moves lesson 10 from day 10 to day 12 while Ana waits for it and Bob,
    who joined a day later, for lesson 9. Ana's lesson 10 was timed from the old day
    when her lesson 9 went out; she gets it on day 12 all the same, as Bob does."""
    system.join("ana@example.com")

    def move_lesson_10() -> None:
        with transaction(system.sessions) as session:
            lesson_10 = session.scalars(sa.select(Step.id).where(Step.number == 10)).one()
            _, moved = set_day(
                session, lesson_10, 12, now=system.clock.now(), default_timezone="UTC"
            )
        assert moved == 1, "Ana; Bob is not waiting for lesson 10 yet"

    events = {
        start + timedelta(days=1): lambda: system.join("bob@example.com"),
        start + timedelta(days=9, hours=3): move_lesson_10,
    }
    run_until(system, start + timedelta(days=14), events)

    for address, joined in (("ana@example.com", 24), ("bob@example.com", 25)):
        lessons = dict(lessons_received(system, address))
        assert sorted(lessons) == list(range(11)), address
        assert lessons[9] == datetime(2026, 10, joined, 8, tzinfo=UTC) + timedelta(days=9)
        assert lessons[10] == datetime(2026, 10, joined, 8, tzinfo=UTC) + timedelta(days=12)

"""The scheduler pass: claims are exclusive, the sweeper recovers what Redis and dead
workers lose, and an unknown outcome is resent once and logged."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from drip import lessons, scheduler
from drip.db import SessionFactory, transaction
from drip.errors import InvalidInput
from drip.models import Delivery, DeliveryKind, Step, Subscriber, SubscriberStatus
from drip.scheduler import Enqueue, due_query, run_pass
from drip.sending import Outcome, send_delivery
from drip.subscriptions import (
    move_to_step,
    next_email_at,
    pause,
    pauses_over,
    resume,
    set_send_hour,
)
from drip.transports import Ready, Transport, go
from drip.wiring import make_engine
from tests.helpers import System, deadlocked_deletes, ended_long_ago, plan_of
from tests.test_intake import TIMEOUT, Racer
from tests.test_privacy import stop_after


class DiesAfterSending:
    """A transport whose worker is killed right after the SMTP server accepted the message."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner

    def send(self, raw: bytes, *, mail_from: str, rcpt_to: str, ready: Ready = go) -> None:
        self.inner.send(raw, mail_from=mail_from, rcpt_to=rcpt_to, ready=ready)
        raise SystemExit("worker killed")

    def idle(self) -> None:
        self.inner.idle()


def test_two_schedulers_at_once_never_create_or_send_a_delivery_twice(system: System) -> None:
    system.join_many(40)
    system.clock.advance(timedelta(days=1, hours=3))
    barrier = threading.Barrier(2)
    issued: list[list[int]] = [[], []]

    def scheduler(n: int) -> None:
        barrier.wait()
        for _ in range(3):
            issued[n] += run_pass(
                system.sessions,
                system.clock,
                system.enqueue,
                signups=system.enqueue_signups,
                batch_size=7,
                requeue_after=system.settings.requeue_after,
                pending_ttl=system.settings.pending_ttl,
                retention=system.settings.retention,
                secret=system.settings.secret_key,
                default_timezone=system.settings.default_timezone,
            ).issued

    threads = [threading.Thread(target=scheduler, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    system.drain()

    assert len(issued[0]) + len(issued[1]) == 40
    assert not set(issued[0]) & set(issued[1])
    with transaction(system.sessions) as session:
        per_subscriber = Counter(
            session.scalars(sa.select(Delivery.subscriber_id).where(Delivery.step_id.is_not(None)))
        )
    assert set(per_subscriber.values()) == {2}, "welcome and lesson 1, each once"
    sent = Counter(r.message["Message-ID"] for r in system.smtp.received)
    assert len(sent) == 40 * 3, "confirmation, welcome and lesson 1 for each"
    assert max(sent.values()) == 1


def _pass(system: System, *, enqueue: Enqueue | None = None, **options: object) -> list[int]:
    return run_pass(
        system.sessions,
        system.clock,
        enqueue or system.enqueue,
        signups=system.enqueue_signups,
        requeue_after=system.settings.requeue_after,
        pending_ttl=system.settings.pending_ttl,
        retention=system.settings.retention,
        secret=system.settings.secret_key,
        default_timezone=system.settings.default_timezone,
        **options,  # type: ignore[arg-type]
    ).issued


def test_a_pass_claims_in_two_transactions_at_once(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one claimer waits, before its transaction begins, the other claims every
    due subscriber; with one claimer at a time this pass would never end."""
    if _dialect(system) == "sqlite":
        pytest.skip("SQLite gets one claimer")
    system.join_many(6)
    system.clock.advance(timedelta(days=1, hours=3))
    claim_due, calls, rest_queued = scheduler.claim_due, itertools.count(), threading.Event()

    def claim_after_the_rest(session: Session, now: datetime, limit: int, **options: str) -> object:
        if next(calls) == 0:
            assert rest_queued.wait(60), "no other claimer ran while this one waited"
        return claim_due(session, now, limit, **options)

    def enqueue(delivery_ids: Iterable[int]) -> None:
        system.enqueue(delivery_ids)
        if len(system.enqueued) == 6:
            rest_queued.set()

    monkeypatch.setattr(scheduler, "claim_due", claim_after_the_rest)
    system.enqueued.clear()
    issued = _pass(system, batch_size=2, claimers=2, enqueue=enqueue)

    assert sorted(issued) == sorted(system.enqueued)
    assert len(set(issued)) == 6


def test_on_sqlite_a_pass_claims_in_one_transaction_at_a_time(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite writes one transaction at a time, so a second claimer would only wait."""
    if _dialect(system) != "sqlite":
        pytest.skip("PostgreSQL claims in two at once (above)")
    system.join_many(6)
    system.clock.advance(timedelta(days=1, hours=3))
    claim_due, threads = scheduler.claim_due, set()

    def noted(session: Session, now: datetime, limit: int, **options: str) -> object:
        threads.add(threading.get_ident())
        return claim_due(session, now, limit, **options)

    monkeypatch.setattr(scheduler, "claim_due", noted)

    assert len(_pass(system, batch_size=2, claimers=2)) == 6
    assert threads == {threading.get_ident()}


def _dialect(system: System) -> str:
    with transaction(system.sessions) as session:
        return session.get_bind().dialect.name


def test_claimers_share_the_room_a_paced_pass_has(system: System) -> None:
    system.join_many(12)
    system.stop_worker()  # what is issued stays in flight
    system.clock.advance(timedelta(days=1, hours=3))

    issued = _pass(system, batch_size=2, claimers=2, max_in_flight=5)

    assert len(issued) == 5, "five, not five for each claimer"
    assert len(_pass(system, batch_size=2, claimers=2, max_in_flight=5)) == 0, "5 in flight"


def test_a_paced_pass_over_its_cap_issues_nothing_and_still_sweeps(system: System) -> None:
    """More in flight than the cap (a lowered DRIP_SEND_RATE, confirmations, retries):
    the room is below zero, which must mean none, not a negative LIMIT."""
    system.join_many(6)
    system.stop_worker()
    system.clock.advance(timedelta(days=1, hours=3))
    assert len(_pass(system, batch_size=2, claimers=2, max_in_flight=5)) == 5
    system.broker.client.flushall()  # Redis lost them: the sweep must still run
    system.clock.advance(system.settings.requeue_after)

    result = run_pass(
        system.sessions,
        system.clock,
        system.enqueue,
        signups=system.enqueue_signups,
        batch_size=2,
        requeue_after=system.settings.requeue_after,
        pending_ttl=system.settings.pending_ttl,
        retention=system.settings.retention,
        secret=system.settings.secret_key,
        default_timezone=system.settings.default_timezone,
        max_in_flight=2,
        claimers=2,
    )

    assert result.issued == []
    assert len(result.requeued) == 5


def test_when_one_claimer_fails_the_other_stops_and_the_pass_raises(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    if _dialect(system) == "sqlite":
        pytest.skip("SQLite gets one claimer")
    system.join_many(8)
    system.clock.advance(timedelta(days=1, hours=3))
    claim_due, calls, failed = scheduler.claim_due, itertools.count(), threading.Event()

    def first_fails(session: Session, now: datetime, limit: int, **options: str) -> object:
        if next(calls) == 0:
            failed.set()
            raise RuntimeError("the database went away")
        assert failed.wait(60)
        return claim_due(session, now, limit, **options)

    monkeypatch.setattr(scheduler, "claim_due", first_fails)
    system.enqueued.clear()

    with pytest.raises(RuntimeError, match="went away"):
        _pass(system, batch_size=2, claimers=2)
    assert len(system.enqueued) <= 2, "at most the batch the other had begun"


def test_a_pass_only_touches_subscribers_who_are_due(system: System) -> None:
    system.join_many(3)
    system.drain()
    assert system.tick().issued == []
    system.clock.advance(timedelta(days=1, hours=3))
    assert len(system.tick().issued) == 3
    assert system.tick().issued == []


@pytest.mark.parametrize("system_env", [{"DRIP_DEFAULT_TIMEZONE": "America/New_York"}])
def test_a_timezone_this_server_does_not_know_falls_back_to_the_default_for_that_reader_only(
    system: System, caplog: pytest.LogCaptureFixture
) -> None:
    """A zone a newer tz database accepted at signup (or a row edited by hand) must not
    stop the pass for everyone: that reader gets lessons at DRIP_DEFAULT_TIMEZONE's
    send hour, and the log names them by id, never by address."""
    system.join("ana@example.com", timezone="Europe/Berlin")
    system.join("bob@example.com", timezone="Europe/Berlin")
    with transaction(system.sessions) as session:
        session.execute(
            sa.update(Subscriber)
            .where(Subscriber.email == "bob@example.com")
            .values(timezone="Asia/Nowhere")
        )
    bob = system.subscriber("bob@example.com").id

    with caplog.at_level(logging.WARNING, logger="drip"):
        for _ in range(3 * 24 + 7):
            system.clock.advance(timedelta(hours=1))
            if system.tick().issued:
                system.drain()

    def lessons(address: str, tz: str) -> list[str]:
        received = system.smtp.to(address)[2:]  # after the confirmation and the welcome
        return [
            parsedate_to_datetime(str(m["Date"])).astimezone(ZoneInfo(tz)).strftime("%d %H:%M")
            for m in received
        ]

    assert lessons("ana@example.com", "Europe/Berlin") == ["25 08:00", "26 08:00", "27 08:00"]
    assert lessons("bob@example.com", "Europe/Berlin") == ["25 08:00", "26 13:00", "27 13:00"]
    assert lessons("bob@example.com", "America/New_York")[1:] == ["26 08:00", "27 08:00"]
    warned = [r.getMessage() for r in caplog.records if "Asia/Nowhere" in r.getMessage()]
    assert warned and all(f"subscriber {bob} " in w for w in warned)
    assert not [r for r in caplog.records if "bob@" in r.getMessage()]


def test_a_paused_subscriber_gets_no_lesson_until_the_pause_ends(system: System) -> None:
    """A pause holds even when next_send_at says due (as the old code's Resume left it
    during a rolling deploy); once it ends the series carries on, beside Bob's, whose
    lessons come every day."""
    system.join("ana@example.com")
    system.join("bob@example.com")
    with transaction(system.sessions) as session:
        ana = system.subscriber("ana@example.com", session=session)
        pause(session, ana.id, system.clock.now(), default_timezone="UTC")
        assert ana.paused_until == datetime(2026, 10, 31, 8, tzinfo=UTC)
        ana.next_send_at = system.clock.now()
    issued = Counter[str]()
    for _ in range(7 * 8):  # until 2026-10-31 06:00, two hours before the pause ends
        system.clock.advance(timedelta(hours=3))
        deliveries = system.tick().issued
        for address in ("ana@example.com", "bob@example.com"):
            issued[address] += _issued_to(system, address, deliveries)
        system.drain()
    assert issued == {"ana@example.com": 0, "bob@example.com": 6}
    system.clock.advance(timedelta(hours=2))
    assert _issued_to(system, "ana@example.com", system.tick().issued) == 1


def test_the_pass_a_minute_after_a_pause_ends_clears_it_and_issues_the_lesson(
    system: System,
) -> None:
    """The due index holds no paused reader, so the pass itself ends the pauses that are
    over before it claims: Ana's ended at 08:00, and the 08:01 pass gives her lesson 1.
    It counts as due when the pause ended, and lesson 2 comes a day later. Bob, paused a
    day after her, stays paused."""
    system.join("ana@example.com")
    system.join("bob@example.com")
    with transaction(system.sessions) as session:
        ana = system.subscriber("ana@example.com", session=session)
        pause(session, ana.id, system.clock.now(), default_timezone="UTC")
        bob = system.subscriber("bob@example.com", session=session)
        pause(session, bob.id, system.clock.now() + timedelta(days=1), default_timezone="UTC")
    system.clock.set(datetime(2026, 10, 31, 7, 59, tzinfo=UTC))
    assert system.tick().pauses_ended == 0
    system.clock.set(datetime(2026, 10, 31, 8, 1, tzinfo=UTC))
    result = system.tick()
    assert result.pauses_ended == 1
    assert _issued_to(system, "ana@example.com", result.issued) == 1
    assert _issued_to(system, "bob@example.com", result.issued) == 0
    with transaction(system.sessions) as session:
        ana = system.subscriber("ana@example.com", session=session)
        assert ana.paused_until is None
        assert ana.next_send_at == datetime(2026, 11, 1, 8, tzinfo=UTC)
        bob = system.subscriber("bob@example.com", session=session)
        assert bob.paused_until == datetime(2026, 11, 1, 8, tzinfo=UTC)


def test_a_lesson_waiting_for_a_retry_when_the_reader_pauses_waits_for_the_resume(
    system: System,
) -> None:
    """Lesson 1 was issued before the pause and refused for now by the relay. The sweeper
    queues it again when its retry is due, but the claim reads the pause and holds it
    until the pause ends. Resumed before dawn, Ana gets it at 08:00 that day, once, and
    lesson 2 a day later, not in the same hour."""
    system.join("ana@example.com")
    joined = len(system.smtp.to("ana@example.com"))
    system.smtp.script("ana@example.com", "451 4.7.1 Try again later")
    system.clock.set(datetime(2026, 10, 25, 8, tzinfo=UTC))
    [lesson] = system.tick().issued
    system.drain()
    assert _lesson(system, lesson).retry_at == datetime(2026, 10, 25, 8, 1, tzinfo=UTC)
    with transaction(system.sessions) as session:
        ana = system.subscriber("ana@example.com", session=session)
        pause(session, ana.id, system.clock.now(), default_timezone="UTC")
    for _ in range(7):  # until 2026-10-26 05:00
        system.clock.advance(timedelta(hours=3))
        system.tick()
        system.drain()
    assert len(system.smtp.to("ana@example.com")) == joined
    held = _lesson(system, lesson)
    assert (held.status, held.retry_at) == ("queued", datetime(2026, 11, 1, 8, tzinfo=UTC))
    with transaction(system.sessions) as session:
        ana = system.subscriber("ana@example.com", session=session)
        resume(session, ana.id, system.clock.now(), default_timezone="UTC")
    system.clock.set(datetime(2026, 10, 26, 7, 59, tzinfo=UTC))
    assert system.tick().requeued == []
    system.clock.set(datetime(2026, 10, 26, 8, tzinfo=UTC))
    assert system.tick().requeued == [lesson]
    system.drain()
    assert len(system.smtp.to("ana@example.com")) == joined + 1
    assert _lesson(system, lesson).status == "sent"
    system.clock.set(datetime(2026, 10, 26, 23, tzinfo=UTC))
    assert system.tick().issued == []
    system.clock.set(datetime(2026, 10, 27, 8, tzinfo=UTC))
    assert len(system.tick().issued) == 1


def _held_lesson(system: System) -> int:
    """Ana's lesson 1, refused for now by the relay on 25 October, then held by a pause
    until it ends on 1 November at 08:00; its id."""
    system.join("ana@example.com")
    system.smtp.script("ana@example.com", "451 4.7.1 Try again later")
    system.clock.set(datetime(2026, 10, 25, 8, tzinfo=UTC))
    [lesson] = system.tick().issued
    system.drain()
    with transaction(system.sessions) as session:
        ana = system.subscriber("ana@example.com", session=session)
        pause(session, ana.id, system.clock.now(), default_timezone="UTC")
    for _ in range(7):  # until 2026-10-26 05:00
        system.clock.advance(timedelta(hours=3))
        system.tick()
        system.drain()
    held = _lesson(system, lesson)
    assert (held.status, held.retry_at) == ("queued", datetime(2026, 11, 1, 8, tzinfo=UTC))
    return lesson


def test_moving_a_paused_reader_to_a_step_lets_the_lesson_the_pause_held_go(
    system: System,
) -> None:
    """The admin's Move ends the pause ("due now"), but the lesson the pause held kept
    waiting for the old end, and the scheduler, which issues nothing while a lesson is
    in flight, waited with it: nothing reached Ana for six days."""
    lesson = _held_lesson(system)
    before = len(system.smtp.to("ana@example.com"))
    with transaction(system.sessions) as session:
        ana = system.subscriber("ana@example.com", session=session)
        move_to_step(session, ana.id, 3, system.clock.now())
    assert system.tick().requeued == [lesson]
    system.drain()
    assert len(system.smtp.to("ana@example.com")) == before + 1
    system.clock.set(datetime(2026, 10, 27, 8, tzinfo=UTC))
    assert len(system.tick().issued) == 1


def test_an_earlier_send_hour_during_a_pause_moves_the_held_lesson_with_its_end(
    system: System,
) -> None:
    """At 06:00 the pause ends at 06:00 on 1 November; the lesson it held went at 08:00."""
    _held_lesson(system)
    before = len(system.smtp.to("ana@example.com"))
    with transaction(system.sessions) as session:
        ana = system.subscriber("ana@example.com", session=session)
        set_send_hour(session, ana.id, 6, system.clock.now(), default_timezone="UTC")
        assert ana.paused_until == datetime(2026, 11, 1, 6, tzinfo=UTC)
    system.clock.set(datetime(2026, 11, 1, 5, 59, tzinfo=UTC))
    assert system.tick().requeued == []
    system.clock.set(datetime(2026, 11, 1, 6, tzinfo=UTC))
    system.tick()
    system.drain()
    assert len(system.smtp.to("ana@example.com")) == before + 1


def _step(session: Session, subscriber: Subscriber, number: int) -> Step:
    return session.scalars(
        sa.select(Step).where(Step.sequence_id == subscriber.sequence_id, Step.number == number)
    ).one()


def test_a_new_day_for_the_lesson_a_pause_holds_moves_it_only_if_past_the_pause(
    system: System,
) -> None:
    """Lesson 1 due tomorrow (25 October), Ana paused until 31 October: the writer
    moving lesson 1 to day 2 (26 October) changes nothing for her, it still comes when
    the pause ends. The pause had moved her next email to its end, and the new day was
    added on top of it: 1 November."""
    system.join("ana@example.com")
    with transaction(system.sessions) as session:
        session.execute(
            sa.update(Step).where(Step.number >= 2).values(day_offset=Step.day_offset + 3)
        )
        ana = system.subscriber("ana@example.com", session=session)
        pause(session, ana.id, system.clock.now(), default_timezone="UTC")
        now = system.clock.now()
        lessons.set_day(session, _step(session, ana, 1).id, 2, now=now, default_timezone="UTC")
    with transaction(system.sessions) as session:
        ana = system.subscriber("ana@example.com", session=session)
        assert ana.next_send_at == datetime(2026, 10, 26, 8, tzinfo=UTC)
        assert next_email_at(session, ana, now) == datetime(2026, 10, 31, 8, tzinfo=UTC)
    system.clock.set(datetime(2026, 10, 31, 7, 59, tzinfo=UTC))
    assert system.tick().issued == []
    system.clock.set(datetime(2026, 10, 31, 8, tzinfo=UTC))
    assert len(system.tick().issued) == 1


def test_resume_keeps_the_next_lessons_day_when_the_one_before_it_moved(
    system: System,
) -> None:
    """Lessons on days 0, 1, 4: Ana had lesson 1 on 25 October, lesson 2 is due on
    28 October. The writer moves lesson 1 to day 2, which leaves readers who had it
    alone. Paused and resumed, Resume rebuilt her next email from lesson 1's new day and
    brought lesson 2 forward to 27 October."""
    system.join("ana@example.com")
    with transaction(system.sessions) as session:
        session.execute(
            sa.update(Step).where(Step.number >= 2).values(day_offset=Step.day_offset + 2)
        )
    system.clock.set(datetime(2026, 10, 25, 8, tzinfo=UTC))
    assert len(system.tick().issued) == 1
    system.drain()
    with transaction(system.sessions) as session:
        ana = system.subscriber("ana@example.com", session=session)
        now = system.clock.now()
        lessons.set_day(session, _step(session, ana, 1).id, 2, now=now, default_timezone="UTC")
        pause(session, ana.id, now, default_timezone="UTC")
    system.clock.set(datetime(2026, 10, 26, 9, tzinfo=UTC))
    with transaction(system.sessions) as session:
        ana = system.subscriber("ana@example.com", session=session)
        resume(session, ana.id, system.clock.now(), default_timezone="UTC")
        assert ana.next_send_at == datetime(2026, 10, 28, 8, tzinfo=UTC)


def test_resume_after_the_admin_moved_the_reader_keeps_the_step_due_now(
    system: System,
) -> None:
    """Moved to step 5, due at once, then paused and resumed within the hour: Resume
    counted step 5's day from the welcome and put it on 29 October, not at her send
    hour today."""
    system.join("ana@example.com")
    with transaction(system.sessions) as session:
        ana = system.subscriber("ana@example.com", session=session)
        move_to_step(session, ana.id, 5, system.clock.now())
        pause(session, ana.id, system.clock.now(), default_timezone="UTC")
    system.clock.advance(timedelta(hours=1))
    with transaction(system.sessions) as session:
        ana = system.subscriber("ana@example.com", session=session)
        resume(session, ana.id, system.clock.now(), default_timezone="UTC")
        assert ana.next_send_at == datetime(2026, 10, 24, 8, tzinfo=UTC)


def test_a_reader_whose_zone_this_server_does_not_know_pauses_and_resumes_by_the_default(
    system: System,
) -> None:
    """As the scheduler reads an unknown zone (zone_of); Resume raised ValueError."""
    system.join("ana@example.com")
    with transaction(system.sessions) as session:
        ana = system.subscriber("ana@example.com", session=session)
        ana.timezone = "Asia/Nowhere"
        pause(session, ana.id, system.clock.now(), default_timezone="Europe/Berlin")
        assert ana.paused_until == datetime(2026, 10, 31, 7, tzinfo=UTC)
        resume(session, ana.id, system.clock.now(), default_timezone="Europe/Berlin")
        assert (ana.paused_until, ana.next_send_at) == (None, datetime(2026, 10, 25, 8, tzinfo=UTC))


def _lesson(system: System, delivery_id: int) -> Delivery:
    with transaction(system.sessions) as session:
        return session.get_one(Delivery, delivery_id)


def _issued_to(system: System, address: str, deliveries: list[int]) -> int:
    with transaction(system.sessions) as session:
        return (
            session.scalar(
                sa.select(sa.func.count())
                .select_from(Delivery)
                .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                .where(Delivery.id.in_(deliveries), Subscriber.email == address)
            )
            or 0
        )


def test_a_signup_never_confirmed_gets_no_lesson_however_long_the_scheduler_runs(
    system: System,
) -> None:
    """Standards LAW-20: only the confirm click starts a series. Beside a subscriber who
    did confirm (and gets a lesson a day), a pending one gets the confirmation email and
    nothing else, through six days of passes (on the seventh it is purged)."""
    system.signup("ana@example.com")
    system.join("bob@example.com")
    issued = 0
    for _ in range(6 * 8):
        system.clock.advance(timedelta(hours=3))
        issued += len(system.tick().issued)
        system.drain()
    assert issued == 5, "bob's lessons 1 to 5, one a day: the scheduler was at work"
    with transaction(system.sessions) as session:
        kinds = session.scalars(
            sa.select(Delivery.kind)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Subscriber.email == "ana@example.com")
        ).all()
    assert kinds == [DeliveryKind.CONFIRMATION]
    assert len(system.smtp.to("ana@example.com")) == 1
    assert system.subscriber("ana@example.com").status == SubscriberStatus.PENDING


def test_the_sweeper_requeues_what_redis_lost(system: System) -> None:
    system.signup("ana@example.com")
    system.broker.client.flushall()
    system.start_worker()
    assert system.tick().requeued == []

    system.clock.advance(system.settings.requeue_after)
    assert len(system.tick().requeued) == 1
    system.drain()
    assert len(system.smtp.to("ana@example.com")) == 1


def test_a_sweeper_alone_requeues_but_issues_nothing_new(system: System) -> None:
    system.join_many(2)
    system.stop_worker()  # the confirmation must not be sent before Redis loses it
    system.signup("ana@example.com")
    system.broker.client.flushall()
    system.clock.advance(timedelta(days=1, hours=3))

    def sweep_only() -> list[int]:
        return system.tick(sweep_only=True).requeued

    assert len(sweep_only()) == 1, "the lost confirmation, and none of the due lessons"
    assert sweep_only() == []
    assert len(system.tick().issued) == 2


def test_a_send_whose_outcome_is_unknown_is_resent_once_and_logged(
    system: System, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker dies after the SMTP server said 250 and before drip recorded it."""
    system.signup("ana@example.com")
    system.broker.client.flushall()
    with transaction(system.sessions) as session:
        delivery = session.scalars(sa.select(Delivery)).one()
    crashing = dataclasses.replace(
        system.mailer, transport=DiesAfterSending(system.mailer.transport)
    )
    with pytest.raises(SystemExit):
        send_delivery(crashing, delivery.id)

    assert system.tick().requeued == [], "the lease has not run out yet"
    system.clock.advance(system.settings.send_lease)
    with caplog.at_level(logging.WARNING, logger="drip"):
        assert system.tick().requeued == [delivery.id]
    assert send_delivery(system.mailer, delivery.id) is Outcome.SENT

    sent = [r.message["Message-ID"] for r in system.smtp.received]
    assert len(sent) == 2
    assert len(set(sent)) == 1, "a resend reuses the Message-ID, so receivers can spot it"
    assert [
        r for r in caplog.records if f"ambiguous_resend delivery={delivery.id}" in r.getMessage()
    ]
    assert send_delivery(system.mailer, delivery.id) is Outcome.SKIPPED
    with transaction(system.sessions) as session:
        assert session.get_one(Delivery, delivery.id).ambiguous_resends == 1


def test_the_due_query_uses_the_status_and_time_index(system: System) -> None:
    """REL-02: the query the scheduler runs, compiled for each database, reads the due
    subscribers through (status, next_send_at), so a pass costs what is due, not the list.
    That index leaves paused readers out (WHERE paused_until IS NULL): a plan through it
    reads none of them, however many pause. The pass finds the pauses that are over
    through an index holding only the paused."""
    system.join_many(3)
    with transaction(system.sessions) as session:
        ana = session.scalars(sa.select(Subscriber).limit(1)).one()
        pause(session, ana.id, system.clock.now(), default_timezone="UTC")
    with transaction(system.sessions) as session:
        plan = plan_of(session, due_query(system.clock.now(), 500))
        ended = plan_of(session, pauses_over(system.clock.now(), 500))
    assert "ix_subscribers_due" in plan
    assert "ix_deliveries_subscriber_id" in plan, "the in-flight check probes each candidate"
    assert "ix_subscribers_paused_until" in ended


@pytest.mark.parametrize("database_kind", ["postgresql"], indirect=True)  # rows locked apart
def test_a_pass_leaves_alone_a_pause_being_renewed_and_ends_it_later(system: System) -> None:
    """Ana's week of pause is over, and she presses Pause again while a pass runs: the
    pass skips her row rather than wait for it (SKIP LOCKED), ending only the other
    pause that is over, and her new week stands. Ending hers would have let the
    scheduler issue her a lesson on the first day of the pause she just asked for."""
    system.join("ana@example.com")
    system.join("bob@example.com")
    ana, bob = system.subscriber("ana@example.com"), system.subscriber("bob@example.com")
    with transaction(system.sessions) as session:
        for reader in (ana, bob):
            pause(session, reader.id, system.clock.now(), default_timezone="UTC")
    system.clock.advance(timedelta(days=8))
    now = system.clock.now()

    with transaction(system.sessions) as pressing:
        renewed = pause(pressing, ana.id, now, default_timezone="UTC").paused_until
        assert renewed is not None and renewed > now
        passes: list[scheduler.PassResult] = []
        running = threading.Thread(target=lambda: passes.append(system.tick()))
        running.start()
        running.join(timeout=30)  # a bound on the failure: the pass waiting for her row
        assert passes, "the pass waited for the row Ana's Pause holds"

    during = passes[0]
    assert during.pauses_ended == 1, "Bob's; Ana's row was held"
    with transaction(system.sessions) as session:
        issued = [session.get_one(Delivery, i).subscriber_id for i in during.issued]
    assert issued == [bob.id]
    assert system.subscriber("ana@example.com").paused_until == renewed
    assert system.tick().issued == []


def test_the_in_flight_check_stays_a_probe_per_candidate_on_postgresql(system: System) -> None:
    """Planned as an anti-join, with statistics from before a pass (nothing in flight),
    the check compared each candidate with every lesson the pass had issued so far, so
    each batch of a big pass took longer than the one before (bench/scheduler.py)."""
    with transaction(system.sessions) as session:
        if session.get_bind().dialect.name != "postgresql":
            pytest.skip("the plan that goes wrong is PostgreSQL's")
        session.execute(sa.text("ANALYZE deliveries"))
        query = due_query(system.clock.now(), 500)
        sql = query.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
        plan = "\n".join(session.scalars(sa.text(f"EXPLAIN {sql}")))
    assert "Anti Join" not in plan
    assert "SubPlan" in plan


@pytest.mark.parametrize("database_kind", ["postgresql"], indirect=True)
def test_a_pass_whose_deletions_the_database_aborts_logs_it_and_goes_on(
    system: System, caplog: pytest.LogCaptureFixture
) -> None:
    """Should PostgreSQL abort the pass's deletions (standards LAW-16: the purge of
    signups never confirmed, the erasure of subscriptions ended long ago) to break a
    deadlock (drip.db CONFLICTS), the pass still issues the lessons due and sweeps, and
    the next pass deletes what this one could not."""
    system.join("ana@example.com")
    system.signup("bob@example.com")
    system.drain()  # a confirmation sent later would keep Bob's signup for 7 days more
    ended_long_ago(system, "ana@example.com")
    with deadlocked_deletes(system, "subscribers"), caplog.at_level(logging.WARNING):
        aborted = system.tick()
    assert (aborted.purged, aborted.erased, len(aborted.issued)) == (0, 0, 1), "a lesson goes"
    assert any("retention_conflict sqlstate=40P01" in r.getMessage() for r in caplog.records)
    system.drain()  # the worker sending that lesson holds Ana's row, which the sweep skips
    after = system.tick()
    assert (after.purged, after.erased) == (1, 1)


def _due_for_the_last_lesson(system: System) -> tuple[Subscriber, Step]:
    """Ana, the welcome behind her, due for the series' last lesson now; the worker
    stopped, so nothing is sent behind the test's back."""
    system.join("ana@example.com")
    system.stop_worker()
    system.clock.advance(timedelta(days=2))
    ana = system.subscriber("ana@example.com")
    with transaction(system.sessions) as session:
        last = session.scalars(
            sa.select(Step)
            .where(Step.sequence_id == ana.sequence_id)
            .order_by(Step.number.desc())
            .limit(1)
        ).one()
        move_to_step(session, ana.id, last.number, system.clock.now())
    return ana, last


def _passing(system: System) -> Callable[[SessionFactory], scheduler.PassResult]:
    return lambda sessions: dataclasses.replace(system, sessions=sessions).tick()


def _removing(step_id: int) -> Callable[[SessionFactory], None]:
    def work(sessions: SessionFactory) -> None:
        with transaction(sessions) as session:
            lessons.remove_step(session, step_id)

    return work


@pytest.mark.parametrize("database_kind", ["postgresql"], indirect=True)
def test_removing_the_last_lesson_as_a_pass_issues_it_is_refused(system: System) -> None:
    """The pass has issued Ana the last lesson and not yet committed when an admin
    removes that lesson. The removal found nobody had had it, waited for the pass to
    commit, then deleted it, and Ana's delivery was left with no lesson (step_id is ON
    DELETE SET NULL): the worker had nothing to send. It must wait for the pass before
    looking, and see the lesson has gone out."""
    ana, last = _due_for_the_last_lesson(system)
    engine = make_engine(system.settings)
    issued, release = stop_after(engine, "INSERT INTO deliveries")
    passing = Racer(system, _passing(system), engine=engine)
    assert issued.wait(TIMEOUT), passing.outcome
    removing = Racer(system, _removing(last.id))
    removing.wait_until_blocked(system)
    release.set()
    assert len(passing.result().issued) == 1
    with pytest.raises(InvalidInput, match="already been sent"):
        removing.result()
    with transaction(system.sessions) as session:
        steps = session.scalars(sa.select(Delivery.step_id).where(Delivery.subscriber_id == ana.id))
        assert last.id in set(steps)
        assert session.get(Step, last.id) is not None


@pytest.mark.parametrize("database_kind", ["postgresql"], indirect=True)
def test_a_pass_during_the_removal_of_the_last_lesson_ends_the_series_instead(
    system: System,
) -> None:
    """An admin removes the last lesson, due for Ana, while a pass runs. The pass had
    read the lesson before the removal committed, so its delivery then named a lesson
    that was gone and PostgreSQL refused it (a foreign-key violation): the whole pass
    failed. It must wait for the removal and find the series over for Ana."""
    ana, last = _due_for_the_last_lesson(system)
    with transaction(system.sessions) as session:
        lessons.remove_step(session, last.id)
        passing = Racer(system, _passing(system))
        passing.wait_until_blocked(system)
    assert passing.result().issued == []
    after = system.subscriber("ana@example.com")
    assert (after.status, after.next_step) == (SubscriberStatus.COMPLETED, None)
    with transaction(system.sessions) as session:
        assert session.get(Step, last.id) is None
        orphans = sa.select(Delivery.id).where(
            Delivery.kind == DeliveryKind.STEP, Delivery.step_id.is_(None)
        )
        assert not session.scalars(orphans.where(Delivery.subscriber_id == ana.id)).all()

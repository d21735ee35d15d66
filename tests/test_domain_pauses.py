"""A recipient domain that throttles us (Gmail's 4.7.28) is paused for ten minutes on
the injected clock, for every subscriber on it, without spending their attempts, and
then gets one connection at a time (standards DEL-02)."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from drip.db import transaction
from drip.domain_pauses import PAUSE
from drip.domain_slots import CALM_RETRY
from drip.models import Delivery, DeliveryStatus, Subscriber
from drip.sending import RETRY_DELAYS, Outcome, send_delivery
from tests.helpers import System, wait_until

THROTTLED = "421 4.7.28 Our system has detected an unusual rate of unsolicited mail"


def delivery_to(system: System, email: str) -> Delivery:
    with transaction(system.sessions) as session:
        return session.scalars(
            sa.select(Delivery).join(Subscriber).where(Subscriber.email == email)
        ).one()


def queued_without_sending(system: System, *emails: str) -> list[int]:
    for email in emails:
        system.signup(email)
    system.broker.client.flushall()  # the test calls the actor's function itself
    return [delivery_to(system, email).id for email in emails]


def test_a_throttling_domain_waits_ten_minutes_and_the_others_do_not(system: System) -> None:
    first, neighbour, elsewhere = queued_without_sending(
        system, "ana@gmail.com", "bo@gmail.com", "cy@example.com"
    )
    system.smtp.script("ana@gmail.com", THROTTLED)
    began = system.clock.now()

    assert send_delivery(system.mailer, first) is Outcome.RETRY
    assert send_delivery(system.mailer, neighbour) is Outcome.RETRY
    assert send_delivery(system.mailer, elsewhere) is Outcome.SENT
    for email, attempts in (("ana@gmail.com", 1), ("bo@gmail.com", 0)):
        waiting = delivery_to(system, email)
        assert (waiting.status, waiting.attempts) == (DeliveryStatus.QUEUED, attempts)
        assert waiting.retry_at == began + timedelta(minutes=10)

    system.clock.advance(timedelta(minutes=9, seconds=59))
    assert system.tick().requeued == []
    system.clock.advance(timedelta(seconds=1))
    assert sorted(system.tick().requeued) == [first, neighbour]
    system.drain_postponed(CALM_RETRY)  # one connection at a time now: see below
    assert {m["To"] for m in (r.message for r in system.smtp.received)} >= {
        "ana@gmail.com",
        "bo@gmail.com",
    }


def test_a_relay_wide_slow_down_does_not_pause_the_recipients_domain(system: System) -> None:
    first, neighbour = queued_without_sending(system, "ana@gmail.com", "bo@gmail.com")
    system.smtp.script("ana@gmail.com", "451 4.7.0 Too many messages, slow down")
    assert send_delivery(system.mailer, first) is Outcome.RETRY
    assert send_delivery(system.mailer, neighbour) is Outcome.SENT


def test_a_batch_sends_no_more_to_a_domain_once_it_asks_for_a_pause(system: System) -> None:
    """The batch's other emails to that domain are handed back and queued again at once;
    the worker that takes them finds the domain paused and leaves them until its end.
    The batch's email to another domain goes."""
    first, neighbour, elsewhere = queued_without_sending(
        system, "ana@gmail.com", "bo@gmail.com", "cy@example.com"
    )
    system.smtp.script("ana@gmail.com", THROTTLED)
    began = system.clock.now()

    system.enqueue([first, neighbour, elsewhere])
    system.drain()

    assert [received.rcpt_tos for received in system.smtp.received] == [["cy@example.com"]]
    held = delivery_to(system, "bo@gmail.com")
    assert (held.status, held.attempts, held.retry_at) == (
        DeliveryStatus.QUEUED,
        0,
        began + PAUSE,
    )


def test_after_the_pause_the_domain_gets_one_connection_at_a_time(system: System) -> None:
    assert system.settings.domain_concurrency > 1
    emails = ["ana@gmail.com", "bo@gmail.com", "cy@gmail.com", "di@gmail.com"]
    ids = queued_without_sending(system, *emails)
    system.smtp.script("ana@gmail.com", THROTTLED)
    assert send_delivery(system.mailer, ids[0]) is Outcome.RETRY
    system.clock.advance(PAUSE)

    system.smtp.hold()  # the worker's four threads all try gmail.com at once
    for delivery_id in ids:
        system.enqueue([delivery_id])  # a message each, so four threads take them
    system.start_worker()
    wait_until(
        lambda: system.postponed() == 3 and system.smtp.in_flight("gmail.com") == 1,
        "three deliveries to find the domain taken by the fourth, held by the server",
    )
    system.smtp.hold(False)
    system.drain_postponed(CALM_RETRY)

    assert system.smtp.peak("gmail.com") == 1
    assert sorted(to for r in system.smtp.received for to in r.rcpt_tos) == emails
    assert [delivery_to(system, email).attempts for email in emails] == [2, 1, 1, 1]


def test_a_late_attempt_pauses_the_domain_ten_minutes_not_its_own_back_off(
    system: System,
) -> None:
    """The delivery's fifth attempt waits its own three hours; the domain asked for ten
    minutes."""
    late, neighbour = queued_without_sending(system, "ana@gmail.com", "bo@gmail.com")
    with transaction(system.sessions) as session:
        session.get_one(Delivery, late).attempts = 4
    system.smtp.script("ana@gmail.com", THROTTLED)
    began = system.clock.now()

    assert send_delivery(system.mailer, late) is Outcome.RETRY
    assert delivery_to(system, "ana@gmail.com").retry_at == began + RETRY_DELAYS[4]
    assert send_delivery(system.mailer, neighbour) is Outcome.RETRY
    assert delivery_to(system, "bo@gmail.com").retry_at == began + PAUSE


def test_a_last_attempt_that_gives_up_still_pauses_the_domain(system: System) -> None:
    last, neighbour = queued_without_sending(system, "ana@gmail.com", "bo@gmail.com")
    with transaction(system.sessions) as session:
        session.get_one(Delivery, last).attempts = system.settings.max_attempts - 1
    system.smtp.script("ana@gmail.com", THROTTLED)
    began = system.clock.now()

    assert send_delivery(system.mailer, last) is Outcome.FAILED
    assert send_delivery(system.mailer, neighbour) is Outcome.RETRY
    assert delivery_to(system, "bo@gmail.com").retry_at == began + PAUSE

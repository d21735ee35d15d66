"""A recipient domain that throttles us (Gmail's 4.7.28) is paused for ten minutes on
the injected clock, for every subscriber on it, without spending their attempts
(standards DEL-02)."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from drip.db import transaction
from drip.models import Delivery, DeliveryStatus, Subscriber
from drip.sending import Outcome, send_delivery
from tests.helpers import System

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
    system.drain()
    assert {m["To"] for m in (r.message for r in system.smtp.received)} >= {
        "ana@gmail.com",
        "bo@gmail.com",
    }


def test_a_relay_wide_slow_down_does_not_pause_the_recipients_domain(system: System) -> None:
    first, neighbour = queued_without_sending(system, "ana@gmail.com", "bo@gmail.com")
    system.smtp.script("ana@gmail.com", "451 4.7.0 Too many messages, slow down")
    assert send_delivery(system.mailer, first) is Outcome.RETRY
    assert send_delivery(system.mailer, neighbour) is Outcome.SENT

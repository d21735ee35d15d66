"""Sending one delivery, by id, exactly once as far as drip can make it so.

  1. claim (one short transaction): move the row from `queued` to `sending` with a lease
     and count the attempt, after re-checking the subscriber, and read what the email
     needs (drip.composing.draft). The attempt is committed before any rendering, so a
     delivery that crashes its worker cannot loop forever. A delivery to a domain that
     asked for a pause (drip.domain_pauses) waits instead.
  2. render and build the message with no transaction open; a failure here fails the
     delivery for good.
  3. a last look, reading only: the subscriber still wants it. Then hand it to the
     transport while holding no database lock.
  4. record the outcome: `sent`; back to `queued` with a `retry_at` for a temporary
     failure (the sweeper re-queues it then; the database, not Dramatiq, paces retries),
     without counting the attempt when no slot of the shared send rate came free; or
     `failed`, with the subscriber `bounced` when the relay refused the address.

A redelivered message finds the row no longer `queued` and does nothing, so the actor is
idempotent. Two duplicates remain possible, both logged: a worker dying between the
relay's "250" and step 4 (`ambiguous_resend`, when the lease runs out), and an
unsubscribe committed after the last look while the SMTP transaction is under way.

Two write transactions and one read per email: on SQLite every write queues for the one
write lock, and on PostgreSQL every statement is a round trip, so each one counts.
Every transaction that locks a delivery locks its subscriber first (drip.delivery_locks),
in the same order as unsubscribing and scheduling do, so none of them can deadlock
another.
"""

from __future__ import annotations

import enum
import functools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drip import domain_pauses
from drip.clock import Clock
from drip.composing import Draft, compose, draft
from drip.db import SessionFactory, reading, transaction
from drip.delivery_locks import lock, lock_subscriber
from drip.dkim_signing import DkimSigner, serialise
from drip.errors import NoSendingSlot, TransportError
from drip.logs import log_fields
from drip.models import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from drip.privacy import BLOCKING, SUPPRESSION_REASON, email_hash
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
        claimed = _claim(mailer, session, delivery_id)
    if isinstance(claimed, Outcome):
        return claimed
    try:
        composed = compose(claimed, settings=mailer.settings, renderer=mailer.renderer)
    except Exception as exc:
        with transaction(mailer.sessions) as session:
            return _give_up(mailer, session, delivery_id, _unbuildable(delivery_id, exc))
    refused = _last_look(mailer, delivery_id, claimed)
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


def _claim(mailer: Mailer, session: Session, delivery_id: int) -> Outcome | Draft:
    """Take the delivery for this worker: what to send when it is ours, else why not."""
    now = mailer.clock.now()
    locked = lock(session, delivery_id)
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
    reason, resume_at = (
        session.connection()
        .execute(
            _HOLDS,
            {
                "email_hash": email_hash(mailer.settings.secret_key, subscriber.email),
                "domain": domain_pauses.domain_of(subscriber.email),
                "now": now,
            },
        )
        .one()
    )
    refusal = _refusal(delivery.kind, subscriber.status, reason)
    if refusal:
        return _cancel(delivery, refusal)
    if resume_at is not None:
        delivery.retry_at = resume_at
        return Outcome.RETRY
    if delivery.attempts >= mailer.settings.max_attempts:
        return _fail(
            mailer,
            delivery,
            subscriber,
            f"gave up after {delivery.attempts} attempts: {delivery.last_error}",
        )
    delivery.status = DeliveryStatus.SENDING
    delivery.attempts += 1
    delivery.retry_at = None
    delivery.lease_until = now + mailer.settings.send_lease
    try:
        with session.no_autoflush:  # the claim's changes go out in one UPDATE, at commit
            prepared = draft(
                session,
                delivery,
                subscriber,
                settings=mailer.settings,
                tokens=mailer.tokens,
                now=now,
            )
    except Exception as exc:
        return _fail(mailer, delivery, subscriber, _unbuildable(delivery_id, exc))
    delivery.message_id = prepared.msgid
    delivery.template_version_id = prepared.template_version_id
    return prepared


_HOLDS = sa.select(
    SUPPRESSION_REASON.scalar_subquery(), domain_pauses.PAUSED_UNTIL.scalar_subquery()
)
"""Why the address is suppressed and until when its domain is paused, each None if not,
in one statement on the claim's connection (the ORM's execution path costs more than
the statement on SQLite)."""


def _unbuildable(delivery_id: int, exc: Exception) -> str:
    """Log why the message for this delivery cannot be made (a bad template, a name that
    fails the header checks): the delivery fails for good with the returned reason."""
    log.exception(
        "delivery %d could not be composed", delivery_id, extra={"delivery_id": delivery_id}
    )
    return f"could not build the message: {exc}"


def _refusal(kind: DeliveryKind, status: SubscriberStatus, suppressed: str | None) -> str:
    """Why this email must not go out now, or "" when it may."""
    if kind in ALLOWED and status not in ALLOWED[kind]:
        return f"subscriber is {status.value}"
    if suppressed in BLOCKING or (suppressed and kind == DeliveryKind.STEP):
        return f"address is suppressed ({suppressed})"
    return ""


def _cancel(delivery: Delivery, reason: str) -> Outcome:
    delivery.status = DeliveryStatus.CANCELLED
    delivery.last_error = reason
    delivery.lease_until = None
    return Outcome.CANCELLED


def _last_look(mailer: Mailer, delivery_id: int, prepared: Draft) -> Outcome | None:
    """None if the email may still go: the row is ours and the subscriber has not left
    since the claim. Only reads, in one query; a refusal, rare, then locks to cancel."""
    hashed = email_hash(mailer.settings.secret_key, prepared.rcpt_to)
    with reading(mailer.sessions) as session:
        row = (
            session.connection()
            .execute(_LAST_LOOK, {"delivery_id": delivery_id, "email_hash": hashed})
            .one_or_none()
        )
    if row is None or row[0] != DeliveryStatus.SENDING:
        return Outcome.SKIPPED
    refusal = _refusal(prepared.kind, row[1], row[2])
    if not refusal:
        return None
    with transaction(mailer.sessions) as session:
        locked = lock(session, delivery_id)
        if locked is None or locked[0].status != DeliveryStatus.SENDING:
            return Outcome.SKIPPED
        return _cancel(locked[0], refusal)


_LAST_LOOK = (
    sa.select(Delivery.status, Subscriber.status, Suppression.reason)
    .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
    .outerjoin(Suppression, Suppression.email_hash == sa.bindparam("email_hash"))
    .where(Delivery.id == sa.bindparam("delivery_id"))
)


def _record_sent(mailer: Mailer, session: Session, delivery_id: int) -> None:
    """Lock the subscriber, then mark the delivery sent in the UPDATE that locks it and
    returns what the subscriber's new columns depend on. Plain statements, with the
    values worked out here: the ORM's change tracking and flush cost more than the rest
    of this transaction."""
    subscriber = lock_subscriber(session, delivery_id)
    if subscriber is None:
        return
    now = mailer.clock.now()
    connection = session.connection()
    delivery = connection.execute(_SENT, {"delivery_id": delivery_id, "now": now}).one()
    log.info("delivery %d sent", delivery_id, extra=log_fields(delivery))
    changes: dict[str, object] = {}
    if delivery.kind == DeliveryKind.CONFIRMATION:
        changes["confirmation_sent_at"] = now
    if delivery.kind == DeliveryKind.STEP:
        changes |= lesson_sent(subscriber, delivery.due_at, now)
    changes |= _completion(subscriber, now)
    if changes:
        connection.execute(_subscriber_update(*sorted(changes)), {**changes, "id_": subscriber.id})


_SENT = (
    sa.update(Delivery)
    .where(Delivery.id == sa.bindparam("delivery_id"))
    .values(status=DeliveryStatus.SENT, sent_at=sa.bindparam("now"), lease_until=None)
    .returning(Delivery.id, Delivery.subscriber_id, Delivery.kind, Delivery.due_at)
)


@functools.cache
def _subscriber_update(*columns: str) -> sa.Update:
    """The UPDATE of these subscriber columns, built once per set of columns: building
    it afresh cost more than running it on SQLite."""
    return (
        sa.update(Subscriber)
        .where(Subscriber.id == sa.bindparam("id_"))
        .values({name: sa.bindparam(name) for name in columns})
    )


def _record_failure(
    mailer: Mailer, session: Session, delivery_id: int, exc: TransportError
) -> Outcome:
    locked = lock(session, delivery_id)
    if locked is None or locked[0].status != DeliveryStatus.SENDING:
        return Outcome.SKIPPED  # our lease ran out and another worker took it over
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
    if exc.domain_throttled:
        # The domain waits the ten minutes it asked for, even when this delivery gives up
        # now; the delivery's own back-off is longer on a late attempt and says nothing of
        # the domain.
        domain = domain_pauses.domain_of(subscriber.email)
        log.warning("domain_paused domain=%s for %s: %s", domain, domain_pauses.PAUSE, exc)
        domain_pauses.pause(session, domain, now + domain_pauses.PAUSE, str(exc))
    if delivery.attempts >= mailer.settings.max_attempts:
        return _fail(
            mailer, delivery, subscriber, f"gave up after {delivery.attempts} attempts: {exc}"
        )
    delay = RETRY_DELAYS[min(delivery.attempts, len(RETRY_DELAYS)) - 1]
    if exc.domain_throttled:
        delay = max(delay, domain_pauses.PAUSE)
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
    locked = lock(session, delivery_id)
    if locked is None:
        return Outcome.SKIPPED
    return _fail(mailer, *locked, reason)


def _fail(mailer: Mailer, delivery: Delivery, subscriber: Subscriber, reason: str) -> Outcome:
    delivery.status = DeliveryStatus.FAILED
    delivery.last_error = reason[:500]
    delivery.lease_until = None
    delivery.retry_at = None
    _complete_if_done(subscriber, mailer.clock.now())
    return Outcome.FAILED


def _complete_if_done(subscriber: Subscriber, now: datetime) -> None:
    for name, value in _completion(subscriber, now).items():
        setattr(subscriber, name, value)


def _completion(subscriber: Subscriber, now: datetime) -> dict[str, object]:
    """The subscriber's columns once its last email is done with: completed if active
    with nothing more to come."""
    if subscriber.status == SubscriberStatus.ACTIVE and subscriber.next_step is None:
        return {"status": SubscriberStatus.COMPLETED, "ended_at": now}
    return {}

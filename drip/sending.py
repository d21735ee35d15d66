"""Sending deliveries, by id, each exactly once as far as drip can make it so.

A queue message carries up to drip.tasks.SEND_BATCH delivery ids; they are claimed and
looked at together, and sent and recorded one by one:

  1. claim (one short transaction for the batch): move each row from `queued` to
     `sending` with a lease and count the attempt, after re-checking the subscriber, and
     read what the email needs (drip.composing.draft). The attempt is committed before
     any rendering, so a delivery that crashes its worker cannot loop forever. A delivery
     to a domain that asked for a pause (drip.domain_pauses), and a lesson to a
     subscriber who paused their emails, wait instead.
  2. render and build each message with no transaction open; a failure here fails that
     delivery for good.
  3. hand it to the transport while holding no database lock. Once any wait for a
     sending slot or a connection is over, the transport calls back for a last look,
     reading only: the subscriber still wants it. One look answers for the batch's
     unsent emails for LOOK_FRESH seconds.
  4. record the outcome at once, before the next email: `sent`; back to `queued` with a
     `retry_at` for a temporary failure (the sweeper re-queues it then; the database,
     not Dramatiq, paces retries), without counting the attempt when no slot of the
     shared send rate came free; or `failed`, with the subscriber `bounced` when the
     relay refused the address.

The rest of a batch is handed back, queued again uncounted, once half the lease has
gone (a slow relay), and the rest to a domain once it asks for a pause.

A subscriber completes the series when the last lesson issued to them is sent, not when
it fails: one who did not get it has not finished, stays active with nothing scheduled,
and the admin can send it again (drip.subscriber_actions) unless the address is barred.

A redelivered message finds the rows no longer `queued` and does nothing, so the actor is
idempotent. Two duplicates remain possible, both logged: a message the relay may have
accepted without drip knowing (`ambiguous_resend`: a worker dying between the relay's
"250" and step 4, sent again when the lease runs out; or the connection lost or timed out
after the whole message was sent, before the reply, sent again at the next retry), and an
unsubscribe committed after the last look, while the SMTP transaction is under way. A
worker dying mid-batch also leaves the batch's unsent emails claimed: they are sent when
their lease runs out, each logged as an `ambiguous_resend` too, since the database
cannot tell them from the one that was on the wire.

Per email, one write transaction (the record) and a share of the batch's claim and look:
on SQLite every write queues for the one write lock, and on PostgreSQL every statement
is a round trip, so each one counts. Every transaction that locks a delivery locks its
subscriber first (drip.delivery_locks), in the same order as unsubscribing and
scheduling do, so none of them can deadlock another.
"""

from __future__ import annotations

import enum
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drip import domain_pauses, recipients
from drip.clock import Clock
from drip.composing import Draft, Reads, compose, draft
from drip.db import SessionFactory, looking, transaction, writing
from drip.delivery_locks import Row, lock, lock_batch, lock_subscriber
from drip.dkim_signing import DkimSigner, signed
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
from drip.privacy import email_hash
from drip.rendering import Renderer
from drip.schedule import last_lesson, lesson_sent
from drip.settings import Settings
from drip.subscriptions import mark_bounced
from drip.tokens import Tokens
from drip.transports import Transport
from drip.verp import envelope_sender

log = logging.getLogger(__name__)
RETRY_DELAYS = tuple(timedelta(minutes=m) for m in (1, 5, 20, 60, 180, 450, 720))
"""Waits after the 1st, 2nd, ... temporary failure. The default DRIP_MAX_ATTEMPTS (8)
spends all seven: 23 h 56 min of trying, about a day (standards REL-07), so a mail server
down overnight still gets the lesson. Short blips come first: a dropped connection is
retried after a minute, and a greylisting server (most ask for five minutes) gets the
email six minutes after the first try. More attempts, if configured, wait 12 h each."""


class Outcome(enum.StrEnum):
    SENT = "sent"
    HANDED_BACK = "handed back"
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
    """Send one delivery: `send_batch` of one."""
    return send_batch(mailer, [delivery_id])[delivery_id]


def send_batch(mailer: Mailer, delivery_ids: Sequence[int]) -> dict[int, Outcome]:
    """Send the deliveries of one queue message, one after the other, each as if alone
    except that the claim and the last look are shared (see the module's docstring);
    what became of each. Those handed back (Outcome.HANDED_BACK) are queued again and
    need a new message."""
    with writing(mailer.sessions) as connection:
        claims = _claim(mailer, connection, delivery_ids)
    outcomes = {i: claim for i, claim in claims.items() if isinstance(claim, Outcome)}
    drafts = {i: claim for i, claim in claims.items() if isinstance(claim, Draft)}
    look = _LastLook(mailer, drafts)
    stop_at = mailer.clock.now() + mailer.settings.send_lease / 2
    domains = {i: domain_pauses.domain_of(d.rcpt_to) for i, d in drafts.items()}
    waiting = sorted(drafts, key=domains.__getitem__)  # a domain's slot is taken once
    try:
        while waiting:
            delivery_id = waiting.pop(0)
            outcome, throttled = _send_one(mailer, delivery_id, drafts[delivery_id], look)
            outcomes[delivery_id] = outcome
            look.done(delivery_id)
            if throttled:
                paused = [i for i in waiting if domains[i] == domains[delivery_id]]
                outcomes |= _hand_back(mailer, paused)
                waiting = [i for i in waiting if i not in paused]
            if waiting and mailer.clock.now() >= stop_at:
                outcomes |= _hand_back(mailer, waiting)
                break
    finally:
        mailer.transport.idle()
    return outcomes


def _send_one(
    mailer: Mailer, delivery_id: int, claimed: Draft, look: _LastLook
) -> tuple[Outcome, bool]:
    """Compose, hand over and record one claimed delivery; its outcome, and whether its
    domain asked for a pause (the batch's other emails to it then wait too)."""
    try:
        composed = compose(claimed, settings=mailer.settings, renderer=mailer.renderer)
    except Exception as exc:
        with transaction(mailer.sessions) as session:
            return _give_up(session, delivery_id, _unbuildable(delivery_id, exc)), False
    try:
        mailer.transport.send(
            signed(composed.raw, mailer.signer),
            mail_from=envelope_sender(mailer.settings, delivery_id),
            rcpt_to=composed.rcpt_to,
            ready=functools.partial(look, delivery_id),
        )
    except _Withdrawn as withdrawn:
        return _withdraw(mailer, delivery_id, withdrawn.refusal), False
    except TransportError as exc:
        with transaction(mailer.sessions) as session:
            return _record_failure(mailer, session, delivery_id, exc), exc.domain_throttled
    with writing(mailer.sessions) as connection:
        _record_sent(mailer, connection, delivery_id)
    return Outcome.SENT, False


def _claim(
    mailer: Mailer, connection: sa.Connection, delivery_ids: Sequence[int]
) -> dict[int, Outcome | Draft]:
    """Take the deliveries for this worker: for each, what to send when it is ours, else
    why not. The rows are locked in two statements, subscribers first in the order of
    their ids, so two claims of overlapping batches take turns instead of deadlocking;
    the changes are written at the end, one executemany per set of columns."""
    locked = lock_batch(connection, delivery_ids)
    holds = _holds(mailer, connection, [subscriber for _, subscriber in locked.values()])
    reads = Reads(connection)
    claims: dict[int, Outcome | Draft] = {}
    changes: dict[tuple[type[Delivery | Subscriber], tuple[str, ...]], list[dict[str, object]]]
    changes = {}
    for delivery_id in delivery_ids:
        if delivery_id in claims:
            continue
        if delivery_id not in locked:
            log.warning(
                "delivery %d does not exist; dropping its message",
                delivery_id,
                extra={"delivery_id": delivery_id},
            )
            claims[delivery_id] = Outcome.SKIPPED
            continue
        delivery, subscriber = locked[delivery_id]
        taken = _take(mailer, reads, holds, delivery, subscriber)
        claims[delivery_id] = taken.result
        for model, row_id, columns in (
            (Delivery, delivery.id, taken.delivery),
            (Subscriber, subscriber.id, taken.subscriber),
        ):
            if columns:
                changes.setdefault((model, tuple(sorted(columns))), []).append(
                    {**columns, "id_": row_id}
                )
    for (model, columns), rows in changes.items():
        connection.execute(_update(model, *columns), rows)
    return claims


def _hand_back(mailer: Mailer, delivery_ids: list[int]) -> dict[int, Outcome]:
    """Give back claimed deliveries this worker will not send now, uncounted: queued
    again as if new, unless the row is no longer ours."""
    if not delivery_ids:
        return {}
    with writing(mailer.sessions) as connection:
        lock_batch(connection, delivery_ids)
        connection.execute(_HAND_BACK, {"ids": delivery_ids, "now": mailer.clock.now()})
    return dict.fromkeys(delivery_ids, Outcome.HANDED_BACK)


_HAND_BACK = (
    sa.update(Delivery)
    .where(
        Delivery.id.in_(sa.bindparam("ids", expanding=True)),
        Delivery.status == DeliveryStatus.SENDING,
    )
    .values(
        status=DeliveryStatus.QUEUED,
        attempts=Delivery.attempts - 1,
        lease_until=None,
        retry_at=None,
        queued_at=sa.bindparam("now"),
    )
)


class _Taken(NamedTuple):
    """What the claim decided, and the columns it changes on each row."""

    result: Outcome | Draft
    delivery: dict[str, object]
    subscriber: dict[str, object]


def _take(mailer: Mailer, reads: Reads, holds: _Holds, delivery: Row, subscriber: Row) -> _Taken:
    now = holds.now
    changes: dict[str, object] = {}
    if delivery.status == DeliveryStatus.SENDING:
        if delivery.lease_until is not None and delivery.lease_until > now:
            return _Taken(Outcome.SKIPPED, {}, {})
        changes["ambiguous_resends"] = _resending(delivery, "taking over after an unknown outcome")
    elif delivery.status != DeliveryStatus.QUEUED or (
        delivery.retry_at is not None and delivery.retry_at > now
    ):
        return _Taken(Outcome.SKIPPED, {}, {})
    suppressed = holds.suppressed.get(email_hash(mailer.settings.secret_key, subscriber.email))
    resume_at = holds.paused.get(domain_pauses.domain_of(subscriber.email))
    refusal = recipients.refusal(delivery.kind, subscriber.status, suppressed)
    if refusal:
        return _Taken(Outcome.CANCELLED, changes | _cancelled(refusal), {})
    held_until = max(resume_at or now, _pause_end(delivery, subscriber, now))
    if held_until > now:
        return _Taken(Outcome.RETRY, changes | {"retry_at": held_until}, {})
    if delivery.attempts >= mailer.settings.max_attempts:
        reason = f"gave up after {delivery.attempts} attempts: {delivery.last_error}"
        return _Taken(Outcome.FAILED, changes | _failed(reason), {})
    changes["attempts"] = delivery.attempts + 1
    try:
        prepared = draft(
            reads,
            delivery,
            subscriber,
            settings=mailer.settings,
            tokens=mailer.tokens,
            now=now,
        )
    except Exception as exc:
        reason = _unbuildable(delivery.id, exc)
        return _Taken(Outcome.FAILED, changes | _failed(reason), {})
    claim = {
        "status": DeliveryStatus.SENDING,
        "retry_at": None,
        "lease_until": now + mailer.settings.send_lease,
        "message_id": prepared.msgid,
        "template_version_id": prepared.template_version_id,
    }
    return _Taken(prepared, changes | claim, {})


def _pause_end(delivery: Row, subscriber: Row, now: datetime) -> datetime:
    """Until when the subscriber's pause holds back this email (`now` if it does not): a
    lesson issued before the pause, queued or waiting for a retry, waits for its end (or
    for drip.subscriptions.resume to bring it forward) instead of going out during it."""
    if delivery.kind != DeliveryKind.STEP or subscriber.paused_until is None:
        return now
    return max(subscriber.paused_until, now)


class _Holds(NamedTuple):
    """What may hold back the emails of a claim, read for all of them at once: why
    addresses are suppressed (by email hash), until when domains are paused."""

    now: datetime
    suppressed: dict[str, str]
    paused: dict[str, datetime]


def _holds(mailer: Mailer, connection: sa.Connection, subscribers: list[Row]) -> _Holds:
    now = mailer.clock.now()
    secret = mailer.settings.secret_key
    hashes = sorted({email_hash(secret, subscriber.email) for subscriber in subscribers})
    domains = sorted({domain_pauses.domain_of(subscriber.email) for subscriber in subscribers})
    suppressed = connection.execute(_SUPPRESSED, {"hashes": hashes})
    paused = connection.execute(domain_pauses.PAUSED, {"domains": domains, "now": now})
    return _Holds(now, dict(suppressed.all()), dict(paused.all()))


def _unbuildable(delivery_id: int, exc: Exception) -> str:
    """Log why the message for this delivery cannot be made (a bad template, a name that
    fails the header checks): the delivery fails for good with the returned reason."""
    log.exception(
        "delivery %d could not be composed", delivery_id, extra={"delivery_id": delivery_id}
    )
    return f"could not build the message: {exc}"


def _cancelled(reason: str) -> dict[str, object]:
    return {"status": DeliveryStatus.CANCELLED, "last_error": reason, "lease_until": None}


def _failed(reason: str) -> dict[str, object]:
    return {
        "status": DeliveryStatus.FAILED,
        "last_error": reason[:500],
        "lease_until": None,
        "retry_at": None,
    }


class _Withdrawn(Exception):
    """The last look's answer that the email must not go: the row is no longer ours, or
    `refusal` says why the subscriber no longer gets it."""

    def __init__(self, refusal: str = "") -> None:
        super().__init__(refusal)
        self.refusal = refusal


LOOK_FRESH = 0.25
"""Seconds one last look answers for the rest of its batch. A look for each email cost
as much as its SMTP hand-over on loopback (docs/performance.md, run 13); one every
quarter of a second still stops an email within that of an unsubscribe committing, and
a relay slow enough to matter gets a look before nearly every email."""


class _LastLook:
    """The transport's `ready` for a batch: returns if the email may still go, the row
    ours and the subscriber not gone since the claim; raises _Withdrawn otherwise. It
    reads every unsent email of the batch in one look (two queries, no lock) and answers
    from that for LOOK_FRESH seconds. The transport calls it after any wait for a
    sending slot or a connection, just before the SMTP transaction, so an unsubscribe
    committed while the email waited still stops it."""

    def __init__(self, mailer: Mailer, drafts: dict[int, Draft]) -> None:
        self.mailer = mailer
        self.drafts = drafts
        self.unsent = set(drafts)
        self.hashes = {
            i: email_hash(mailer.settings.secret_key, draft.rcpt_to) for i, draft in drafts.items()
        }
        self.statuses: dict[int, tuple[str, str]] = {}
        self.suppressed: dict[str, str] = {}
        self.taken_at = -LOOK_FRESH

    def __call__(self, delivery_id: int) -> None:
        if time.monotonic() - self.taken_at >= LOOK_FRESH:
            self._look()
        statuses = self.statuses.get(delivery_id)
        if statuses is None or statuses[0] != DeliveryStatus.SENDING:
            raise _Withdrawn()
        suppressed = self.suppressed.get(self.hashes[delivery_id])
        refusal = recipients.refusal(self.drafts[delivery_id].kind, statuses[1], suppressed)
        if refusal:
            raise _Withdrawn(refusal)

    def done(self, delivery_id: int) -> None:
        self.unsent.discard(delivery_id)

    def _look(self) -> None:
        ids = sorted(self.unsent)
        with looking(self.mailer.sessions) as connection:
            statuses = connection.execute(_LAST_LOOK, {"ids": ids})
            self.statuses = {row[0]: (row[1], row[2]) for row in statuses}
            hashes = {"hashes": [self.hashes[i] for i in ids]}
            self.suppressed = dict(connection.execute(_SUPPRESSED, hashes).all())
        self.taken_at = time.monotonic()


def _withdraw(mailer: Mailer, delivery_id: int, refusal: str) -> Outcome:
    """Cancel a withdrawn email's delivery (rare: it locks), unless it is no longer ours."""
    if not refusal:
        return Outcome.SKIPPED
    with transaction(mailer.sessions) as session:
        locked = lock(session, delivery_id)
        if locked is None or locked[0].status != DeliveryStatus.SENDING:
            return Outcome.SKIPPED
        _apply(locked[0], _cancelled(refusal))
        return Outcome.CANCELLED


_LAST_LOOK = (
    sa.select(Delivery.id, Delivery.status, Subscriber.status)
    .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
    .where(Delivery.id.in_(sa.bindparam("ids", expanding=True)))
)
_SUPPRESSED = sa.select(Suppression.email_hash, Suppression.reason).where(
    Suppression.email_hash.in_(sa.bindparam("hashes", expanding=True))
)


def _record_sent(mailer: Mailer, connection: sa.Connection, delivery_id: int) -> None:
    """Lock the subscriber, then mark the delivery sent in the UPDATE that locks it and
    returns what the subscriber's new columns depend on."""
    subscriber = lock_subscriber(connection, delivery_id)
    if subscriber is None:
        return
    now = mailer.clock.now()
    delivery = connection.execute(_SENT, {"delivery_id": delivery_id, "now": now}).one()
    log.info("delivery %d sent", delivery_id, extra=log_fields(delivery))
    changes: dict[str, object] = {}
    if delivery.kind == DeliveryKind.CONFIRMATION:
        changes["confirmation_sent_at"] = now
    if delivery.kind == DeliveryKind.STEP:
        changes |= lesson_sent(
            connection,
            subscriber,
            step_id=delivery.step_id,
            due_at=delivery.due_at,
            now=now,
            default_timezone=mailer.settings.default_timezone,
        )
        if _finished(connection, subscriber):
            changes |= {"status": SubscriberStatus.COMPLETED, "ended_at": now}
    if changes:
        _write(connection, Subscriber, subscriber.id, changes)


def _finished(connection: sa.Connection, subscriber: Row) -> bool:
    """Whether the lesson just sent completes the series: the subscriber is active with
    nothing more to come, and it is the last lesson they were issued, not an earlier one
    sent again while the last one failed. Asked only of a last lesson, so most sends
    skip the query."""
    return (
        subscriber.status == SubscriberStatus.ACTIVE
        and subscriber.next_step is None
        and last_lesson(connection, subscriber.id) == DeliveryStatus.SENT
    )


_SENT = (
    sa.update(Delivery)
    .where(Delivery.id == sa.bindparam("delivery_id"))
    .values(status=DeliveryStatus.SENT, sent_at=sa.bindparam("now"), lease_until=None)
    .returning(
        Delivery.id, Delivery.subscriber_id, Delivery.kind, Delivery.step_id, Delivery.due_at
    )
)


def _write(
    connection: sa.Connection,
    model: type[Delivery | Subscriber],
    id_: int,
    changes: dict[str, object],
) -> None:
    connection.execute(_update(model, *sorted(changes)), {**changes, "id_": id_})


@functools.cache
def _update(model: type[Delivery | Subscriber], *columns: str) -> sa.Update:
    """The UPDATE of these columns of one row, built once per set of columns: building
    it afresh cost more than running it on SQLite."""
    return (
        sa.update(model)
        .where(model.id == sa.bindparam("id_"))
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
        return Outcome.FAILED
    if exc.domain_throttled:
        # The domain waits the ten minutes it asked for, even when this delivery gives up
        # now; the delivery's own back-off is longer on a late attempt and says nothing of
        # the domain.
        domain = domain_pauses.domain_of(subscriber.email)
        log.warning("domain_paused domain=%s for %s: %s", domain, domain_pauses.PAUSE, exc)
        domain_pauses.pause(session, domain, now + domain_pauses.PAUSE, str(exc))
    if delivery.attempts >= mailer.settings.max_attempts:
        _apply(delivery, _failed(f"gave up after {delivery.attempts} attempts: {exc}"))
        return Outcome.FAILED
    delay = RETRY_DELAYS[min(delivery.attempts, len(RETRY_DELAYS)) - 1]
    if exc.domain_throttled:
        delay = max(delay, domain_pauses.PAUSE)
    if exc.ambiguous:
        delivery.ambiguous_resends = _resending(
            delivery, f"retrying in {delay} though the relay may have it: {exc}"
        )
    else:
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


def _resending(delivery: Row | Delivery, why: str) -> int:
    """Log that this delivery goes out again after an outcome nobody knows (the relay may
    have the message already: the one duplicate drip allows); its new ambiguous_resends,
    which /metrics adds up as drip_ambiguous_resends_total."""
    log.warning(
        "ambiguous_resend delivery=%d attempts=%d: %s",
        delivery.id,
        delivery.attempts,
        why,
        extra=log_fields(delivery, event="ambiguous_resend"),
    )
    return delivery.ambiguous_resends + 1


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


def _give_up(session: Session, delivery_id: int, reason: str) -> Outcome:
    locked = lock(session, delivery_id)
    if locked is None:
        return Outcome.SKIPPED
    _apply(locked[0], _failed(reason))
    return Outcome.FAILED


def _apply(row: Delivery | Subscriber, changes: dict[str, object]) -> None:
    """Make a decision's changes on an ORM object (the rare outcomes, which need the ORM)."""
    for name, value in changes.items():
        setattr(row, name, value)

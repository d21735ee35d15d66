"""Sending one delivery, by id, exactly once as far as drip can make it so.

Three short steps, each its own transaction except the SMTP call in the middle:
  1. claim: move the row from `queued` to `sending` with a lease, count the attempt,
     re-check the subscriber, render the current template version and record it;
  2. hand the message to the transport, holding no database lock;
  3. record the outcome: `sent`, or back to `queued` for a temporary failure, or
     `failed` (and the subscriber `bounced` when the relay refused the address).
A redelivered message finds the row no longer `queued` and does nothing, so the actor is
idempotent; the only duplicate possible is a worker dying between the relay's "250" and
step 3, which the sweeper logs as `ambiguous_resend` when the lease runs out.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drip.clock import Clock
from drip.db import FOR_NO_KEY_UPDATE, SessionFactory, transaction
from drip.errors import DripError, TransportError
from drip.messages import Envelope, build_message, message_id, recipient_address
from drip.models import (
    ConsentRecord,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Sequence,
    Step,
    Subscriber,
    SubscriberStatus,
)
from drip.privacy import is_suppressed
from drip.rendering import Footer, RenderedEmail, Renderer
from drip.series_files import (
    CONFIRM_FOLDER,
    PRIVACY_FOLDER,
    latest_version,
    read_email,
    version_template,
)
from drip.settings import Settings
from drip.subscriptions import mark_bounced
from drip.tokens import CONFIRM, PRIVACY, UNSUBSCRIBE, Tokens
from drip.transports import Transport

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class _Prepared:
    message: EmailMessage
    rcpt_to: str


def send_delivery(mailer: Mailer, delivery_id: int) -> Outcome:
    with transaction(mailer.sessions) as session:
        prepared = _claim(mailer, session, delivery_id)
    if not isinstance(prepared, _Prepared):
        return prepared
    try:
        mailer.transport.send(
            prepared.message,
            mail_from=mailer.settings.sender.addr_spec,
            rcpt_to=prepared.rcpt_to,
        )
    except TransportError as exc:
        with transaction(mailer.sessions) as session:
            return _record_failure(mailer, session, delivery_id, exc)
    with transaction(mailer.sessions) as session:
        _record_sent(mailer, session, delivery_id, str(prepared.message["Message-ID"]))
    return Outcome.SENT


def _claim(mailer: Mailer, session: Session, delivery_id: int) -> _Prepared | Outcome:
    now = mailer.clock.now()
    delivery = session.get(Delivery, delivery_id, with_for_update=FOR_NO_KEY_UPDATE)
    if delivery is None:
        log.warning("delivery %d does not exist; dropping its message", delivery_id)
        return Outcome.SKIPPED
    if delivery.status == DeliveryStatus.SENDING:
        if delivery.lease_until is not None and delivery.lease_until > now:
            return Outcome.SKIPPED
        log.warning(
            "ambiguous_resend delivery=%d attempts=%d: taking over after an unknown outcome",
            delivery.id,
            delivery.attempts,
        )
    elif delivery.status != DeliveryStatus.QUEUED:
        return Outcome.SKIPPED
    subscriber = session.get_one(Subscriber, delivery.subscriber_id)
    refusal = _refusal(mailer, session, delivery, subscriber)
    if refusal:
        delivery.status = DeliveryStatus.CANCELLED
        delivery.last_error = refusal
        return Outcome.CANCELLED
    if delivery.attempts >= mailer.settings.max_attempts:
        delivery.status = DeliveryStatus.FAILED
        delivery.last_error = f"gave up after {delivery.attempts} attempts: {delivery.last_error}"
        _complete_if_done(subscriber, now)
        return Outcome.FAILED
    try:
        rendered = _render(mailer, session, delivery, subscriber)
        message = build_message(
            rendered,
            Envelope(
                sender=mailer.settings.sender,
                recipient=recipient_address(subscriber.email, subscriber.first_name),
                list_id=_list_id(mailer, session, subscriber),
                unsubscribe_url=_unsubscribe_url(mailer, subscriber),
                date=now,
            ),
            msgid=message_id(
                delivery.id, secret=mailer.settings.secret_key, domain=mailer.settings.mail_domain
            ),
        )
    except DripError as exc:
        delivery.status = DeliveryStatus.FAILED
        delivery.last_error = f"could not build the message: {exc}"[:500]
        log.error("delivery %d failed to render: %s", delivery.id, exc)
        return Outcome.FAILED
    delivery.status = DeliveryStatus.SENDING
    delivery.attempts += 1
    delivery.lease_until = now + mailer.settings.send_lease
    delivery.message_id = str(message["Message-ID"])
    return _Prepared(message, subscriber.email)


def _refusal(mailer: Mailer, session: Session, delivery: Delivery, subscriber: Subscriber) -> str:
    """Why this email must not go out now, or "" when it may."""
    if delivery.kind in ALLOWED and subscriber.status not in ALLOWED[delivery.kind]:
        return f"subscriber is {subscriber.status.value}"
    suppressed = delivery.kind == DeliveryKind.STEP and is_suppressed(
        session, mailer.settings.secret_key, subscriber.email
    )
    return "address is suppressed" if suppressed else ""


def _render(
    mailer: Mailer, session: Session, delivery: Delivery, subscriber: Subscriber
) -> RenderedEmail:
    sequence = session.get_one(Sequence, subscriber.sequence_id)
    total = session.scalar(
        sa.select(sa.func.max(Step.number)).where(Step.sequence_id == sequence.id)
    )
    context: dict[str, str | int] = {
        "first_name": subscriber.first_name,
        "series_name": sequence.name,
        "sender_name": mailer.settings.sender.display_name or sequence.name,
        "lesson_total": total or 0,
    }
    if delivery.kind == DeliveryKind.CONFIRMATION:
        template = read_email(mailer.settings.emails_dir / CONFIRM_FOLDER)
        context["confirm_url"] = _confirm_url(mailer, session, subscriber)
        context["confirm_days"] = max(1, mailer.settings.confirm_max_age.days)
        reason = (
            f"Someone, hopefully you, asked to join {sequence.name} with this address. "
            "Without a click on the confirm button you will get nothing more from us."
        )
    elif delivery.kind == DeliveryKind.PRIVACY:
        template = read_email(mailer.settings.emails_dir / PRIVACY_FOLDER)
        token = mailer.tokens.make(PRIVACY, [subscriber.id])
        context["privacy_url"] = f"{mailer.settings.base_url}/privacy/{token}"
        reason = (
            "Someone, hopefully you, asked on our privacy page for the data we keep about "
            "this address. If it was not you, ignore this email: nothing changes."
        )
    else:
        step = session.get_one(Step, delivery.step_id)
        version = latest_version(session, step.id)
        if version is None:
            raise DripError(f"step {step.number} has no template")
        delivery.template_version_id = version.id
        template = version_template(version)
        context["lesson_number"] = step.number
        reason = f"You are getting this because you signed up for {sequence.name} and confirmed."
    footer = Footer(
        reason=reason,
        unsubscribe_url=_unsubscribe_url(mailer, subscriber),
        postal_address=mailer.settings.postal_address,
        sender_name=str(context["sender_name"]),
    )
    return mailer.renderer.render(template, context, footer)


def _record_sent(mailer: Mailer, session: Session, delivery_id: int, msgid: str) -> None:
    delivery = session.get_one(Delivery, delivery_id, with_for_update=FOR_NO_KEY_UPDATE)
    now = mailer.clock.now()
    delivery.status = DeliveryStatus.SENT
    delivery.sent_at = now
    delivery.lease_until = None
    delivery.message_id = msgid
    subscriber = session.get_one(Subscriber, delivery.subscriber_id)
    if delivery.kind == DeliveryKind.CONFIRMATION:
        subscriber.confirmation_sent_at = now
    _complete_if_done(subscriber, now)


def _record_failure(
    mailer: Mailer, session: Session, delivery_id: int, exc: TransportError
) -> Outcome:
    delivery = session.get_one(Delivery, delivery_id, with_for_update=FOR_NO_KEY_UPDATE)
    subscriber = session.get_one(Subscriber, delivery.subscriber_id)
    now = mailer.clock.now()
    delivery.last_error = str(exc)[:500]
    delivery.lease_until = None
    if exc.permanent:
        log.warning("delivery %d refused permanently: %s", delivery.id, exc)
        delivery.status = DeliveryStatus.FAILED
        mark_bounced(session, subscriber, now)
        return Outcome.FAILED
    log.info("delivery %d failed temporarily (attempt %d): %s", delivery.id, delivery.attempts, exc)
    delivery.status = DeliveryStatus.QUEUED
    delivery.queued_at = now
    return Outcome.RETRY


def _complete_if_done(subscriber: Subscriber, now: datetime) -> None:
    if subscriber.status == SubscriberStatus.ACTIVE and subscriber.next_step is None:
        subscriber.status = SubscriberStatus.COMPLETED
        subscriber.ended_at = now


def _list_id(mailer: Mailer, session: Session, subscriber: Subscriber) -> str:
    sequence = session.get_one(Sequence, subscriber.sequence_id)
    return f"{sequence.name} <{sequence.slug}.{mailer.settings.mail_domain}>"


def _unsubscribe_url(mailer: Mailer, subscriber: Subscriber) -> str:
    token = mailer.tokens.make(UNSUBSCRIBE, [subscriber.id])
    return f"{mailer.settings.base_url}/unsubscribe/{token}"


def _confirm_url(mailer: Mailer, session: Session, subscriber: Subscriber) -> str:
    consent_id = session.scalar(
        sa.select(sa.func.max(ConsentRecord.id)).where(ConsentRecord.subscriber_id == subscriber.id)
    )
    token = mailer.tokens.make(CONFIRM, [subscriber.id, consent_id or 0])
    return f"{mailer.settings.base_url}/confirm/{token}"

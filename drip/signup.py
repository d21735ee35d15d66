"""The double opt-in journey as plain functions: subscribe, then confirm.

Whatever the address's state, `subscribe` looks the same from outside (the web layer
gives one answer for every case); what differs is only which email, if any, is queued.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.orm import Session

from drip import timing
from drip.db import FOR_NO_KEY_UPDATE
from drip.errors import BadToken, InvalidInput, NotFound
from drip.headers import check_header_text, clean_first_name
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
from drip.schedule import insert_delivery, issue_next, steps_of

RESEND_INTERVAL = timedelta(minutes=10)
CONSENT_TEXT = (
    "By signing up you agree to receive {series}: a welcome email and one lesson a day, "
    "sent by {sender}. We keep your address, first name, timezone and a record of this "
    "consent only to send the series. Every email has a one-click unsubscribe link, and you "
    "can download or erase your data at any time (see our privacy page)."
)


@dataclass(frozen=True)
class SignupRequest:
    email: str
    first_name: str = ""
    timezone: str = ""
    sequence: str = ""
    ip: str = ""
    user_agent: str = ""
    page: str = ""


@dataclass(frozen=True)
class Seen:
    """Who confirmed, from where: the evidence stored on the consent record."""

    ip: str = ""
    user_agent: str = ""


def normalise_email(raw: str) -> str:
    check_header_text(raw, what="email")
    try:
        checked = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"email: {exc}", field="email") from None
    return checked.normalized.lower()


def find_sequence(session: Session, slug: str) -> Sequence:
    """The series named by `slug`, or the first one installed when no slug is given."""
    query = sa.select(Sequence).order_by(Sequence.id).limit(1)
    if slug:
        query = query.where(Sequence.slug == slug)
    sequence = session.scalar(query)
    if sequence is None:
        raise NotFound(f"no series {slug!r}" if slug else "no series is installed")
    return sequence


def subscribe(
    session: Session, request: SignupRequest, *, now: datetime, consent_text: str
) -> int | None:
    """Record a signup; returns the id of a confirmation delivery to queue, if any.

    new, or ended earlier: a fresh pending signup with its own consent record;
    pending: the confirmation again, at most once per RESEND_INTERVAL;
    active or completed: nothing changes.
    """
    email = normalise_email(request.email)
    first_name = clean_first_name(request.first_name)
    tz = request.timezone.strip() or "UTC"
    try:
        timing.zone(tz)
    except ValueError:
        raise InvalidInput(f"timezone: unknown timezone {tz[:64]!r}", field="timezone") from None
    sequence = find_sequence(session, request.sequence.strip())
    subscriber = session.scalar(
        sa.select(Subscriber)
        .where(Subscriber.sequence_id == sequence.id, Subscriber.email == email)
        .with_for_update(key_share=True)
    )
    if subscriber is not None and subscriber.status in (
        SubscriberStatus.ACTIVE,
        SubscriberStatus.COMPLETED,
    ):
        return None
    if subscriber is not None and subscriber.status == SubscriberStatus.PENDING:
        last = subscriber.confirmation_sent_at or subscriber.created_at
        if now - last < RESEND_INTERVAL:
            return None
        subscriber.confirmation_sent_at = now
        return _queue_confirmation(session, subscriber, now)
    if subscriber is None:
        subscriber = Subscriber(sequence_id=sequence.id, email=email, created_at=now)
        session.add(subscriber)
    subscriber.status = SubscriberStatus.PENDING
    subscriber.first_name = first_name
    subscriber.timezone = tz
    subscriber.next_step = None
    subscriber.next_send_at = None
    subscriber.confirmed_at = None
    subscriber.ended_at = None
    subscriber.confirmation_sent_at = now
    session.flush()
    session.add(
        ConsentRecord(
            subscriber_id=subscriber.id,
            created_at=now,
            ip=request.ip[:45],
            user_agent=request.user_agent[:400],
            page=request.page[:500],
            consent_text=consent_text,
        )
    )
    return _queue_confirmation(session, subscriber, now)


def _queue_confirmation(session: Session, subscriber: Subscriber, now: datetime) -> int | None:
    return insert_delivery(
        session,
        subscriber_id=subscriber.id,
        kind=DeliveryKind.CONFIRMATION,
        step_id=None,
        now=now,
    )


def pending_signup(session: Session, subscriber_id: int, consent_id: int) -> Subscriber:
    """The subscriber a confirmation link names, if the link is still the current one."""
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=FOR_NO_KEY_UPDATE)
    latest = session.scalar(
        sa.select(sa.func.max(ConsentRecord.id)).where(ConsentRecord.subscriber_id == subscriber_id)
    )
    if subscriber is None or latest != consent_id:
        raise BadToken("this confirmation link is no longer valid")
    return subscriber


def confirm(
    session: Session, subscriber_id: int, consent_id: int, *, now: datetime, seen: Seen
) -> int | None:
    """Activate a pending subscriber and issue the welcome; returns its delivery id.

    Confirming again with the same link is harmless and returns None; a link from an
    older signup, or for someone who has since unsubscribed, is refused.
    """
    subscriber = pending_signup(session, subscriber_id, consent_id)
    if subscriber.status in (SubscriberStatus.ACTIVE, SubscriberStatus.COMPLETED):
        return None
    if subscriber.status != SubscriberStatus.PENDING:
        raise BadToken("this confirmation link is no longer valid")
    consent = session.get_one(ConsentRecord, consent_id)
    consent.confirmed_at = now
    consent.confirm_ip = seen.ip[:45]
    consent.confirm_user_agent = seen.user_agent[:400]
    subscriber.status = SubscriberStatus.ACTIVE
    subscriber.confirmed_at = now
    steps = steps_of(session, subscriber.sequence_id)
    subscriber.next_step = _first_unsent_step(session, subscriber, [s.number for s in steps])
    subscriber.next_send_at = now
    return issue_next(session, subscriber, steps, now)


def _first_unsent_step(session: Session, subscriber: Subscriber, numbers: list[int]) -> int | None:
    """Where a returning subscriber resumes: each step is sent to a subscriber only once
    (deliveries are unique per subscriber and step), so someone who unsubscribed after
    lesson 4 and signs up again continues with lesson 5. Steps cancelled unsent are
    forgotten so they can be issued again."""
    session.execute(
        sa.delete(Delivery).where(
            Delivery.subscriber_id == subscriber.id,
            Delivery.kind == DeliveryKind.STEP,
            Delivery.status == DeliveryStatus.CANCELLED,
        )
    )
    issued = set(
        session.scalars(
            sa.select(Step.number)
            .join(Delivery, Delivery.step_id == Step.id)
            .where(Delivery.subscriber_id == subscriber.id)
        )
    )
    return next((n for n in numbers if n not in issued), None)

"""The download behind a privacy link: everything held about one address (GDPR Art. 15,
standards LAW-13).

That is more than its subscriptions. A signup a worker gave up on (drip.intake) stays in
`received_signups` up to DRIP_PENDING_DAYS with the visitor's IP and browser; a
suppression (a bounce, a complaint, a declined signup, an erasure) and the confirmation
emails counted against list-bombing (drip.list_bombing) are kept under the address's
keyed hash. The person can match them to their address only through us, so they are in
the export too. tests/test_privacy.py fails when a table holding addresses is left out.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drip import consent
from drip.consent import iso
from drip.models import (
    ConfirmationMail,
    Delivery,
    ReceivedSignup,
    Sequence,
    Step,
    Subscriber,
    Suppression,
)
from drip.privacy import email_hash, subscriptions_of


def export(session: Session, email: str, *, secret: str) -> dict[str, Any]:
    """Everything stored about `email`, as plain JSON-ready data; `secret` finds the rows
    kept under its keyed hash."""
    hashed = email_hash(secret, email)
    suppression = session.scalar(sa.select(Suppression).where(Suppression.email_hash == hashed))
    confirmations = session.scalars(
        sa.select(ConfirmationMail.queued_at)
        .where(ConfirmationMail.email_hash == hashed)
        .order_by(ConfirmationMail.queued_at)
    )
    return {
        "email": email,
        "subscriptions": [_subscription(session, s) for s in subscriptions_of(session, email)],
        "signups_received": _received(session, email),
        "suppression": None
        if suppression is None
        else {"reason": suppression.reason, "since": iso(suppression.created_at)},
        "confirmation_emails": [iso(at) for at in confirmations],
    }


def as_json(exported: dict[str, Any]) -> str:
    """The download's text, the same from the privacy page and `drip privacy export`:
    indented for a person to read, with names in any script kept as they are."""
    return json.dumps(exported, indent=2, ensure_ascii=False)


def holds_nothing(exported: dict[str, Any]) -> bool:
    """Whether an export found no row at all, not even one under the keyed hash: the
    honest answer to an access request, and also what a mistyped address gives."""
    return not any(value for key, value in exported.items() if key != "email")


def _received(session: Session, email: str) -> list[dict[str, Any]]:
    """Signups received and not handled yet: in a worker's hands, or given up on."""
    rows = session.execute(
        sa.select(ReceivedSignup, Sequence.slug)
        .join(Sequence, Sequence.id == ReceivedSignup.sequence_id)
        .where(ReceivedSignup.email == email)
        .order_by(ReceivedSignup.id)
    )
    return [
        {
            "series": slug,
            "received_at": iso(row.received_at),
            "email_entered": row.email_entered,
            "first_name": row.first_name,
            "timezone": row.timezone,
            "form_id": row.form_id,
            "page_url": row.page,
            "referrer": row.referrer,
            "embed_origin": row.embed_origin,
            "ip": row.ip,
            "user_agent": row.user_agent,
            "notice_shown": row.consent_text,
            "privacy_policy_version": row.privacy_policy,
            "handling_attempts": row.attempts,
        }
        for row, slug in rows
    ]


def _subscription(session: Session, subscriber: Subscriber) -> dict[str, Any]:
    deliveries = session.execute(
        sa.select(Delivery, Step.number)
        .outerjoin(Step, Step.id == Delivery.step_id)
        .where(Delivery.subscriber_id == subscriber.id)
        .order_by(Delivery.id)
    )
    return {
        "series": session.get_one(Sequence, subscriber.sequence_id).slug,
        "first_name": subscriber.first_name,
        "timezone": subscriber.timezone,
        "send_hour": subscriber.send_hour,
        "status": subscriber.status.value,
        "next_step": subscriber.next_step,
        "next_send_at": iso(subscriber.next_send_at),
        "paused_until": iso(subscriber.paused_until),
        "signed_up_at": iso(subscriber.created_at),
        "confirmed_at": iso(subscriber.confirmed_at),
        "confirmation_sent_at": iso(subscriber.confirmation_sent_at),
        "last_lesson_sent_at": iso(subscriber.last_sent_at),
        "ended_at": iso(subscriber.ended_at),
        "consent_events": [
            consent.event_record(event, text)
            for event, text in consent.events_of(session, subscriber.id)
        ],
        "emails": [
            {
                "kind": d.kind.value,
                "step": number,
                "status": d.status.value,
                "message_id": d.message_id,
                "created_at": iso(d.created_at),
                "queued_at": iso(d.queued_at),
                "sent_at": iso(d.sent_at),
                "retry_at": iso(d.retry_at),
                "attempts": d.attempts,
                "last_error": d.last_error,
                "bounce": d.bounce,
                "complained_at": iso(d.complained_at),
            }
            for d, number in deliveries
        ],
    }

"""A past reader signed up again, and the purge of signups never confirmed.

Only someone who unsubscribed can sign up again to the same series (drip.signup.subscribe),
and that signup makes their row pending as if they were new: it clears `confirmed_at`
and `ended_at` and takes the name and timezone the form gave. Anyone can type the
address into the form, so the row cannot tell who never confirmed; the consent log can.
Left unconfirmed, that signup goes like any other (standards LAW-16), but the
subscription the reader ended stays, with its consent record, until DRIP_RETENTION_DAYS
after it ended (LAW-21).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drip.models import (
    ConsentEvent,
    ConsentEventKind,
    Delivery,
    DeliveryKind,
    Subscriber,
    SubscriberStatus,
)

LAST_CONFIRMED_SIGNUP = (
    sa.select(sa.func.max(ConsentEvent.signup_id))
    .where(
        ConsentEvent.subscriber_id == Subscriber.id,
        ConsentEvent.kind == ConsentEventKind.CONFIRM,
    )
    .scalar_subquery()
)
"""The id of the subscriber's latest confirmed signup, in a query on subscribers; None
for someone who never confirmed. Migration 0014 logged a confirmation for every signup
confirmed before the log existed."""


def drop_signups_after(session: Session, subscriber_id: int, confirmed_signup: int) -> set[int]:
    """Delete the subscriber's signups newer than `confirmed_signup`, their latest
    confirmed one, with the events that name them (the foreign key cascades) and the
    confirmation emails sent since; returns the notices those signups pointed to, for
    drip.consent.drop_unused_texts. Call inside drip.consent.erasing, the row locked.

    The subscriber is then unsubscribed again, confirmed and ended when the log says.
    The name goes: the new signup replaced the one the reader confirmed, and a confirmed
    row's name is used in mail to the address (drip.composing). The timezone stays; only
    an undo of the unsubscribe would send by it. A withdrawal from before the log, which
    left no event, is dated by the first signup dropped, when it had ended at the latest.
    """
    dropped = session.execute(
        sa.delete(ConsentEvent)
        .where(
            ConsentEvent.subscriber_id == subscriber_id,
            ConsentEvent.kind == ConsentEventKind.SIGNUP,
            ConsentEvent.id > confirmed_signup,
        )
        .returning(ConsentEvent.occurred_at, ConsentEvent.consent_text_id)
    ).all()
    if not dropped:
        return set()  # nothing newer than the confirmation: a row edited by hand
    signed_up_again = min(occurred_at for occurred_at, _ in dropped)
    session.execute(
        sa.delete(Delivery).where(
            Delivery.subscriber_id == subscriber_id,
            Delivery.kind == DeliveryKind.CONFIRMATION,
            Delivery.created_at >= signed_up_again,
        )
    )
    confirmed = session.scalars(
        sa.select(ConsentEvent)
        .where(
            ConsentEvent.subscriber_id == subscriber_id,
            ConsentEvent.kind == ConsentEventKind.CONFIRM,
            ConsentEvent.signup_id == confirmed_signup,
        )
        .order_by(ConsentEvent.id.desc())
        .limit(1)
    ).one()
    withdrawn = session.scalar(
        sa.select(sa.func.max(ConsentEvent.occurred_at)).where(
            ConsentEvent.subscriber_id == subscriber_id,
            ConsentEvent.kind == ConsentEventKind.WITHDRAW,
        )
    )
    subscriber = session.get_one(Subscriber, subscriber_id)
    subscriber.status = SubscriberStatus.UNSUBSCRIBED
    subscriber.first_name = ""
    subscriber.confirmed_at = confirmed.occurred_at
    subscriber.confirmation_sent_at = confirmed.confirmation_sent_at
    subscriber.ended_at = withdrawn or signed_up_again
    return {text_id for _, text_id in dropped if text_id is not None}

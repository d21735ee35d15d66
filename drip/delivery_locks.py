"""Row locks on a delivery, always its subscriber first, then the delivery.

Sending, unsubscribing and scheduling all lock in that order, so none of them can
deadlock another. The statements are built once: building a statement costs more
Python than running it on SQLite, and sending runs them for every email.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drip.db import FOR_NO_KEY_UPDATE
from drip.models import Delivery, Subscriber


def lock(session: Session, delivery_id: int) -> tuple[Delivery, Subscriber] | None:
    """Lock the delivery's subscriber, then the delivery; None if there is no such
    delivery."""
    subscriber = lock_subscriber(session, delivery_id)
    if subscriber is None:
        return None
    return session.scalars(_DELIVERY, {"delivery_id": delivery_id}).one(), subscriber


def lock_subscriber(session: Session, delivery_id: int) -> Subscriber | None:
    """Lock the delivery's subscriber only, or None if there is no such delivery."""
    return session.scalars(_SUBSCRIBER, {"delivery_id": delivery_id}).one_or_none()


_SUBSCRIBER = (
    sa.select(Subscriber)
    .where(
        Subscriber.id
        == sa.select(Delivery.subscriber_id)
        .where(Delivery.id == sa.bindparam("delivery_id"))
        .scalar_subquery()
    )
    .with_for_update(**FOR_NO_KEY_UPDATE)
)
_DELIVERY = (
    sa.select(Delivery)
    .where(Delivery.id == sa.bindparam("delivery_id"))
    .with_for_update(**FOR_NO_KEY_UPDATE)
)

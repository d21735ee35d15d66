"""Ending a subscription: unsubscribe and bounce, with what is in flight cancelled at once.

Ending sets every still-queued delivery of the subscriber to `cancelled` in the same
transaction, and the sending claim re-reads the subscriber's status, so nothing leaves
after the change commits, not even a message already waiting in Redis.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drip.db import FOR_NO_KEY_UPDATE
from drip.models import Delivery, DeliveryStatus, Subscriber, SubscriberStatus

ENDABLE = (SubscriberStatus.PENDING, SubscriberStatus.ACTIVE)


def unsubscribe(session: Session, subscriber_id: int, now: datetime) -> Subscriber | None:
    """Idempotent: unsubscribing twice, after the series ended, or after the subscriber was
    erased (None) changes nothing more and is not an error."""
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=FOR_NO_KEY_UPDATE)
    if subscriber is not None and subscriber.status in ENDABLE:
        end(session, subscriber, SubscriberStatus.UNSUBSCRIBED, now)
    return subscriber


def mark_bounced(session: Session, subscriber: Subscriber, now: datetime) -> None:
    if subscriber.status in (*ENDABLE, SubscriberStatus.COMPLETED):
        end(session, subscriber, SubscriberStatus.BOUNCED, now)


def end(session: Session, subscriber: Subscriber, status: SubscriberStatus, now: datetime) -> None:
    subscriber.status = status
    subscriber.ended_at = now
    subscriber.next_step = None
    subscriber.next_send_at = None
    session.execute(
        sa.update(Delivery)
        .where(Delivery.subscriber_id == subscriber.id, Delivery.status == DeliveryStatus.QUEUED)
        .values(status=DeliveryStatus.CANCELLED, last_error=f"subscriber {status.value}")
    )

"""Row locks on a delivery, always its subscriber first, then the delivery.

Sending, unsubscribing and scheduling all lock in that order, so none of them can
deadlock another. The statements are built once and read plain columns: building a
statement, or loading ORM objects, costs more Python than running it on SQLite, and
sending runs them for every email.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drip.db import FOR_NO_KEY_UPDATE
from drip.models import Delivery, Subscriber

Row = sa.Row[Any]


def lock_rows(connection: sa.Connection, delivery_id: int) -> tuple[Row, Row] | None:
    """Lock the delivery's subscriber, then the delivery, and read both rows' columns;
    None if there is no such delivery."""
    subscriber = lock_subscriber(connection, delivery_id)
    if subscriber is None:
        return None
    return connection.execute(_DELIVERY, {"delivery_id": delivery_id}).one(), subscriber


def lock_batch(
    connection: sa.Connection, delivery_ids: Sequence[int]
) -> dict[int, tuple[Row, Row]]:
    """`lock_rows` for many deliveries in two statements: their subscribers, in the order
    of their ids, then the deliveries. Two batches that share subscribers lock them in
    the same order, so they take turns instead of deadlocking. Deliveries that do not
    exist are left out."""
    ids = {"ids": list(delivery_ids)}
    subscribers = {row.id: row for row in connection.execute(_SUBSCRIBERS, ids)}
    return {
        delivery.id: (delivery, subscribers[delivery.subscriber_id])
        for delivery in connection.execute(_DELIVERIES, ids)
        if delivery.subscriber_id in subscribers
    }


def lock(session: Session, delivery_id: int) -> tuple[Delivery, Subscriber] | None:
    """`lock_rows` for the rare outcomes that change a subscriber the ORM way (a bounce):
    the rows are this transaction's once locked, so reading them as objects is safe."""
    locked = lock_rows(session.connection(), delivery_id)
    if locked is None:
        return None
    delivery = session.get_one(Delivery, delivery_id)
    return delivery, session.get_one(Subscriber, delivery.subscriber_id)


def lock_subscriber(connection: sa.Connection, delivery_id: int) -> Row | None:
    """Lock the delivery's subscriber only, or None if there is no such delivery."""
    return connection.execute(_SUBSCRIBER, {"delivery_id": delivery_id}).one_or_none()


_SUBSCRIBER = (
    sa.select(*Subscriber.__table__.c)
    .where(
        Subscriber.id
        == sa.select(Delivery.subscriber_id)
        .where(Delivery.id == sa.bindparam("delivery_id"))
        .scalar_subquery()
    )
    .with_for_update(**FOR_NO_KEY_UPDATE)
)
_DELIVERY = (
    sa.select(*Delivery.__table__.c)
    .where(Delivery.id == sa.bindparam("delivery_id"))
    .with_for_update(**FOR_NO_KEY_UPDATE)
)
_IDS = sa.bindparam("ids", expanding=True)
_SUBSCRIBERS = (
    sa.select(*Subscriber.__table__.c)
    .where(Subscriber.id.in_(sa.select(Delivery.subscriber_id).where(Delivery.id.in_(_IDS))))
    .order_by(Subscriber.id)
    .with_for_update(**FOR_NO_KEY_UPDATE)
)
_DELIVERIES = (
    sa.select(*Delivery.__table__.c)
    .where(Delivery.id.in_(_IDS))
    .order_by(Delivery.id)
    .with_for_update(**FOR_NO_KEY_UPDATE)
)

"""How the series performs: aggregate queries only, so they stay fast on a big list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drip.models import Delivery, DeliveryKind, DeliveryStatus, Step, Subscriber, SubscriberStatus


@dataclass(frozen=True)
class StepStats:
    number: int
    sent: int
    failed: int
    left_after: int
    """Subscribers who unsubscribed after this step was their last one."""


@dataclass(frozen=True)
class Overview:
    by_status: dict[str, int]
    confirmed: int
    signups: list[tuple[date, int]]
    confirmations: list[tuple[date, int]]
    steps: list[StepStats]

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def confirmation_rate(self) -> float | None:
        return self.confirmed / self.total if self.total else None


def overview(session: Session, sequence_id: int, *, now: datetime, days: int = 30) -> Overview:
    since = now - timedelta(days=days)
    by_status = dict(
        session.execute(
            sa.select(Subscriber.status, sa.func.count())
            .where(Subscriber.sequence_id == sequence_id)
            .group_by(Subscriber.status)
        ).all()
    )
    confirmed = session.scalar(
        sa.select(sa.func.count()).where(
            Subscriber.sequence_id == sequence_id, Subscriber.confirmed_at.is_not(None)
        )
    )
    return Overview(
        by_status={status.value: count for status, count in by_status.items()},
        confirmed=confirmed or 0,
        signups=_per_day(session, Subscriber.created_at, sequence_id, since, days),
        confirmations=_per_day(session, Subscriber.confirmed_at, sequence_id, since, days),
        steps=_step_stats(session, sequence_id),
    )


def _per_day(
    session: Session,
    column: sa.ColumnElement[datetime],
    sequence_id: int,
    since: datetime,
    days: int,
) -> list[tuple[date, int]]:
    """Counts per UTC day, the days the chart is labelled with. SQLite stores UTC
    already; PostgreSQL's cast of a timestamptz to a date takes the day in the session's
    timezone, which the server's or database's configuration chooses, so the instant is
    turned into UTC wall time first. In the query rather than by setting the timezone on
    drip's connections: PgBouncer (docs/deploy.md) refuses startup options and does not
    keep a session's SET in transaction pooling."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        day = sa.func.date(column)
    else:
        day = sa.cast(sa.func.timezone("UTC", column), sa.Date)
    rows = session.execute(
        sa.select(day, sa.func.count())
        .where(Subscriber.sequence_id == sequence_id, column >= since)
        .group_by(day)
    ).all()
    counts = {(d if isinstance(d, date) else date.fromisoformat(d)): n for d, n in rows}
    first = since.date()
    return [
        (first + timedelta(days=i), counts.get(first + timedelta(days=i), 0))
        for i in range(days + 1)
    ]


def _step_stats(session: Session, sequence_id: int) -> list[StepStats]:
    outcomes = session.execute(
        sa.select(Step.number, Delivery.status, sa.func.count())
        .join(Delivery, Delivery.step_id == Step.id)
        .where(Step.sequence_id == sequence_id, Delivery.kind == DeliveryKind.STEP)
        .group_by(Step.number, Delivery.status)
    ).all()
    last_step = (
        sa.select(Delivery.subscriber_id, sa.func.max(Step.number).label("last"))
        .join(Step, Step.id == Delivery.step_id)
        .where(Step.sequence_id == sequence_id, Delivery.status == DeliveryStatus.SENT)
        .group_by(Delivery.subscriber_id)
        .subquery()
    )
    left = dict(
        session.execute(
            sa.select(last_step.c.last, sa.func.count())
            .join(Subscriber, Subscriber.id == last_step.c.subscriber_id)
            .where(Subscriber.status == SubscriberStatus.UNSUBSCRIBED)
            .group_by(last_step.c.last)
        ).all()
    )
    numbers = session.scalars(
        sa.select(Step.number).where(Step.sequence_id == sequence_id).order_by(Step.number)
    ).all()
    counted = {(n, status): c for n, status, c in outcomes}
    return [
        StepStats(
            number=n,
            sent=counted.get((n, DeliveryStatus.SENT), 0),
            failed=counted.get((n, DeliveryStatus.FAILED), 0),
            left_after=left.get(n, 0),
        )
        for n in numbers
    ]

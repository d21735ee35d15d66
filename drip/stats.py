"""How the series performs: aggregate queries only, so they stay fast on a big list."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drip import retired
from drip.db import as_date, utc_day
from drip.models import (
    ConsentEvent,
    ConsentEventKind,
    ConsentMethod,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    RetiredReason,
    Step,
    Subscriber,
    SubscriberStatus,
    TemplateVersion,
)


@dataclass(frozen=True)
class StepStats:
    """One email of the series, counted by what was sent as it, whatever its number was
    then: a lesson moved takes its counts to its new number (its step id moves with its
    content, drip.lessons.move_step). `number` and `subject` are its current ones."""

    number: int
    subject: str
    sent: int
    failed: int
    hard_bounces: int
    soft_bounces: int
    complaints: int
    """Readers who reported this email as spam."""
    left_after: int
    """Subscribers who unsubscribed with this email the last they had received; those who
    left by reporting spam are in `complaints` instead."""


@dataclass(frozen=True)
class Overview:
    by_status: dict[str, int]
    signed_up: int
    """Signups from the consent log, and those erased with their subscription once it
    had ended longer ago than the retention period, kept as counts (drip.retired): a
    past reader who signed up again made a second one, on the day they did."""
    purged: int
    """Signups never confirmed that the purge deleted: signups all the same."""
    confirmed: int
    """Confirmations from the consent log, and those erased at the end of the retention
    period, kept as counts: a past reader who confirmed a second signup confirmed
    twice."""
    complained: int
    """Unsubscribed subscribers whose consent was withdrawn by a spam complaint."""
    signups: list[tuple[date, int]]
    """Every signup per UTC day, purged or erased at retention included."""
    confirmations: list[tuple[date, int]]
    """Every confirmation per UTC day, those erased at retention included."""
    reached: list[int]
    """reached[n]: subscribers who have received at least n + 1 of the series' emails,
    in the order they were sent; one per current step."""
    steps: list[StepStats]

    @property
    def total(self) -> int:
        """Every signup: on file, purged unconfirmed or erased at retention. A person's
        own erasure takes theirs out of every number for good."""
        return self.signed_up + self.purged

    @property
    def confirmation_rate(self) -> float | None:
        return self.confirmed / self.total if self.total else None


COUNTED = (ConsentEventKind.SIGNUP, ConsentEventKind.CONFIRM)
"""What the signup and confirmation figures count: the consent log's events, one per
signup and one per signup confirmed (drip.signup), the same for a reader's first
subscription and for their coming back; and those of them that the purge or the
retention sweep deleted, kept as counts (drip.retired)."""


def overview(session: Session, sequence_id: int, *, now: datetime, days: int = 30) -> Overview:
    since = _first_midnight(now, days)
    by_status = dict(
        session.execute(
            sa.select(Subscriber.status, sa.func.count())
            .where(Subscriber.sequence_id == sequence_id)
            .group_by(Subscriber.status)
        ).all()
    )
    events = dict(
        session.execute(
            sa.select(ConsentEvent.kind, sa.func.count())
            .join(Subscriber, Subscriber.id == ConsentEvent.subscriber_id)
            .where(Subscriber.sequence_id == sequence_id, ConsentEvent.kind.in_(COUNTED))
            .group_by(ConsentEvent.kind)
        ).all()
    )
    per_day = _per_day(session, sequence_id, since, days)
    retired_by_day = retired.per_day(session, sequence_id, since.date())
    deleted = retired.totals(session, sequence_id)
    purged, _ = deleted.get(RetiredReason.PURGED, (0, 0))
    expired_signups, expired_confirmations = deleted.get(RetiredReason.EXPIRED, (0, 0))
    left, complained = _left_after(session, sequence_id)
    steps = _step_stats(session, sequence_id, left)
    return Overview(
        by_status={status.value: count for status, count in by_status.items()},
        signed_up=events.get(ConsentEventKind.SIGNUP, 0) + expired_signups,
        purged=purged,
        confirmed=events.get(ConsentEventKind.CONFIRM, 0) + expired_confirmations,
        complained=complained,
        signups=[
            (day, n + retired_by_day.get(day, (0, 0))[0])
            for day, n in per_day[ConsentEventKind.SIGNUP]
        ],
        confirmations=[
            (day, n + retired_by_day.get(day, (0, 0))[1])
            for day, n in per_day[ConsentEventKind.CONFIRM]
        ],
        reached=_reached(session, sequence_id, len(steps)),
        steps=steps,
    )


def confirmations_by_series(session: Session) -> dict[int, int]:
    """Confirmations per series id, counted as the dashboard does (`COUNTED`): from the
    consent log, and those erased at retention."""
    logged = session.execute(
        sa.select(Subscriber.sequence_id, sa.func.count())
        .join(ConsentEvent, ConsentEvent.subscriber_id == Subscriber.id)
        .where(ConsentEvent.kind == ConsentEventKind.CONFIRM)
        .group_by(Subscriber.sequence_id)
    ).all()
    counts = Counter(dict(logged))
    counts.update(retired.confirmations_by_series(session))
    return dict(counts)


def _first_midnight(now: datetime, days: int) -> datetime:
    """The start of the charts' `days` UTC days, today the last: a midnight, so that the
    first bar counts a whole day like the others."""
    today = now.astimezone(UTC).date()
    return datetime.combine(today - timedelta(days=days - 1), time(), tzinfo=UTC)


def _per_day(
    session: Session, sequence_id: int, since: datetime, days: int
) -> dict[ConsentEventKind, list[tuple[date, int]]]:
    """Signups and confirmations per UTC day (drip.db.utc_day), the days the charts
    are labelled with, read through the log's index by kind and time."""
    day = utc_day(session.get_bind().dialect.name, ConsentEvent.occurred_at)
    rows = session.execute(
        sa.select(ConsentEvent.kind, day, sa.func.count())
        .join(Subscriber, Subscriber.id == ConsentEvent.subscriber_id)
        .where(
            Subscriber.sequence_id == sequence_id,
            ConsentEvent.kind.in_(COUNTED),
            ConsentEvent.occurred_at >= since,
        )
        .group_by(ConsentEvent.kind, day)
    ).all()
    counts = {(kind, as_date(d)): n for kind, d, n in rows}
    first = since.date()
    every_day = [first + timedelta(days=i) for i in range(days)]
    return {kind: [(d, counts.get((kind, d), 0)) for d in every_day] for kind in COUNTED}


def _step_stats(session: Session, sequence_id: int, left: dict[int, int]) -> list[StepStats]:
    """Each step's counts, by step id; `left` is the unsubscribes after each."""
    steps = session.execute(
        sa.select(Step.id, Step.number, TemplateVersion.subject)
        .outerjoin(TemplateVersion, TemplateVersion.id == _latest_version())
        .where(Step.sequence_id == sequence_id)
        .order_by(Step.number)
    ).all()
    outcomes = _outcomes(session, sequence_id)
    return [
        StepStats(
            number=number,
            subject=subject or "",
            sent=outcomes.get((step_id, DeliveryStatus.SENT), 0),
            failed=outcomes.get((step_id, DeliveryStatus.FAILED), 0),
            hard_bounces=outcomes.get((step_id, "hard"), 0),
            soft_bounces=outcomes.get((step_id, "soft"), 0),
            complaints=outcomes.get((step_id, "complaint"), 0),
            left_after=left.get(step_id, 0),
        )
        for step_id, number, subject in steps
    ]


def _latest_version() -> sa.ScalarSelect[int]:
    return (
        sa.select(sa.func.max(TemplateVersion.id))
        .where(TemplateVersion.step_id == Step.id)
        .correlate(Step)
        .scalar_subquery()
    )


def _outcomes(session: Session, sequence_id: int) -> dict[tuple[int, str], int]:
    """(step id, status or bounce) -> emails. Only a lesson or the welcome has a step.
    A bounce is what the recipient's side reported about an email after it went
    (drip.bounces); the few emails that have one are read through their own index."""
    steps = sa.select(Step.id).where(Step.sequence_id == sequence_id)
    by_status = session.execute(
        sa.select(Delivery.step_id, Delivery.status, sa.func.count())
        .where(Delivery.step_id.in_(steps))
        .group_by(Delivery.step_id, Delivery.status)
    ).all()
    by_bounce = session.execute(
        sa.select(Delivery.step_id, Delivery.bounce, sa.func.count())
        .where(Delivery.step_id.in_(steps), Delivery.bounce.is_not(None))
        .group_by(Delivery.step_id, Delivery.bounce)
    ).all()
    return {(step_id, what): n for step_id, what, n in [*by_status, *by_bounce]}


def _left_after(session: Session, sequence_id: int) -> tuple[dict[int, int], int]:
    """Unsubscribes by the step of the last email each subscriber received (in the order
    sent, not by number), and how many withdrew by a spam complaint. The method is that
    of the latest withdrawal in the consent log; a subscription ended before drip logged
    withdrawals (migration 0014) has none and counts as an unsubscribe."""
    last_email = (
        sa.select(Delivery.step_id)
        .where(
            Delivery.subscriber_id == Subscriber.id,
            Delivery.kind == DeliveryKind.STEP,
            Delivery.status == DeliveryStatus.SENT,
        )
        .order_by(Delivery.sent_at.desc(), Delivery.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    method = (
        sa.select(ConsentEvent.method)
        .where(
            ConsentEvent.subscriber_id == Subscriber.id,
            ConsentEvent.kind == ConsentEventKind.WITHDRAW,
        )
        .order_by(ConsentEvent.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    unsubscribed = (
        sa.select(last_email.label("step_id"), method.label("method"))
        .where(
            Subscriber.sequence_id == sequence_id,
            Subscriber.status == SubscriberStatus.UNSUBSCRIBED,
        )
        .subquery()
    )
    rows = session.execute(
        sa.select(unsubscribed.c.step_id, unsubscribed.c.method, sa.func.count()).group_by(
            unsubscribed.c.step_id, unsubscribed.c.method
        )
    ).all()
    left: dict[int, int] = {}
    complained = 0
    for step_id, how, n in rows:
        if how == ConsentMethod.COMPLAINT:
            complained += n
        elif step_id is not None:
            left[step_id] = left.get(step_id, 0) + n
    return left, complained


def _reached(session: Session, sequence_id: int, steps: int) -> list[int]:
    """Subscribers by how many of the series' emails they received, counted down from
    the most: reached[n] had at least n + 1, whichever emails those were."""
    received = (
        sa.select(sa.func.count().label("n"))
        .select_from(Delivery)
        .join(Step, Step.id == Delivery.step_id)
        .where(
            Step.sequence_id == sequence_id,
            Delivery.kind == DeliveryKind.STEP,
            Delivery.status == DeliveryStatus.SENT,
        )
        .group_by(Delivery.subscriber_id)
        .subquery()
    )
    readers = dict(
        session.execute(sa.select(received.c.n, sa.func.count()).group_by(received.c.n)).all()
    )
    return [sum(count for n, count in readers.items() if n > i) for i in range(steps)]

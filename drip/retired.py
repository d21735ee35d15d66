"""Signups and confirmations deleted from the consent log, kept as counts per series,
day and reason.

The dashboard counts signups and confirmations from the consent log's events, and two
deletions take events out of it. The purge of signups never confirmed
(drip.privacy.purge_unconfirmed) deletes them: a new subscriber's with their row, a
past reader's new signup alone (drip.resignups). The retention sweep
(drip.privacy.erase_ended) erases subscriptions that ended longer ago than
DRIP_RETENTION_DAYS, with their signups and confirmations. Without these counts a
past day's signups dropped and the confirmation rate rose with each purge, and as the
years went by the sweep took the confirmed readers of the first years out of the
signups and confirmations while the purged ones stayed, so the rate sank towards 0%.

Each adds what it deletes, counted by the database before it deletes, in its own
transaction: one rolled back counts nothing, and two at once (each deleting only the
rows it locked) count each event once. Nothing on the signup path writes here, and a
person's erasure (drip.privacy.erase) neither writes here nor takes anything back: it
takes what is on file about them out of the numbers, as it should, and a count here
is no longer anyone's.
"""

from __future__ import annotations

from collections import Counter
from datetime import date

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from drip.db import as_date, utc_day
from drip.models import ConsentEvent, ConsentEventKind, RetiredCounts, RetiredReason, Subscriber
from drip.resignups import LAST_CONFIRMED_SIGNUP

Days = Counter[tuple[int, date]]
"""Events per (series id, UTC day of the event)."""


def unconfirmed_signups(session: Session, subscriber_ids: list[int]) -> Days:
    """The signups of these subscribers made since their latest confirmed one (all of
    them for someone who never confirmed): what the purge deletes. Counted per series
    and UTC day by the database, not row by row; read before they are deleted."""
    signup = aliased(ConsentEvent)  # LAST_CONFIRMED_SIGNUP reads the log itself
    day = utc_day(session.get_bind().dialect.name, signup.occurred_at)
    rows = session.execute(
        sa.select(Subscriber.sequence_id, day, sa.func.count())
        .join(signup, signup.subscriber_id == Subscriber.id)
        .where(
            Subscriber.id.in_(subscriber_ids),
            signup.kind == ConsentEventKind.SIGNUP,
            signup.id > sa.func.coalesce(LAST_CONFIRMED_SIGNUP, 0),
        )
        .group_by(Subscriber.sequence_id, day)
    ).all()
    return Counter({(sequence_id, as_date(d)): n for sequence_id, d, n in rows})


def logged(session: Session, subscriber_ids: list[int]) -> tuple[Days, Days]:
    """The signups and the confirmations in these subscribers' consent logs: what the
    retention sweep erases with them. Counted per series and UTC day by the database,
    not row by row; read before they are deleted."""
    day = utc_day(session.get_bind().dialect.name, ConsentEvent.occurred_at)
    rows = session.execute(
        sa.select(Subscriber.sequence_id, day, ConsentEvent.kind, sa.func.count())
        .join(ConsentEvent, ConsentEvent.subscriber_id == Subscriber.id)
        .where(
            Subscriber.id.in_(subscriber_ids),
            ConsentEvent.kind.in_((ConsentEventKind.SIGNUP, ConsentEventKind.CONFIRM)),
        )
        .group_by(Subscriber.sequence_id, day, ConsentEvent.kind)
    ).all()
    signups: Days = Counter()
    confirmations: Days = Counter()
    for sequence_id, d, kind, n in rows:
        counts = signups if kind == ConsentEventKind.SIGNUP else confirmations
        counts[sequence_id, as_date(d)] = n
    return signups, confirmations


def count(
    session: Session, reason: RetiredReason, signups: Days, confirmations: Days | None = None
) -> None:
    """Add signups and confirmations deleted for `reason`, per (series id, UTC day).

    One statement, its rows in key order: two purges or sweeps committing at once then
    wait for each other's rows in the same order, never in a circle. A pass purges
    before it sweeps (drip.scheduler), and the two never write the same rows, the
    reason being part of the key: so every pass takes its rows in one order."""
    confirmations = confirmations or Counter()
    days = sorted(signups.keys() | confirmations.keys())
    if not days:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(RetiredCounts).values(
        [
            {
                "sequence_id": sequence_id,
                "day": day,
                "reason": reason,
                "signups": signups[sequence_id, day],
                "confirmations": confirmations[sequence_id, day],
            }
            for sequence_id, day in days
        ]
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["sequence_id", "day", "reason"],
            set_={
                "signups": RetiredCounts.signups + statement.excluded.signups,
                "confirmations": RetiredCounts.confirmations + statement.excluded.confirmations,
            },
        )
    )


def totals(session: Session, sequence_id: int) -> dict[RetiredReason, tuple[int, int]]:
    """Signups and confirmations deleted from the series, by reason."""
    rows = session.execute(
        sa.select(
            RetiredCounts.reason,
            sa.func.sum(RetiredCounts.signups),
            sa.func.sum(RetiredCounts.confirmations),
        )
        .where(RetiredCounts.sequence_id == sequence_id)
        .group_by(RetiredCounts.reason)
    ).all()
    return {reason: (signups, confirmations) for reason, signups, confirmations in rows}


def per_day(session: Session, sequence_id: int, since: date) -> dict[date, tuple[int, int]]:
    """Signups and confirmations deleted from the series per UTC day from `since`,
    whatever the reason."""
    rows = session.execute(
        sa.select(
            RetiredCounts.day,
            sa.func.sum(RetiredCounts.signups),
            sa.func.sum(RetiredCounts.confirmations),
        )
        .where(RetiredCounts.sequence_id == sequence_id, RetiredCounts.day >= since)
        .group_by(RetiredCounts.day)
    ).all()
    return {as_date(day): (signups, confirmations) for day, signups, confirmations in rows}


def confirmations_by_series(session: Session) -> dict[int, int]:
    """Confirmations deleted per series id (only the retention sweep deletes any)."""
    return dict(
        session.execute(
            sa.select(RetiredCounts.sequence_id, sa.func.sum(RetiredCounts.confirmations)).group_by(
                RetiredCounts.sequence_id
            )
        ).all()
    )

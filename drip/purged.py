"""The signups the purge deleted unconfirmed, kept as counts per series and day.

The dashboard counts signups from the consent log's signup events, and the purge of
signups never confirmed (drip.privacy.purge_unconfirmed, storage limitation) deletes
them: a new subscriber's with their row, a past reader's new signup alone
(drip.resignups). Without these counts a past day's signups dropped and the
confirmation rate rose with each purge. The purge adds what it deletes, in its own
transaction, so a purge rolled back counts nothing and two purges at once (each deleting
only the rows it locked) count each signup once. Nothing on the signup path writes
here, and an erasure has nothing to take back: a purged signup is no longer anyone's,
and a person's erasure takes only what is on file out of the numbers, as it should.
"""

from __future__ import annotations

from collections import Counter
from datetime import date

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from drip.db import as_date, utc_day
from drip.models import ConsentEvent, ConsentEventKind, PurgedSignups, Subscriber
from drip.resignups import LAST_CONFIRMED_SIGNUP


def unconfirmed_signups(session: Session, subscriber_ids: list[int]) -> Counter[tuple[int, date]]:
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


def count(session: Session, days: Counter[tuple[int, date]]) -> None:
    """Add signups the purge deleted, per (series id, UTC day of the signup).

    One statement, its rows in key order: two purges committing at once then wait for
    each other's rows in the same order, never in a circle."""
    if not days:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(PurgedSignups).values(
        [
            {"sequence_id": sequence_id, "day": day, "signups": n}
            for (sequence_id, day), n in sorted(days.items())
        ]
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["sequence_id", "day"],
            set_={"signups": PurgedSignups.signups + statement.excluded.signups},
        )
    )


def total(session: Session, sequence_id: int) -> int:
    return (
        session.scalar(
            sa.select(sa.func.sum(PurgedSignups.signups)).where(
                PurgedSignups.sequence_id == sequence_id
            )
        )
        or 0
    )


def per_day(session: Session, sequence_id: int, since: date) -> dict[date, int]:
    return dict(
        session.execute(
            sa.select(PurgedSignups.day, PurgedSignups.signups).where(
                PurgedSignups.sequence_id == sequence_id, PurgedSignups.day >= since
            )
        ).all()
    )

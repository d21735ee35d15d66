"""The signups the purge deleted unconfirmed, kept as counts per series and day.

The dashboard counts signups from the subscriber rows, and the purge of signups never
confirmed (drip.privacy.purge_unconfirmed, storage limitation) deletes rows: without
these counts a past day's signups dropped and the confirmation rate rose with each
purge. The purge adds what it deletes, in its own transaction, so a purge rolled back
counts nothing and two purges at once (each deleting only the rows it locked) count
each signup once. Nothing on the signup path writes here, and an erasure has nothing to
take back: a purged signup is no longer anyone's row, and a person's erasure takes only
the rows on file out of the numbers, as it should.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from drip.models import PurgedSignups


def count(session: Session, deleted: Iterable[tuple[int, datetime]]) -> None:
    """Add signups the purge deleted, each given as (series id, when it signed up), to
    the count of its series and UTC day.

    One increment per series and day, in key order: two purges committing at once then
    wait for each other's rows in the same order, never in a circle."""
    days = Counter((sequence_id, signed_up.date()) for sequence_id, signed_up in deleted)
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

"""Dashboard numbers counted in the background, for lists too big to count per page view.

`drip.stats.overview` reads every subscriber and delivery of a series: a few
milliseconds on a small list, seconds on a million. Counters bumped on every signup and
send were tried and rejected (every worker and web process would queue on the same
rows, and a SQLite migration that rebuilds a table silently drops triggers). Instead the
scheduler asks a worker to count each series at most every DRIP_RECOUNT_EVERY
(`request_recounts`), the worker stores the result (`recount_series`), and the dashboard
shows it, with its time, once the list has grown past DRIP_LIVE_COUNT_UP_TO subscribers;
up to there it counts live, so a small list always shows current numbers. The rule goes
by size, not by how long the last count took: one count slowed by a busy machine or a
worker's first query would otherwise make an empty list show stale numbers.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from drip.db import SessionFactory, reading, transaction
from drip.models import Sequence, StatsSnapshot, Subscriber
from drip.stats import Overview, StepStats, overview


@dataclass(frozen=True)
class Counted:
    overview: Overview
    as_of: datetime | None
    """When a worker counted these numbers; None when they were counted for this page."""
    took_ms: int = 0
    """How long the worker's count took."""

    def age(self, now: datetime) -> str:
        """How long ago the numbers were counted, in the largest whole unit: a count that
        is hours or days old says the workers are not running."""
        minutes = int((now - self.as_of).total_seconds() // 60) if self.as_of else 0
        if minutes < 120:
            return f"{minutes} min"
        if minutes < 48 * 60:
            return f"{minutes // 60} hours"
        return f"{minutes // (24 * 60)} days"


def dashboard_numbers(
    session: Session, sequence_id: int, *, now: datetime, live_up_to: int
) -> Counted:
    """The stored count on a list of more than `live_up_to` subscribers, else (or when
    none is stored yet) a live one. The size is the highest subscriber id, read from the
    primary key's end: never less than the list, and free to find. A count stored by an
    older release, in a shape this one does not read, is as good as none: the next
    worker's count replaces it."""
    snapshot = session.get(StatsSnapshot, sequence_id)
    size = session.scalar(sa.select(sa.func.max(Subscriber.id))) or 0
    if snapshot is None or not _readable(snapshot.body) or size <= live_up_to:
        return Counted(overview(session, sequence_id, now=now), as_of=None)
    return Counted(
        from_json(snapshot.body), as_of=snapshot.computed_at, took_ms=snapshot.took_ms or 0
    )


def recount_series(sessions: SessionFactory, sequence_id: int, *, now: datetime) -> None:
    """Count a series as of `now` and store the numbers with how long counting took.

    The counting runs in a read-only transaction: on SQLite a write transaction would
    hold the one write lock for the seconds a big list takes, and every send and signup
    would wait. Only the store is a (short) write. A series deleted meanwhile is skipped.
    """
    started = time.perf_counter()
    with reading(sessions) as session:
        if session.get(Sequence, sequence_id) is None:
            return
        counted = overview(session, sequence_id, now=now)
    took_ms = round((time.perf_counter() - started) * 1000)
    with transaction(sessions) as session:
        _upsert(
            session,
            sequence_id,
            requested_at=now,
            update={"computed_at": now, "took_ms": took_ms, "body": to_json(counted)},
        )


def request_recounts(session: Session, now: datetime, *, every: timedelta) -> list[int]:
    """The series a worker should count now: those not asked for within `every`.

    They are marked asked, so a series is asked for at most once per `every` however
    often the scheduler passes, and whether or not a worker is there to count it. Two
    schedulers passing at the same instant may both ask: one count too many, no harm.
    """
    due = session.scalars(
        sa.select(Sequence.id)
        .outerjoin(StatsSnapshot, StatsSnapshot.sequence_id == Sequence.id)
        .where(
            sa.or_(StatsSnapshot.requested_at.is_(None), StatsSnapshot.requested_at <= now - every)
        )
        .order_by(Sequence.id)
    ).all()
    for sequence_id in due:
        _upsert(session, sequence_id, requested_at=now, update={"requested_at": now})
    return list(due)


SHAPE = 2
"""The version of the stored counts' shape, raised whenever Overview changes: 2 added
the signups and confirmations from the consent log, the purged signups, the complaints
and bounces, and the funnel by sent order."""


def to_json(counted: Overview) -> dict[str, Any]:
    return {
        "shape": SHAPE,
        "by_status": counted.by_status,
        "signed_up": counted.signed_up,
        "purged": counted.purged,
        "confirmed": counted.confirmed,
        "complained": counted.complained,
        "signups": [[day.isoformat(), n] for day, n in counted.signups],
        "confirmations": [[day.isoformat(), n] for day, n in counted.confirmations],
        "reached": counted.reached,
        "steps": [dataclasses.asdict(step) for step in counted.steps],
    }


def from_json(body: dict[str, Any]) -> Overview:
    return Overview(
        by_status=dict(body["by_status"]),
        signed_up=body["signed_up"],
        purged=body["purged"],
        confirmed=body["confirmed"],
        complained=body["complained"],
        signups=[(date.fromisoformat(day), n) for day, n in body["signups"]],
        confirmations=[(date.fromisoformat(day), n) for day, n in body["confirmations"]],
        reached=list(body["reached"]),
        steps=[StepStats(**step) for step in body["steps"]],
    )


def _readable(body: dict[str, Any] | None) -> bool:
    return body is not None and body.get("shape") == SHAPE


def _upsert(
    session: Session, sequence_id: int, *, requested_at: datetime, update: dict[str, Any]
) -> None:
    """Insert the series' row or change `update` in it: the scheduler and a worker may
    each be first to write it."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(StatsSnapshot).values(
        {"sequence_id": sequence_id, "requested_at": requested_at, **update}
    )
    session.execute(statement.on_conflict_do_update(index_elements=["sequence_id"], set_=update))

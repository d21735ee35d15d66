"""The scheduler pass: claim subscribers whose next email is due, and sweep up what Redis lost.

Each batch is one short transaction that creates the delivery rows and advances the
subscribers; the Dramatiq messages are sent only after it commits, so a crash between
the two loses nothing (the sweeper finds the row) and a rollback sends nothing.

Claims use SELECT ... FOR UPDATE SKIP LOCKED: on PostgreSQL two schedulers running at
once each take different rows. SQLite has no row locks and drops the clause, but every
SQLite transaction begins IMMEDIATE (drip.db), so there two passes simply take turns.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drip import complaints, intake, list_bombing, snapshots
from drip.clock import Clock
from drip.db import SessionFactory, engine_of, is_conflict, scrub, transaction
from drip.logs import log_fields
from drip.models import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Subscriber,
    SubscriberStatus,
)
from drip.privacy import end_quiet_periods, erase_ended, purge_unconfirmed
from drip.schedule import PLACE_COLUMNS, issue_many, steps_of
from drip.settings import Settings
from drip.subscriptions import end_pauses

log = logging.getLogger(__name__)
Enqueue = Callable[[Iterable[int]], None]
Recount = Callable[[int], bool]
"""Queues a count of one series' dashboard numbers (drip.snapshots); False if it could not."""


@dataclass
class PassResult:
    issued: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    requeued_signups: list[int] = field(default_factory=list)
    purged: int = 0
    erased: int = 0
    """Subscriptions erased because they ended longer ago than the retention period."""
    pauses_ended: int = 0
    """Pauses over by now, cleared so their subscribers are due again (end_pauses)."""


def run_pass(
    sessions: SessionFactory,
    clock: Clock,
    enqueue: Enqueue,
    *,
    signups: Enqueue,
    batch_size: int,
    requeue_after: timedelta,
    pending_ttl: timedelta,
    retention: timedelta,
    secret: str,
    default_timezone: str,
    max_in_flight: int | None = None,
    recount: Recount | None = None,
    recount_every: timedelta | None = None,
    claimers: int = 1,
) -> PassResult:
    """One pass as of clock.now(): end the pauses that are over, issue every due step,
    re-enqueue stale deliveries (with `enqueue`) and received signups (with `signups`),
    delete signups never confirmed, or never handled, within `pending_ttl`, and erase a
    batch of subscriptions that ended more than `retention` ago (leaving hashes keyed with
    `secret`; standards LAW-16). No step is issued while the complaint-rate guard holds new
    lessons (drip.complaints). A subscriber whose zone this server does not know is
    scheduled by `default_timezone` (drip.schedule.zone_of).

    With `recount` and `recount_every`, a worker is also asked to count the dashboard
    numbers of each series not asked for within `recount_every`; the pass itself never
    reads the whole list.

    With `max_in_flight` (when sending is paced), only enough steps are issued to bring
    the deliveries waiting to be sent up to that number; the rest stay due in the
    database for the next passes. Issuing a whole backlog at once would leave most of it
    queued in Redis longer than `requeue_after`, and the sweeper would queue it again.

    `claimers` transactions claim at once on PostgreSQL, each on a connection of its own
    (`_issue`); one on SQLite.
    """
    now = clock.now()
    result = PassResult()
    room: int | None = None
    asked: list[int] = []
    with transaction(sessions) as session:
        result.purged, result.erased = _forget(
            session, now=now, pending_ttl=pending_ttl, retention=retention, secret=secret
        )
        list_bombing.forget_old(session, now=now)
        held = complaints.guard(session, now) is not None
        if max_in_flight is not None:
            room = max_in_flight - in_flight(session, now + requeue_after)
        if recount and recount_every:
            asked = snapshots.request_recounts(session, now, every=recount_every)
        if session.get_bind().dialect.name == "sqlite":
            claimers = 1  # one writer at a time: a second claimer would only wait
    if result.erased:
        log.info(
            "retention_erased count=%d: subscriptions ended more than %g days ago",
            result.erased,
            retention / timedelta(days=1),
            extra={"event": "retention_erased", "count": result.erased},
        )
        scrub(engine_of(sessions))
    if recount:
        for sequence_id in asked:
            recount(sequence_id)
    result.pauses_ended = _end_pauses(sessions, now, batch_size)
    if not held:
        result.issued = _issue(sessions, now, enqueue, batch_size, room, claimers, default_timezone)
    swept = sweep_pass(
        sessions,
        clock,
        enqueue,
        signups=signups,
        batch_size=batch_size,
        requeue_after=requeue_after,
        now=now,
    )
    result.requeued, result.requeued_signups = swept.requeued, swept.requeued_signups
    return result


def _forget(
    session: Session, *, now: datetime, pending_ttl: timedelta, retention: timedelta, secret: str
) -> tuple[int, int]:
    """Delete what storage limitation says must go (standards LAW-16); returns how many
    subscriptions were purged and erased. In a savepoint: should PostgreSQL abort these
    deletions for a deadlock or a serialization failure (drip.db.CONFLICTS) with another
    transaction changing the same rows, only they are undone; the pass logs it and goes
    on issuing and sweeping, and the next pass deletes what this one could not.

    Received signups go first, as in an erasure (drip.privacy.erase) and a worker
    (drip.intake.handle): received signups, then subscriptions, then consent notices.
    The purge and the retention sweep lock the notices their subscriptions pointed to
    until the pass commits (drip.consent.drop_unused_texts); deleting an old received
    signup after that waited for an erasure of its address that was itself waiting for
    one of those notices, and PostgreSQL aborted one of the two. The suppressions of
    signups declined long enough ago go last, skipping any row someone holds, so that
    nothing here waits for them (drip.privacy.end_quiet_periods)."""
    try:
        with session.begin_nested():
            intake.forget_old(session, now=now, older_than=pending_ttl)
            purged = purge_unconfirmed(session, now=now, older_than=pending_ttl)
            erased = erase_ended(session, secret=secret, now=now, older_than=retention)
            end_quiet_periods(session, now=now)
            return purged, erased
    except sa.exc.DBAPIError as exc:
        if not is_conflict(exc):
            raise
        log.warning(
            "retention_conflict sqlstate=%s: the database aborted this pass's deletions; "
            "the next pass tries again",
            getattr(exc.orig, "sqlstate", None),
            extra={"event": "retention_conflict"},
        )
        return 0, 0


def _end_pauses(sessions: SessionFactory, now: datetime, batch_size: int) -> int:
    """End every pause over by `now`, a batch per short transaction, before the claims:
    the due index holds no paused subscriber (drip.models.Subscriber), so a pause that
    is not cleared holds its lesson back however long ago it ended."""
    ended = 0
    while True:
        with transaction(sessions) as session:
            batch = end_pauses(session, now, batch_size)
        ended += batch
        if batch < batch_size:
            return ended


def _issue(
    sessions: SessionFactory,
    now: datetime,
    enqueue: Enqueue,
    batch_size: int,
    room: int | None,
    claimers: int,
    default_timezone: str,
) -> list[int]:
    """Claim and queue every due step, in batches, with `claimers` transactions at once.

    One claimer spends most of a batch waiting: for PostgreSQL to write the rows, then
    for Redis to take the messages. Two keep the database busy meanwhile (a 10,000-due
    pass in 1.4 s instead of 2.1 s, docs/performance.md). They cannot take the same
    subscriber: a claim skips rows another holds (SKIP LOCKED). Each stops at a batch
    short of its limit; the other still finishes the rows it skipped. SQLite, which
    writes one transaction at a time, gets one claimer (`run_pass`).
    """
    budget, failed = _Budget(room), threading.Event()

    def claimer() -> list[int]:
        issued: list[int] = []
        try:
            while not failed.is_set() and (limit := budget.take(batch_size)):
                with transaction(sessions) as session:
                    claimed, ids = claim_due(session, now, limit, default_timezone=default_timezone)
                budget.give_back(limit - len(ids))
                enqueue(ids)
                issued += ids
                if claimed < limit:
                    break
        except BaseException:
            failed.set()  # the others stop at their next batch; the error ends the pass
            raise
        return issued

    if claimers == 1:
        return claimer()
    with ThreadPoolExecutor(claimers, thread_name_prefix="claimer") as pool:
        runs = [pool.submit(claimer) for _ in range(claimers)]
        return [delivery_id for run in runs for delivery_id in run.result()]


class _Budget:
    """How many more steps a pass may issue, shared by its claimers; None for no cap."""

    def __init__(self, room: int | None) -> None:
        self._room = None if room is None else max(0, room)  # below 0 when over the cap
        self._lock = threading.Lock()

    def take(self, most: int) -> int:
        """Up to `most` of what is left, for one batch; 0 once nothing is."""
        with self._lock:
            if self._room is None:
                return most
            taken = min(most, self._room)
            self._room -= taken
            return taken

    def give_back(self, unused: int) -> None:
        """What a batch took and did not issue, for the next batch."""
        with self._lock:
            if self._room is not None:
                self._room += unused


def configured_pass(
    settings: Settings,
    sessions: SessionFactory,
    clock: Clock,
    enqueue: Enqueue,
    *,
    signups: Enqueue,
    sweep_only: bool,
    recount: Recount | None = None,
) -> PassResult:
    """A pass (or only its sweep, for a separate sweeper) with the batch, delays and cap
    the settings give: what `drip scheduler` and the tests' System run."""
    if sweep_only:
        return sweep_pass(
            sessions,
            clock,
            enqueue,
            signups=signups,
            batch_size=settings.batch_size,
            requeue_after=settings.requeue_after,
        )
    return run_pass(
        sessions,
        clock,
        enqueue,
        signups=signups,
        batch_size=settings.batch_size,
        requeue_after=settings.requeue_after,
        pending_ttl=settings.pending_ttl,
        retention=settings.retention,
        secret=settings.secret_key,
        default_timezone=settings.default_timezone,
        max_in_flight=settings.max_in_flight,
        recount=recount,
        claimers=settings.scheduler_claimers,
        recount_every=settings.recount_every,
    )


def sweep_pass(
    sessions: SessionFactory,
    clock: Clock,
    enqueue: Enqueue,
    *,
    signups: Enqueue,
    batch_size: int,
    requeue_after: timedelta,
    now: datetime | None = None,
) -> PassResult:
    """Only the sweeping half of a pass: re-enqueue every stale delivery and received
    signup as of `now` (clock.now() by default). A separate sweeper process runs this alone."""
    now = now or clock.now()
    return PassResult(
        requeued=_requeue(sessions, sweep, enqueue, now, batch_size, requeue_after),
        requeued_signups=_requeue(sessions, intake.sweep, signups, now, batch_size, requeue_after),
    )


def _requeue(
    sessions: SessionFactory,
    find: Callable[..., list[int]],
    enqueue: Enqueue,
    now: datetime,
    batch_size: int,
    requeue_after: timedelta,
) -> list[int]:
    """Queue again, a batch per transaction, every row `find` says Redis may have lost."""
    requeued: list[int] = []
    while True:
        with transaction(sessions) as session:
            stale = find(session, now, batch_size, requeue_after=requeue_after)
        enqueue(stale)
        requeued += stale
        if len(stale) < batch_size:
            return requeued


def in_flight(session: Session, until: datetime) -> int:
    """Deliveries being sent, or to be sent before `until`. Those whose retry comes later
    do not count: a few slow retries must not hold back every new lesson."""
    waiting = sa.or_(
        Delivery.status == DeliveryStatus.SENDING,
        sa.and_(
            Delivery.status == DeliveryStatus.QUEUED,
            sa.or_(Delivery.retry_at.is_(None), Delivery.retry_at <= until),
        ),
    )
    return session.scalar(sa.select(sa.func.count()).where(waiting)) or 0


def claim_due(
    session: Session, now: datetime, limit: int, *, default_timezone: str
) -> tuple[int, list[int]]:
    """Claim up to `limit` due subscribers; returns how many were claimed and the new deliveries.

    They are read as plain rows on the session's connection, not through the ORM's
    result machinery: a batch is hundreds, and issue_many moves them all on in one
    statement."""
    due = session.connection().execute(due_query(now, limit)).all()
    steps = {sid: steps_of(session, sid, shared=True) for sid in {s.sequence_id for s in due}}
    return len(due), issue_many(session, due, steps, now, default_timezone=default_timezone)


def due_query(now: datetime, limit: int) -> sa.Select[Any]:
    """The next `limit` subscribers due at `now`, locked, skipping those another pass holds.

    A subscriber whose previous lesson has not gone out yet (waiting for a retry, or for a
    worker) waits too: lessons never overtake each other or pile up behind an outage.

    OFFSET 0 keeps that check a probe of each candidate's own deliveries. Without it
    PostgreSQL turns it into an anti-join against every lesson in flight, and with
    statistics taken before the pass (which think few are in flight) plans a nested loop
    over all of them for each candidate: each batch then costs more than the last, 0.4 s
    by the tenth of a 10,000-due pass (bench/scheduler.py) instead of 2 ms.

    A paused subscriber is not due: a pause leaves next_send_at at the series' time
    (drip.subscriptions.pause), so the query reads only rows without a pause, the ones
    the partial index ix_subscribers_due holds. Each pass first clears the pauses that
    are over (`_end_pauses`). Filtering by the pause's end instead read and skipped
    every paused reader whose series time had passed, about 40 µs each on SQLite: a
    10,000-due pass over a million readers, 99,000 of them paused, took 4.2 times the
    pass over 10,000 (docs/performance.md, "Scheduler with the stored pause").
    """
    busy = (
        sa.select(Delivery.id)
        .where(
            Delivery.subscriber_id == Subscriber.id,
            Delivery.kind == DeliveryKind.STEP,
            Delivery.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.SENDING]),
        )
        .offset(0)
        .exists()
    )
    return (
        sa.select(*PLACE_COLUMNS)
        .where(
            Subscriber.status == SubscriberStatus.ACTIVE,
            Subscriber.next_send_at <= now,
            Subscriber.paused_until.is_(None),
            ~busy,
        )
        .order_by(Subscriber.next_send_at)
        .limit(limit)
        .with_for_update(skip_locked=True, key_share=True)
    )


def sweep(session: Session, now: datetime, limit: int, *, requeue_after: timedelta) -> list[int]:
    """Re-enqueue deliveries whose retry is due, and those Redis lost: queued too long, or
    stuck in `sending` past the lease.

    A delivery past its lease may have been accepted by the SMTP server just before its
    worker died; sending it again is the one duplicate drip allows, and it is logged.
    """
    stale = session.scalars(
        sa.select(Delivery)
        .where(
            sa.or_(
                sa.and_(
                    Delivery.status == DeliveryStatus.QUEUED,
                    Delivery.retry_at.is_(None),
                    Delivery.queued_at <= now - requeue_after,
                ),
                sa.and_(Delivery.status == DeliveryStatus.QUEUED, Delivery.retry_at <= now),
                sa.and_(Delivery.status == DeliveryStatus.SENDING, Delivery.lease_until <= now),
            )
        )
        .order_by(Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True, key_share=True)
    ).all()
    for delivery in stale:
        if delivery.status == DeliveryStatus.SENDING:
            log.warning(
                "ambiguous_resend delivery=%d attempts=%d: its worker did not report back "
                "before the lease ended; the message may already have been accepted",
                delivery.id,
                delivery.attempts,
                extra=log_fields(delivery, event="ambiguous_resend"),
            )
            delivery.status = DeliveryStatus.QUEUED
            delivery.lease_until = None
            delivery.ambiguous_resends += 1
        delivery.retry_at = None
        delivery.queued_at = now
    return [d.id for d in stale]

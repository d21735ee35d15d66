"""Signups from the form and the API: received by the web, handled by a worker.

The web request does the same work for every address (standards SEC-12): it checks what
does not depend on the address's state (drip.signup.check), writes one
`received_signups` row, commits, and only then queues `process_signup` with its id. The
worker counts an attempt on the row and commits, then runs drip.signup.subscribe on it,
as of the moment the visitor asked and for the series the row names by id, and deletes
it in the same transaction, so a redelivered message finds nothing to do. A row whose
message Redis lost is queued again by the sweeper (drip.scheduler), until a worker
gives up on it (`attempt`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drip.db import SessionFactory, transaction
from drip.errors import InvalidInput, NotFound
from drip.models import ReceivedSignup, Sequence
from drip.signup import SignupRequest, as_evidence, check, subscribe

log = logging.getLogger(__name__)


def receive(
    connection: sa.Connection,
    request: SignupRequest,
    *,
    now: datetime,
    consent_text: Callable[[str], str],
    privacy_policy: str,
    default_timezone: str,
) -> int:
    """Store a checked signup for a worker; returns the id to queue after commit.

    `consent_text` gives the notice shown beside the form for a series' name; the row
    keeps it verbatim, with the privacy policy's version, as the visitor saw them.
    InvalidInput or NotFound for a signup no worker could carry out, and nothing stored.
    A plain INSERT on a connection, not an ORM object in a session: this runs on every
    signup request, and the session's unit of work cost more than the write itself.
    """
    checked = check(connection, request, default_timezone=default_timezone)
    evidence = as_evidence(request)
    return connection.execute(
        _RECEIVE,
        {
            "email": checked.email,
            "email_entered": request.email,
            "first_name": checked.first_name,
            "timezone": checked.timezone,
            "sequence_id": checked.series.id,
            "ip": evidence.ip,
            "user_agent": evidence.user_agent,
            "page": evidence.page,
            "referrer": evidence.referrer,
            "embed_origin": evidence.embed_origin,
            "form_id": evidence.form_id,
            "consent_text": consent_text(checked.series.name),
            "privacy_policy": privacy_policy,
            "received_at": now,
            "queued_at": now,
        },
    ).scalar_one()


_RECEIVE = sa.insert(ReceivedSignup).returning(ReceivedSignup.id)


def attempt(session: Session, received_id: int, *, max_attempts: int) -> ReceivedSignup | None:
    """Count one more attempt at a received signup and return it, for `handle` to carry
    out in a transaction of its own; None when there is nothing to handle: the row is
    gone (handled, or erased) or was given up on.

    The count is committed before the handling, as a delivery's is in its claim
    (standards REL-08): a worker killed mid-handling rolls back all but this, so a
    signup that raises a bug's error every time, or kills its worker, is handled at most
    `max_attempts` times. The next message for it (the sweeper's) gives up instead: it
    logs the row's id at ERROR, never the address, and clears `queued_at` so the
    sweeper stops queueing it. The row is kept, not deleted: the log names only its id,
    and its fields are how an operator finds what the handling chokes on. It holds an
    address, so it goes like any received signup: after DRIP_PENDING_DAYS
    (`forget_old`), or with an erasure of that address.
    """
    row = session.scalar(
        sa.update(ReceivedSignup)
        .where(ReceivedSignup.id == received_id, ReceivedSignup.queued_at.is_not(None))
        .values(attempts=ReceivedSignup.attempts + 1)
        .returning(ReceivedSignup)
        .execution_options(synchronize_session=False)
    )
    if row is None or row.attempts <= max_attempts:
        return row
    row.queued_at = None
    log.error(
        "received signup %d given up after %d attempts; it stays in received_signups "
        "until DRIP_PENDING_DAYS deletes it",
        received_id,
        max_attempts,
        extra={"received_id": received_id},
    )
    return None


def handle(session: Session, row: ReceivedSignup, *, secret: str) -> int | None:
    """Carry out a received signup and forget it; returns the confirmation delivery to
    queue after commit, if any. Nothing happens when the row is gone: handled already,
    or erased.

    The row is deleted first, which locks it: a second worker given the same id (a
    redelivery, or a sweep while the first is busy) waits, then deletes nothing and
    stops; so does an erasure of the address (drip.privacy.erase), which then finds the
    subscription made here.
    """
    deleted = session.scalar(
        sa.delete(ReceivedSignup)
        .where(ReceivedSignup.id == row.id)
        .returning(ReceivedSignup.id)
        .execution_options(synchronize_session=False)
    )
    if deleted is None:
        return None
    return subscribe(
        session,
        _request_of(row),
        now=row.received_at,
        consent_text=row.consent_text,
        privacy_policy=row.privacy_policy,
        secret=secret,
        default_timezone=row.timezone,
        series_id=row.sequence_id,
    )


def process(
    sessions: SessionFactory, received_id: int, *, secret: str, max_attempts: int
) -> int | None:
    """`attempt`, then `handle`, each in its own transaction. A signup that no longer
    passes its checks (its timezone left the tz database, say) is dropped
    with a warning, since retrying it cannot help; any other error rolls back the
    handling and leaves the row to a retry or the sweeper, up to `max_attempts`."""
    with transaction(sessions) as session:
        row = attempt(session, received_id, max_attempts=max_attempts)
    if row is None:
        return None
    try:
        with transaction(sessions) as session:
            return handle(session, row, secret=secret)
    except (InvalidInput, NotFound) as exc:
        with transaction(sessions) as session:
            session.execute(sa.delete(ReceivedSignup).where(ReceivedSignup.id == received_id))
        log.warning("received signup %d dropped: %s", received_id, exc)
        return None


def _request_of(row: ReceivedSignup) -> SignupRequest:
    return SignupRequest(
        email=row.email_entered,
        first_name=row.first_name,
        timezone=row.timezone,
        ip=row.ip,
        user_agent=row.user_agent,
        page=row.page,
        referrer=row.referrer,
        embed_origin=row.embed_origin,
        form_id=row.form_id,
    )


def sweep(session: Session, now: datetime, limit: int, *, requeue_after: timedelta) -> list[int]:
    """Ids of received signups queued longer ago than `requeue_after`, which Redis may
    have lost, marked queued again as of `now`; a row a worker holds is skipped, and one
    a worker gave up on (`attempt`) has no `queued_at` to be stale."""
    stale = session.scalars(
        sa.select(ReceivedSignup)
        .where(ReceivedSignup.queued_at <= now - requeue_after)
        .order_by(ReceivedSignup.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for row in stale:
        row.queued_at = now
    return [row.id for row in stale]


GIVEN_UP = ReceivedSignup.queued_at.is_(None)
"""A received signup a worker gave up on (`attempt`): the sweeper no longer queues it.
Served by the index on `queued_at`, which holds NULLs on SQLite and PostgreSQL alike."""


def count_given_up(session: Session) -> int:
    """How many received signups workers gave up on: the admin dashboard asks on every
    visit, so it reads the `queued_at` index, not the table."""
    return session.scalar(_COUNT_GIVEN_UP) or 0


_COUNT_GIVEN_UP = sa.select(sa.func.count()).where(GIVEN_UP)


def given_up(session: Session, limit: int) -> list[tuple[ReceivedSignup, str]]:
    """The `limit` received signups given up on most recently received, each with its
    series' name, for an operator to see what the handling chokes on."""
    rows = session.execute(
        sa.select(ReceivedSignup, Sequence.name)
        .join(Sequence, Sequence.id == ReceivedSignup.sequence_id)
        .where(GIVEN_UP)
        .order_by(ReceivedSignup.received_at.desc(), ReceivedSignup.id.desc())
        .limit(limit)
    )
    return [(row, name) for row, name in rows]


def retry_given_up(
    session: Session,
    now: datetime,
    *,
    requeue_after: timedelta,
    ids: Collection[int] | None = None,
) -> int:
    """Hand received signups workers gave up on (all, or those of `ids`) back to the
    sweeper, with their attempts counted from zero; returns how many.

    Nothing is queued here: `queued_at` becomes `now - requeue_after`, the latest time
    `sweep`'s `queued_at <= now - requeue_after` still takes at its next pass (whose
    `now` is no earlier), so the sweeper queues them in its own batches, and a worker
    handles them like any signup Redis lost. Only rows still given up on change: a second
    click, or a second admin, resets no count of a signup already handed back and in a
    worker's hands.
    """
    query = sa.update(ReceivedSignup).where(GIVEN_UP)
    if ids is not None:
        query = query.where(ReceivedSignup.id.in_(ids))
    handed_back = session.scalars(
        query.values(attempts=0, queued_at=now - requeue_after)
        .returning(ReceivedSignup.id)
        .execution_options(synchronize_session=False)
    ).all()
    return len(handed_back)


def forget_old(session: Session, *, now: datetime, older_than: timedelta) -> None:
    """Delete received signups no worker managed to handle within `older_than` (a bug
    that fails each attempt): they hold an address, and storage is limited."""
    session.execute(sa.delete(ReceivedSignup).where(ReceivedSignup.received_at <= now - older_than))

"""A subscriber's data rights, self-served: a link by email, a download, an erasure;
and storage limitation (standards LAW-16): signups never confirmed are deleted after a
while, and subscriptions that ended are erased once DRIP_RETENTION_DAYS have passed.

Erasure deletes every row about the address. What remains is one keyed hash in
`suppressions`, so that nothing mails the address again by accident (an import, a
resend); a fresh signup with a fresh confirmation lifts it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Collection, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drip import consent, retired
from drip.db import FOR_NO_KEY_UPDATE, SessionFactory, engine_of, scrub, transaction
from drip.models import (
    ConsentEvent,
    ConsentEventKind,
    Delivery,
    DeliveryKind,
    ReceivedSignup,
    RetiredReason,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from drip.outbox import delete_addressed_to
from drip.resignups import LAST_CONFIRMED_SIGNUP, drop_signups_after
from drip.schedule import insert_delivery

LINK_INTERVAL = timedelta(minutes=10)


def email_hash(secret: str, email: str) -> str:
    return hmac.new(secret.encode(), email.encode(), hashlib.sha256).hexdigest()


BLOCKING = ("bounced", "complaint")
"""Reasons that bar an address for good: it does not exist, or its owner reported spam.
An erasure only keeps the address from being mailed by accident; a fresh signup with a
fresh confirmation lifts it.

Not even a privacy link goes to such an address (drip.sending): a bounced one cannot
receive it, and the privacy form cannot tell a complainer from a stranger typing their
address in (standards DEL-05: never mailed again, by any path). Their right of access
stands through the contact address the privacy page gives them for this case."""

ERASED = "erased"
"""The suppression an erasure leaves, whether the person asked for it or the retention
period ran out (`erase_ended`): either way nothing but the hash is left, and the hash
does the same job, so nothing needs to tell the two apart."""

DECLINED = "declined"
DECLINE_QUIET = timedelta(days=30)
"""Someone declined a signup from its confirmation email (one-click unsubscribe on a
pending signup, standards UNS-08): whoever typed their address into the form cannot
have them asked again for this long. After it the scheduler deletes the suppression
(`end_quiet_periods`): it has served its purpose, and the address may be signed up or
imported again."""


def suppression(session: Session, secret: str, email: str) -> str | None:
    """Why the address is suppressed, or None."""
    return session.scalar(SUPPRESSION_REASON, {"email_hash": email_hash(secret, email)})


SUPPRESSION_REASON = sa.select(Suppression.reason).where(
    Suppression.email_hash == sa.bindparam("email_hash")
)


def is_suppressed(session: Session, secret: str, email: str) -> bool:
    return suppression(session, secret, email) is not None


def suppress(session: Session, secret: str, email: str, reason: str, *, now: datetime) -> None:
    """Record a suppression; a bounce or complaint outranks a declined signup, which
    outranks an erasure, never the reverse. Declining again starts a new quiet period.
    An erasure is noted on whatever hash it finds, so that a declined one, which goes
    once its quiet period is over, stays then as the erasure's (`end_quiet_periods`).
    The row is locked as it is read: should the scheduler be deleting it, this waits,
    finds it gone and adds it anew, where updating the row it deleted would fail."""
    hashed = email_hash(secret, email)
    existing = session.scalar(
        sa.select(Suppression).where(Suppression.email_hash == hashed).with_for_update()
    )
    erased = reason == ERASED
    if existing is None:
        session.add(Suppression(email_hash=hashed, reason=reason, created_at=now, erased=erased))
        return
    existing.erased = existing.erased or erased
    if _rank(reason) >= _rank(existing.reason):
        existing.reason = reason
        existing.created_at = now


def _rank(reason: str) -> int:
    return 2 if reason in BLOCKING else 1 if reason == DECLINED else 0


def may_ask_to_confirm(session: Session, secret: str, email: str, *, now: datetime) -> bool:
    """Whether a confirmation email may go to `email` now: not if it bounced or
    complained, nor while a declined signup's quiet period lasts."""
    return next_confirmation_at(session, secret, email, now=now) == now


def next_confirmation_at(
    session: Session, secret: str, email: str, *, now: datetime
) -> datetime | None:
    """The earliest a confirmation email may go to `email`: `now`, the end of a declined
    signup's quiet period, or None if it never may (it bounced or complained). What the
    admin is told of how someone can come back (drip.subscriber_actions)."""
    hashed = email_hash(secret, email)
    found = session.scalar(sa.select(Suppression).where(Suppression.email_hash == hashed))
    if found is None:
        return now
    if found.reason == DECLINED:
        return max(now, found.created_at + DECLINE_QUIET)
    return None if found.reason in BLOCKING else now


def forget_suppression(session: Session, secret: str, email: str) -> None:
    """A fresh confirmation lifts an erasure's suppression (never a bounce's)."""
    session.execute(
        sa.delete(Suppression).where(
            Suppression.email_hash == email_hash(secret, email),
            Suppression.reason.not_in(BLOCKING),
        )
    )


def subscriptions_of(session: Session, email: str, *, lock: bool = False) -> list[Subscriber]:
    """The address's subscriptions in id order; with `lock`, each locked FOR UPDATE in
    that order, the one order in which anything locks several of an address's rows."""
    query = sa.select(Subscriber).where(Subscriber.email == email).order_by(Subscriber.id)
    return list(session.scalars(query.with_for_update() if lock else query))


def address_of(session: Session, subscriber_ids: Collection[int]) -> str | None:
    """The address of the first of these subscriptions still held, or None once every
    one is gone."""
    return session.scalar(
        sa.select(Subscriber.email)
        .where(Subscriber.id.in_(subscriber_ids))
        .order_by(Subscriber.id)
        .limit(1)
    )


def request_link(session: Session, email: str, *, now: datetime) -> int | None:
    """Queue a privacy-link email if the address is on any list (at most every 10 minutes).

    Returns the delivery id to enqueue, or None; the caller answers the same either way.
    """
    subscriptions = subscriptions_of(session, email)
    if not subscriptions:
        return None
    latest = session.scalar(
        sa.select(sa.func.max(Delivery.created_at)).where(
            Delivery.subscriber_id.in_([s.id for s in subscriptions]),
            Delivery.kind == DeliveryKind.PRIVACY,
        )
    )
    if latest is not None and now - latest < LINK_INTERVAL:
        return None
    return insert_delivery(
        session,
        subscriber_id=subscriptions[-1].id,
        kind=DeliveryKind.PRIVACY,
        step_id=None,
        now=now,
    )


def erase(session: Session, email: str, *, secret: str, now: datetime) -> int:
    """Delete every row about `email` and keep only its keyed hash; returns how many
    subscriptions were deleted. A signup received and not yet handled by a worker
    (drip.intake) goes too, so it cannot bring the address back a moment later.

    Those go first: a worker handling one right now holds its row, so the delete waits
    until that worker commits, and the subscription it made is then read and erased
    with the rest (the worker, too, locks that row before any subscriber: no deadlock).

    Then every subscription of the address is locked, in id order, before anything is
    deleted. Deleting them one by one locked them one by one: holding the first while
    waiting for a later one that the retention sweep (`erase_ended`) held, which in turn
    waited for the first, and PostgreSQL aborted one of the two. A bounce naming the
    address (drip.bounces) and a withdrawal from the privacy page lock in the same order;
    the sweep, and the purge of signups never confirmed (`purge_unconfirmed`), take
    none they find held. The consent notices their events pointed to are locked last,
    in id order, so that two erasures sharing one count its users in turn
    (drip.consent.drop_unused_texts).

    On SQLite, secure_delete overwrites the freed pages, and the caller should checkpoint
    the write-ahead log afterwards (`drip.db.scrub`) so no copy survives in the WAL file.
    """
    session.execute(sa.delete(ReceivedSignup).where(ReceivedSignup.email == email))
    subscriptions = subscriptions_of(session, email, lock=True)
    _delete(session, subscriptions)
    suppress(session, secret, email, ERASED, now=now)
    return len(subscriptions)


def erase_address(
    sessions: SessionFactory, email: str, *, secret: str, now: datetime, outbox: Path | None
) -> int:
    """`erase` in a transaction of its own, then the write-ahead log scrubbed and, with
    mail going to the local `outbox` (drip.outbox.location), the emails sent to the
    address deleted from it: a person's erasure as the privacy page, the admin and an
    operator (`drip privacy erase`) carry it out. The scrub runs after the commit, since
    SQLite refuses a checkpoint inside a transaction, and so does the outbox, so that an
    erasure rolled back keeps its mail; returns how many subscriptions were deleted."""
    with transaction(sessions) as session:
        erased = erase(session, email, secret=secret, now=now)
    scrub(engine_of(sessions))
    if outbox is not None:
        delete_addressed_to(outbox, email)
    return erased


def erasable(session: Session, email: str) -> tuple[int, int]:
    """How many subscriptions and received signups an erasure of `email` would delete:
    what an operator is shown before confirming one, and how a mistyped address is told
    from a real one (its keyed hash stays whatever happens, so it is not counted)."""
    received = session.scalar(
        sa.select(sa.func.count()).select_from(ReceivedSignup).where(ReceivedSignup.email == email)
    )
    return len(subscriptions_of(session, email)), received or 0


def _delete(session: Session, subscriptions: Collection[Subscriber]) -> None:
    """Delete subscriptions with their consent log and deliveries (the foreign keys
    cascade), and the consent notices no one else's log points to."""
    with consent.erasing(session):
        texts = consent.texts_of(session, [subscriber.id for subscriber in subscriptions])
        for subscriber in subscriptions:
            session.delete(subscriber)
        session.flush()
        consent.drop_unused_texts(session, texts)


ENDED = (SubscriberStatus.COMPLETED, SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED)
"""The statuses whose subscription is over; each sets `ended_at`."""

RETENTION_BATCH = 200
"""Subscriptions one scheduler pass erases at most, so that its transaction stays short.
A backlog (the first pass on a list years old) goes over the passes that follow."""


def erase_ended(
    session: Session,
    *,
    secret: str,
    now: datetime,
    older_than: timedelta,
    limit: int = RETENTION_BATCH,
) -> int:
    """Erase up to `limit` subscriptions that ended more than `older_than` ago (GDPR
    storage limitation, standards LAW-16); returns how many. Their consent evidence was
    kept while they lasted and then for the period in which a claim about them can be
    brought; after it, it proves nothing anyone may still need.

    Each goes as an erasure takes it: the row, its consent log and its deliveries, and
    notices no one else's log points to. Pending, active and paused subscriptions are
    never touched, nor is a signup received and not yet handled (unlike an erasure,
    this is not the person asking: such a signup is them coming back).

    Unlike an erasure, it goes by subscription, not by address: the same address may be
    active on another series. So the address's hash is added only once it has no
    confirmed subscription left, since a hash would stop that one's lessons (or their
    undo). One still pending needs a confirmation, which lifts the hash anyway, unless
    its reader confirmed before and signed up again: should the purge drop that signup,
    they are back to the subscription they ended, which they may undo. The
    address's other rows are locked before deciding: a confirmation committed meanwhile
    is then seen, and one starting later waits, then lifts the hash.

    Nothing here waits for a row lock: the ended subscriptions are taken oldest first,
    not in the id order an erasure locks an address's rows in (`erase`), so waiting for
    one of the address's other rows could close a circle with that erasure. Rows someone
    holds are skipped instead (SKIP LOCKED): an ended one, or every ended one of an
    address whose other rows are not all free (being confirmed, erased, unsubscribed, or
    claimed for a lesson), waits for the next pass, which then decides on what committed.
    On SQLite, where writers take turns and FOR UPDATE is dropped, nothing is ever held.
    The caller should scrub the write-ahead log afterwards there, as after an erasure.

    Their signups and confirmations still count on the dashboard: what is deleted is
    added to the anonymous counts of drip.retired, in this transaction. Otherwise, year
    by year, the readers who confirmed would leave the numbers while the signups purged
    unconfirmed stayed, and the confirmation rate would sink towards 0%. A person's own
    erasure (`erase`) keeps no such count: they asked to be in none of the numbers.
    """
    ended = session.scalars(
        sa.select(Subscriber)
        .where(Subscriber.status.in_(ENDED), Subscriber.ended_at <= now - older_than)
        .order_by(Subscriber.ended_at, Subscriber.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not ended:
        return 0
    emails = {subscriber.email for subscriber in ended}
    others = (
        sa.select(
            Subscriber.id,
            Subscriber.email,
            Subscriber.status,
            Subscriber.confirmed_at,
            LAST_CONFIRMED_SIGNUP.label("confirmed_signup"),
        )
        .where(
            Subscriber.email.in_(emails),
            Subscriber.id.not_in([subscriber.id for subscriber in ended]),
        )
        .order_by(Subscriber.id)
    )
    remaining = session.execute(others.with_for_update(**FOR_NO_KEY_UPDATE, skip_locked=True)).all()
    locked = {row.id for row in remaining}
    busy = {row.email for row in session.execute(others) if row.id not in locked}
    doomed = [subscriber for subscriber in ended if subscriber.email not in busy]
    signups, confirmations = retired.logged(session, [subscriber.id for subscriber in doomed])
    retired.count(session, RetiredReason.EXPIRED, signups, confirmations)
    _delete(session, doomed)
    still_confirmed = {
        row.email
        for row in remaining
        if row.confirmed_at is not None
        or row.confirmed_signup is not None
        or row.status == SubscriberStatus.ACTIVE
    }
    for email in sorted(emails - busy - still_confirmed):
        suppress(session, secret, email, ERASED, now=now)
    return len(doomed)


IDS_PER_STATEMENT = 10_000
"""Ids one statement binds at most: psycopg sends each as a parameter of its own, and
PostgreSQL refuses a statement with more than 65,535. A purge can find more: an import
nobody confirmed, or a scheduler stopped for days."""


def _batches(ids: list[int]) -> Iterator[list[int]]:
    """`ids` a statement's worth at a time."""
    for start in range(0, len(ids), IDS_PER_STATEMENT):
        yield ids[start : start + IDS_PER_STATEMENT]


def purge_unconfirmed(session: Session, *, now: datetime, older_than: timedelta) -> int:
    """Delete signups not confirmed within `older_than` of their latest signup or of the
    latest confirmation email sent for them, whichever came last (GDPR storage
    limitation); someone who comes back after unsubscribing starts a new clock. Returns
    how many signups went.

    Signing up again while pending sends the confirmation again and logs no new signup
    event. That email says its link works for DRIP_CONFIRM_DAYS, counted from when it
    was made (drip.tokens), just before `confirmation_sent_at` (drip.sending), and
    settings keep DRIP_CONFIRM_DAYS within `older_than`: so the link never outlives its
    signup. The time is on the row, so PostgreSQL checks it again on the row it locks:
    a re-send committed while the purge read takes the row out of it.

    A signup declined or cancelled before anyone confirmed goes too, and one whose
    confirmation email hard-bounced (drip.subscriptions.mark_bounced): it was never a
    subscription, and the privacy page promises every unconfirmed signup goes in
    DRIP_PENDING_DAYS, not DRIP_RETENTION_DAYS after it ended. A past reader's row that
    a new signup's bounce ended is not one of them: the bounce is why their subscription
    ended, on record until the retention sweep, and undoing it to "unsubscribed" would
    let the old page's Undo make a barred address active again. A declined or bounced
    address keeps only its suppression hash, a row of its own, which for a bounce bars
    the address for good. Nobody who ever confirmed is deleted, whatever their row says:
    a past reader signed up again, whose new signup cleared `confirmed_at`, loses only
    the signups made since their latest confirmation and is unsubscribed again, so their
    consent record is kept as long as any ended subscription's (drip.resignups).
    Deleting consent events is an erasure, so it runs under `consent.erasing`; a pass
    with nothing to purge writes nothing.

    The signups are locked in id order, the order an erasure locks an address's rows in
    (`erase`), and one that someone holds is skipped (SKIP LOCKED), not waited for: an
    erasure deletes it anyway, and otherwise the next pass does. A DELETE of all of them
    at once locked them in its plan's order and waited for each held one, so with an
    erasure holding one of an address's signups and wanting another the purge had
    taken, each waited for the other until PostgreSQL aborted one. Only the ids locked
    are deleted or changed. On SQLite, where writers take turns, nothing is ever held.

    They still count as signups on the dashboard: what is deleted is added to the
    anonymous counts of drip.retired, in this transaction.
    """
    cutoff = now - older_than
    recent_signup = sa.exists().where(
        ConsentEvent.subscriber_id == Subscriber.id,
        ConsentEvent.kind == ConsentEventKind.SIGNUP,
        ConsentEvent.occurred_at > cutoff,
    )
    ended_unconfirmed = sa.and_(
        Subscriber.confirmed_at.is_(None),
        sa.or_(
            Subscriber.status == SubscriberStatus.UNSUBSCRIBED,
            sa.and_(Subscriber.status == SubscriberStatus.BOUNCED, LAST_CONFIRMED_SIGNUP.is_(None)),
        ),
    )
    stale = session.execute(
        sa.select(Subscriber.id, LAST_CONFIRMED_SIGNUP)
        .where(
            sa.or_(Subscriber.status == SubscriberStatus.PENDING, ended_unconfirmed),
            Subscriber.created_at <= cutoff,
            sa.or_(
                Subscriber.confirmation_sent_at.is_(None),
                Subscriber.confirmation_sent_at <= cutoff,
            ),
            ~recent_signup,
        )
        .order_by(Subscriber.id)
        .with_for_update(skip_locked=True)
    ).all()
    if not stale:
        return 0
    deleted: Counter[tuple[int, date]] = Counter()
    for ids in _batches([row.id for row in stale]):
        deleted += retired.unconfirmed_signups(session, ids)
    retired.count(session, RetiredReason.PURGED, deleted)
    never_confirmed = [subscriber_id for subscriber_id, confirmed in stale if confirmed is None]
    with consent.erasing(session):
        texts: set[int] = set()
        for ids in _batches(never_confirmed):
            texts |= consent.texts_of(session, ids)
            session.execute(sa.delete(Subscriber).where(Subscriber.id.in_(ids)))
        for subscriber_id, confirmed in stale:
            if confirmed is not None:
                texts |= drop_signups_after(session, subscriber_id, confirmed)
        consent.drop_unused_texts(session, texts)
    return len(stale)


def end_quiet_periods(session: Session, *, now: datetime) -> int:
    """Delete the suppressions of signups declined more than DECLINE_QUIET ago (GDPR
    storage limitation): they were kept only so that nobody could have the address asked
    again meanwhile, and a hash kept after that would refuse an import of the address
    for good. Returns how many went. One that an erasure of the address also stands
    behind becomes the erasure's instead, which stays until a fresh confirmation.

    The rows are locked in id order and one someone holds is skipped (SKIP LOCKED), as
    the purge skips a held signup: the decline, erasure or confirmation holding it
    decides, and the next pass looks again. On PostgreSQL the lock reads the row again,
    so one declined anew meanwhile, with a new quiet period, is left alone.
    """
    lapsed = session.execute(
        sa.select(Suppression.id, Suppression.erased)
        .where(Suppression.reason == DECLINED, Suppression.created_at <= now - DECLINE_QUIET)
        .order_by(Suppression.id)
        .with_for_update(skip_locked=True)
    ).all()
    gone = [suppression_id for suppression_id, erased in lapsed if not erased]
    for ids in _batches(gone):
        session.execute(sa.delete(Suppression).where(Suppression.id.in_(ids)))
    for ids in _batches([suppression_id for suppression_id, erased in lapsed if erased]):
        session.execute(sa.update(Suppression).where(Suppression.id.in_(ids)).values(reason=ERASED))
    return len(gone)

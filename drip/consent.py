"""Keeping the proof of consent (standards CON-01, LAW-11, LAW-21): an append-only log.

Each signup, confirmation, withdrawal and undone withdrawal adds one `consent_events`
row; the notice a person was shown is a `consent_texts` row the events point to. Nothing
here updates or deletes a row, and the database refuses anyone who tries (migration
0014), except inside `erasing`, which erasure and the purge of unconfirmed signups use.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from drip.db import FOR_NO_KEY_UPDATE
from drip.errors import NotFound
from drip.models import (
    ConsentEvent,
    ConsentEventKind,
    ConsentMethod,
    ConsentText,
    Delivery,
    DeliveryKind,
    ErasureMark,
    Sequence,
    Subscriber,
)

NEW_VERSION_TRIES = 5
"""Two PostgreSQL transactions adding different new wordings at once both pick the same
next version; the loser takes the one after. Beyond a few rounds something else is wrong."""


@dataclass(frozen=True)
class Origin:
    """Where and how a signup happened, as the request told it (all of it evidence, none
    of it trusted for anything else)."""

    email_entered: str = ""
    form_id: str = ""
    page_url: str = ""
    referrer: str = ""
    embed_origin: str = ""
    ip: str = ""
    user_agent: str = ""


def text_for(session: Session, body: str, *, privacy_policy: str, now: datetime) -> ConsentText:
    """The stored notice with exactly this wording and policy, added as the next version
    the first time it is shown.

    A notice found is locked FOR KEY SHARE, the lock the foreign-key check of the event
    pointing to it takes anyway, only taken now rather than at that insert: an erasure
    that finds the notice unused (`drop_unused_texts`) cannot delete it in between, and
    would otherwise leave this signup's event pointing to nothing, refused on the foreign
    key. An erasure already deleting it holds it: the lock waits, finds the row gone
    once the erasure commits, and the wording is stored again."""
    digest = hashlib.sha256(body.encode()).hexdigest()
    for _ in range(NEW_VERSION_TRIES):
        found = session.scalar(
            sa.select(ConsentText)
            .where(
                ConsentText.sha256 == digest, ConsentText.privacy_policy_version == privacy_policy
            )
            .with_for_update(read=True, key_share=True)
        )
        if found is not None:
            return found
        latest = session.scalar(sa.select(sa.func.max(ConsentText.version))) or 0
        text = ConsentText(
            version=latest + 1,
            body=body,
            sha256=digest,
            privacy_policy_version=privacy_policy,
            created_at=now,
        )
        try:
            with session.begin_nested():
                session.add(text)
        except IntegrityError:
            continue
        return text
    raise RuntimeError("could not store a new consent text version")


def record_signup(
    session: Session,
    subscriber_id: int,
    text: ConsentText,
    origin: Origin,
    *,
    email: str,
    purposes: str,
    now: datetime,
) -> ConsentEvent:
    event = ConsentEvent(
        subscriber_id=subscriber_id,
        kind=ConsentEventKind.SIGNUP,
        occurred_at=now,
        consent_text_id=text.id,
        email_entered=origin.email_entered,
        email_normalised=email,
        form_id=origin.form_id,
        page_url=origin.page_url,
        referrer=origin.referrer,
        embed_origin=origin.embed_origin,
        ip=origin.ip,
        user_agent=origin.user_agent,
        purposes=purposes,
    )
    session.add(event)
    return event


def latest_signup(session: Session, subscriber_id: int) -> ConsentEvent | None:
    """The signup a confirmation link must name: any older one is superseded."""
    return session.scalar(_LATEST_SIGNUP, {"subscriber_id": subscriber_id})


def latest_signup_id(connection: sa.Connection, subscriber_id: int) -> int | None:
    """`latest_signup`'s id, read without the ORM (the send path composes with plain rows)."""
    return connection.execute(_LATEST_SIGNUP_ID, {"subscriber_id": subscriber_id}).scalar()


_LATEST_SIGNUP_ID = (
    sa.select(ConsentEvent.id)
    .where(
        ConsentEvent.subscriber_id == sa.bindparam("subscriber_id"),
        ConsentEvent.kind == ConsentEventKind.SIGNUP,
    )
    .order_by(ConsentEvent.id.desc())
    .limit(1)
)
_LATEST_SIGNUP = sa.select(ConsentEvent).where(
    ConsentEvent.id == _LATEST_SIGNUP_ID.scalar_subquery()
)


def record_confirm(
    session: Session, signup: ConsentEvent, *, ip: str, user_agent: str, now: datetime
) -> None:
    """The click on the confirmation email, with that email's Message-ID and send time
    copied from its delivery: delivery logs are pruned, the proof must not be."""
    mail = session.execute(
        sa.select(Delivery.message_id, Delivery.sent_at)
        .where(
            Delivery.subscriber_id == signup.subscriber_id,
            Delivery.kind == DeliveryKind.CONFIRMATION,
            Delivery.created_at >= signup.occurred_at,
            Delivery.sent_at.is_not(None),
        )
        .order_by(Delivery.sent_at.desc())
        .limit(1)
    ).first()
    session.add(
        ConsentEvent(
            subscriber_id=signup.subscriber_id,
            kind=ConsentEventKind.CONFIRM,
            signup_id=signup.id,
            occurred_at=now,
            consent_text_id=signup.consent_text_id,
            ip=ip,
            user_agent=user_agent,
            confirmation_message_id=mail.message_id if mail else None,
            confirmation_sent_at=mail.sent_at if mail else None,
        )
    )


def record_change(
    session: Session,
    subscriber_id: int,
    kind: ConsentEventKind,
    method: ConsentMethod,
    *,
    now: datetime,
    ip: str | None = None,
    user_agent: str | None = None,
) -> None:
    """A withdrawal, or an unsubscribe undone, against the subscriber's latest signup
    (none for rows older than the consent log)."""
    signup = latest_signup(session, subscriber_id)
    session.add(
        ConsentEvent(
            subscriber_id=subscriber_id,
            kind=kind,
            signup_id=signup.id if signup else None,
            occurred_at=now,
            consent_text_id=signup.consent_text_id if signup else None,
            ip=ip,
            user_agent=user_agent,
            method=method,
        )
    )


def withdrawal_method(session: Session, subscriber_id: int) -> ConsentMethod | None:
    """How the subscriber's latest withdrawal was made (their link, a complaint, an
    admin...), or None when the log holds none, as for rows older than the log."""
    return session.scalar(
        sa.select(ConsentEvent.method)
        .where(
            ConsentEvent.subscriber_id == subscriber_id,
            ConsentEvent.kind == ConsentEventKind.WITHDRAW,
        )
        .order_by(ConsentEvent.id.desc())
        .limit(1)
    )


def events_of(
    session: Session, subscriber_id: int
) -> list[tuple[ConsentEvent, ConsentText | None]]:
    """A subscriber's log, oldest first, each event with the notice it points to."""
    rows = session.execute(
        sa.select(ConsentEvent, ConsentText)
        .outerjoin(ConsentText, ConsentText.id == ConsentEvent.consent_text_id)
        .where(ConsentEvent.subscriber_id == subscriber_id)
        .order_by(ConsentEvent.occurred_at, ConsentEvent.id)
    )
    return [(event, text) for event, text in rows]


def proof(session: Session, subscriber_id: int, *, now: datetime) -> dict[str, Any]:
    """One subscriber's proof of consent as one document an admin can keep or print
    (standards LAW-21): every event of the log with every CON-01 field it holds and the
    verbatim notice it points to, oldest first. Only what the log says; the subscriber
    row, which changes, is named, not relied on."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise NotFound("no such subscriber")
    return {
        "document": "proof of consent",
        "exported_at": iso(now),
        "subscriber_id": subscriber.id,
        "email": subscriber.email,
        "series": session.get_one(Sequence, subscriber.sequence_id).slug,
        "consent_events": [event_record(e, text) for e, text in events_of(session, subscriber.id)],
    }


def event_record(event: ConsentEvent, text: ConsentText | None) -> dict[str, Any]:
    """One event with every CON-01 field it holds, and the notice it points to."""
    return {
        "id": event.id,
        "kind": event.kind.value,
        "signup_event": event.signup_id,
        "occurred_at": iso(event.occurred_at),
        "email_entered": event.email_entered,
        "email_normalised": event.email_normalised,
        "form_id": event.form_id,
        "page_url": event.page_url,
        "referrer": event.referrer,
        "embed_origin": event.embed_origin,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "purposes": event.purposes,
        "confirmation_message_id": event.confirmation_message_id,
        "confirmation_sent_at": iso(event.confirmation_sent_at),
        "method": event.method and event.method.value,
        "notice_shown": None
        if text is None
        else {
            "id": text.id,
            "version": text.version,
            "text": text.body,
            "sha256": text.sha256,
            "privacy_policy_version": text.privacy_policy_version,
        },
    }


def iso(value: datetime | None) -> str | None:
    """A time as the JSON documents of consent and privacy write it."""
    return None if value is None else value.isoformat()


@contextmanager
def erasing(session: Session) -> Iterator[None]:
    """Let this transaction delete consent rows (standards LAW-14), and no other.

    The triggers refuse a DELETE unless `erasure_marks` holds a row. The mark is inserted
    here and deleted before the block ends, so it is never committed: on PostgreSQL no
    other transaction can see an uncommitted row, and on SQLite no other connection
    writes while this one holds the write lock. A marker table works the same on both
    databases and can be read by a trigger; a PostgreSQL `SET LOCAL` setting would be
    tidier there, but SQLite has no per-transaction setting a trigger can read. On an
    exception the transaction rolls back, and the mark with it.
    """
    mark = session.scalar(sa.insert(ErasureMark).returning(ErasureMark.id))
    yield
    session.flush()
    session.execute(sa.delete(ErasureMark).where(ErasureMark.id == mark))


def texts_of(session: Session, subscribers: sa.Select[tuple[int]] | list[int]) -> set[int]:
    """The notices the events of `subscribers` (their ids, or a query for them) point to."""
    return set(
        session.scalars(
            sa.select(ConsentEvent.consent_text_id)
            .where(
                ConsentEvent.subscriber_id.in_(subscribers),
                ConsentEvent.consent_text_id.is_not(None),
            )
            .distinct()
        )
    )


def drop_unused_texts(session: Session, text_ids: set[int]) -> None:
    """After an erasure, delete the texts it left unreferenced: an import's statement
    ("signed up at the webinar on ...") may describe the person; a text no event points
    to proves nothing. Call inside `erasing`, once the erased subscriptions are deleted.

    The texts are locked, in id order, before their events are counted. Two erasures of
    different addresses sharing a notice used to count at once on PostgreSQL: each saw
    the other's events, deleted but not committed, and kept the notice, which then no
    event pointed to. Now the second waits for the first to commit, and counts on a
    fresh snapshot that sees its deletes. Nothing else takes this lock on a notice, and
    every caller takes it after its subscriptions (an erasure locks them in id order,
    drip.privacy.erase) and after any received signup; the scheduler's pass, which holds
    it until it commits, deletes its old received signups first (drip.scheduler).

    FOR NO KEY UPDATE, not FOR UPDATE: it does not conflict with the KEY SHARE that a
    signup takes on the notice its event points to (`text_for`, and the foreign key),
    so no signup waits for an erasure that keeps the notice. Such a signup may point a
    new event at one of these texts meanwhile. On PostgreSQL the DELETE, which cannot
    see that event uncommitted, then waits for it and fails on the foreign key once it
    commits. The text is in use again, so it must stay: the first try runs in a
    savepoint, and the second, on a fresh snapshot that sees the event, deletes only the
    texts still unused.

    A sweep of unused notices in the scheduler's pass would have needed the same lock
    against signups, and would have left the notice until the next pass."""
    if not text_ids:
        return
    session.execute(
        sa.select(ConsentText.id)
        .where(ConsentText.id.in_(text_ids))
        .order_by(ConsentText.id)
        .with_for_update(**FOR_NO_KEY_UPDATE)
    ).all()
    used = sa.exists().where(ConsentEvent.consent_text_id == ConsentText.id)
    unused = sa.delete(ConsentText).where(ConsentText.id.in_(text_ids), ~used)
    try:
        with session.begin_nested():
            session.execute(unused)
    except IntegrityError:
        session.execute(unused)

"""The double opt-in journey as plain functions: subscribe, then confirm.

Whatever the address's state, `subscribe` looks the same from outside (the web layer
gives one answer for every case); what differs is only which email, if any, is queued.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from drip import consent, list_bombing, timing
from drip.db import FOR_NO_KEY_UPDATE
from drip.errors import BadToken, InvalidInput, NotFound
from drip.headers import check_header_text, clean_first_name
from drip.models import (
    ConsentEvent,
    ConsentText,
    DeliveryKind,
    Sequence,
    Subscriber,
    SubscriberStatus,
)
from drip.privacy import forget_suppression, may_ask_to_confirm
from drip.schedule import insert_delivery, issue_next, resume_point, steps_of
from drip.series_files import latest_version

log = logging.getLogger(__name__)
SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
EMAIL = "Email address"
"""The address field as a visitor reads it, in the errors they see."""


@dataclass(frozen=True)
class SignupRequest:
    """What a form or API call submitted; `form_id` ("landing", "embed", "api"), the
    page, referrer and embed origin, IP and user agent are kept as consent evidence."""

    email: str
    first_name: str = ""
    timezone: str = ""
    sequence: str = ""
    ip: str = ""
    user_agent: str = ""
    page: str = ""
    referrer: str = ""
    embed_origin: str = ""
    form_id: str = ""


@dataclass(frozen=True)
class Seen:
    """Who confirmed, from where: the evidence stored on the confirm event."""

    ip: str = ""
    user_agent: str = ""


def purposes_of(slug: str) -> str:
    """What a signup consents to: the series named, nothing else (drip sends no
    newsletter or "updates" beside it)."""
    return f"series:{slug}"


def normalise_email(raw: str) -> str:
    check_header_text(raw, field="email", label=EMAIL)
    try:
        checked = validate_email(raw.strip(), check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"{EMAIL}: {exc}", field="email") from None
    address = (checked.ascii_email or checked.normalized).lower()
    local = address.rpartition("@")[0]
    if len(local) > 64 or len(address) > 254:
        raise InvalidInput(f"{EMAIL}: longer than an address can be (RFC 5321)", field="email")
    return address


class Series(NamedTuple):
    """A series as a signup needs it: which one, and the name its consent notice shows."""

    id: int
    slug: str
    name: str


_SERIES = sa.select(Sequence.id, Sequence.slug, Sequence.name)
_SERIES_NAMED = _SERIES.where(Sequence.slug == sa.bindparam("slug"))
_FIRST_SERIES = _SERIES.order_by(Sequence.id).limit(1)
_SERIES_BY_ID = _SERIES.where(Sequence.id == sa.bindparam("id"))
"""The statements of `find_series` and `series_by_id`, built once: every signup request
runs one, and every worker handling it another. Three columns on a connection take 45 us
of CPU on SQLite and 170 us on PostgreSQL; building an ORM select and loading a whole
Sequence took 360 and 490 us."""


def find_series(connection: sa.Connection, slug: str) -> Series:
    """The series named by `slug`, or the first one installed when no slug is given;
    read on every signup, from the database (a cache in one web process would not see
    another rename, add or delete a series)."""
    if slug and not SLUG.fullmatch(slug):
        raise NotFound("no such series")
    if slug:
        found = connection.execute(_SERIES_NAMED, {"slug": slug}).one_or_none()
    else:
        found = connection.execute(_FIRST_SERIES).one_or_none()
    if found is None:
        raise NotFound(f"no series {slug!r}" if slug else "no series is installed")
    return Series(*found)


def series_by_id(connection: sa.Connection, series_id: int) -> Series:
    """The series a received signup was for (drip.intake), or NotFound if it is gone."""
    found = connection.execute(_SERIES_BY_ID, {"id": series_id}).one_or_none()
    if found is None:
        raise NotFound("the series is gone")
    return Series(*found)


def find_sequence(session: Session, slug: str) -> Sequence:
    """The series named by `slug`, or the first one installed, for a page that shows it."""
    sequence = session.get(Sequence, find_series(session.connection(), slug).id)
    if sequence is None:
        raise NotFound("no such series")  # deleted since find_series read it
    return sequence


@dataclass(frozen=True)
class Checked:
    """A signup's fields as they will be stored, and the series it is for."""

    email: str
    first_name: str
    timezone: str
    series: Series


def detected_timezone(raw: str, *, default_timezone: str) -> str:
    """The timezone the signup form's script detected, or `default_timezone` when this
    server's tz database does not know it.

    The script fills the field again on every try, so refusing a zone would turn the
    visitor away for good, and a browser's zone list can be newer than the server's
    tzdata (Europe/Kyiv on an older one). Lessons at the default zone's hour beat no
    signup; the warning names the zone, never the address, so an operator sees that
    tzdata wants updating. The check is the same whatever the address (standards
    SEC-12). The JSON API does not come here: its client sends one of the zones its
    OpenAPI description lists, and anything else is its own mistake to hear about."""
    tz = raw.strip()
    if not tz:
        return ""
    try:
        timing.zone(tz)
    except ValueError:
        log.warning(
            "signup_timezone_unknown timezone=%r: not in this server's tz database; "
            "using DRIP_DEFAULT_TIMEZONE %s",
            tz[:64],
            default_timezone,
        )
        return default_timezone
    return tz


def check(
    connection: sa.Connection,
    request: SignupRequest,
    *,
    default_timezone: str,
    series_id: int | None = None,
) -> Checked:
    """Everything about a signup that does not depend on its address's state: the
    address, name and timezone are well formed and the series exists (the one of
    `series_id` if given, which a worker handling a received signup knows, else the one
    the request names). InvalidInput or NotFound otherwise, before anything is stored."""
    email = normalise_email(request.email)
    first_name = clean_first_name(request.first_name)
    tz = request.timezone.strip() or default_timezone
    try:
        timing.zone(tz)
    except ValueError:
        raise InvalidInput(f"Timezone: unknown timezone {tz[:64]!r}", field="timezone") from None
    if series_id is None:
        series = find_series(connection, request.sequence.strip())
    else:
        series = series_by_id(connection, series_id)
    return Checked(email, first_name, tz, series)


def as_evidence(request: SignupRequest) -> SignupRequest:
    """The request with the evidence its browser sent cut to what the consent log
    keeps, without characters a database refuses (the address is checked as typed)."""
    return dataclasses.replace(
        request,
        form_id=_evidence(request.form_id, 32),
        page=_evidence(request.page, 500),
        referrer=_evidence(request.referrer, 500),
        embed_origin=_evidence(request.embed_origin, 200),
        ip=_evidence(request.ip, 45),
        user_agent=_evidence(request.user_agent, 400),
    )


def subscribe(
    session: Session,
    request: SignupRequest,
    *,
    now: datetime,
    consent_text: str,
    secret: str,
    privacy_policy: str = "",
    default_timezone: str = "UTC",
    series_id: int | None = None,
) -> int | None:
    """Record a signup; returns the id of a confirmation delivery to queue, if any.

    `consent_text` is the notice shown beside the form, verbatim, and `privacy_policy`
    the version of the policy it links to. `series_id`, if given, is the series, and
    the request's slug is not looked at (drip.signup.check).

    new, or unsubscribed earlier: a fresh pending signup with its own signup event;
    pending: the confirmation again;
    active, completed, or bounced (the address does not exist): nothing changes;
    suppressed, declined from a confirmation email not long ago, or already sent as many
    confirmations as drip.list_bombing allows: nothing changes and nothing is sent.
    """
    request = as_evidence(request)
    checked = check(
        session.connection(), request, default_timezone=default_timezone, series_id=series_id
    )
    email, series = checked.email, checked.series
    if not may_ask_to_confirm(session, secret, email, now=now):
        return None  # it bounced, complained, or its owner just declined a signup
    subscriber = session.scalar(
        sa.select(Subscriber)
        .where(Subscriber.sequence_id == series.id, Subscriber.email == email)
        .with_for_update(key_share=True)
    )
    if subscriber is not None and subscriber.status in (
        SubscriberStatus.ACTIVE,
        SubscriberStatus.COMPLETED,
        SubscriberStatus.BOUNCED,
    ):
        return None
    if not list_bombing.may_mail(session, secret, email, now=now):
        return None
    if subscriber is not None and subscriber.status == SubscriberStatus.PENDING:
        subscriber.confirmation_sent_at = now
        return _queue_confirmation(session, subscriber, now, secret=secret)
    if subscriber is None:
        subscriber = _new_subscriber(session, series.id, email, now)
        if subscriber is None:
            return None  # a concurrent signup for the same address got there first
    subscriber.first_name = checked.first_name
    subscriber.timezone = checked.timezone
    subscriber.next_step = None
    origin = consent.Origin(
        email_entered=_evidence(request.email, 320),
        form_id=request.form_id,
        page_url=request.page,
        referrer=request.referrer,
        embed_origin=request.embed_origin,
        ip=request.ip,
        user_agent=request.user_agent,
    )
    notice = consent.text_for(session, consent_text, privacy_policy=privacy_policy, now=now)
    return ask_to_confirm(
        session,
        subscriber,
        notice,
        origin,
        purposes=purposes_of(series.slug),
        now=now,
        secret=secret,
    )


def ask_to_confirm(
    session: Session,
    subscriber: Subscriber,
    notice: ConsentText,
    origin: consent.Origin,
    *,
    purposes: str,
    now: datetime,
    secret: str,
) -> int | None:
    """Make `subscriber` pending on a fresh signup event and queue the one confirmation
    email; returns its delivery id.

    The only way anyone, signed up on the form or imported from a file, is put on a
    series: nobody is enrolled before they click the confirmation themselves (double
    opt-in, standards DEL-04 and LAW-20). A `next_step` already set is the lesson an
    import asked them to start at once they confirm.
    """
    subscriber.status = SubscriberStatus.PENDING
    subscriber.next_send_at = None
    subscriber.confirmed_at = None
    subscriber.ended_at = None
    subscriber.confirmation_sent_at = now
    session.flush()
    consent.record_signup(
        session, subscriber.id, notice, origin, email=subscriber.email, purposes=purposes, now=now
    )
    return _queue_confirmation(session, subscriber, now, secret=secret)


def _new_subscriber(
    session: Session, sequence_id: int, email: str, now: datetime
) -> Subscriber | None:
    """Insert the subscriber row; None if a concurrent signup inserted it first."""
    subscriber = Subscriber(
        sequence_id=sequence_id, email=email, created_at=now, status=SubscriberStatus.PENDING
    )
    try:
        with session.begin_nested():
            session.add(subscriber)
    except IntegrityError:
        return None
    return subscriber


def _evidence(text: str, limit: int) -> str:
    """Consent evidence from request headers, without characters a database refuses."""
    return "".join(ch for ch in text if ch.isprintable())[:limit]


def _queue_confirmation(
    session: Session, subscriber: Subscriber, now: datetime, *, secret: str
) -> int | None:
    list_bombing.note_mailed(session, secret, subscriber.email, now=now)
    return insert_delivery(
        session,
        subscriber_id=subscriber.id,
        kind=DeliveryKind.CONFIRMATION,
        step_id=None,
        now=now,
    )


def outline(session: Session, sequence: Sequence) -> list[tuple[int, str]]:
    """The lessons of a series (number and subject, welcome excluded), for its landing page."""
    lessons = []
    for step in steps_of(session, sequence.id):
        version = latest_version(session, step.id)
        if step.number > 0 and version is not None:
            lessons.append((step.number, version.subject))
    return lessons


def pending_signup(
    session: Session, subscriber_id: int, signup_id: int, *, lock: bool = True
) -> Subscriber:
    """The subscriber a confirmation link names, if the link is still the current one:
    it names the subscriber's latest signup event."""
    subscriber = session.get(
        Subscriber, subscriber_id, with_for_update=FOR_NO_KEY_UPDATE if lock else None
    )
    latest = consent.latest_signup(session, subscriber_id)
    if subscriber is None or latest is None or latest.id != signup_id:
        raise BadToken("this confirmation link is no longer valid")
    return subscriber


def confirm(
    session: Session,
    subscriber_id: int,
    signup_id: int,
    *,
    now: datetime,
    seen: Seen,
    secret: str,
    default_timezone: str,
) -> int | None:
    """Activate a pending subscriber and issue the welcome; returns its delivery id.

    Confirming again with the same link is harmless and returns None; a link from an
    older signup, or for someone who has since unsubscribed, is refused. Confirming is a
    fresh consent, so it lifts a suppression left by an earlier erasure or a declined
    signup. An imported subscriber starts at the step their row named.
    """
    subscriber = pending_signup(session, subscriber_id, signup_id)
    if subscriber.status in (SubscriberStatus.ACTIVE, SubscriberStatus.COMPLETED):
        return None
    if subscriber.status != SubscriberStatus.PENDING:
        raise BadToken("this confirmation link is no longer valid")
    return activate(
        session,
        subscriber,
        signup_id,
        now=now,
        seen=seen,
        secret=secret,
        default_timezone=default_timezone,
    )


def activate(
    session: Session,
    subscriber: Subscriber,
    signup_id: int,
    *,
    now: datetime,
    seen: Seen,
    secret: str,
    default_timezone: str,
) -> int | None:
    """`confirm` for a pending subscriber its caller has locked with `pending_signup`
    and looked at first: the confirm page tells someone no longer pending where they
    stand."""
    consent.record_confirm(
        session,
        session.get_one(ConsentEvent, signup_id),
        ip=_evidence(seen.ip, 45),
        user_agent=_evidence(seen.user_agent, 400),
        now=now,
    )
    subscriber.status = SubscriberStatus.ACTIVE
    subscriber.confirmed_at = now
    forget_suppression(session, secret, subscriber.email)
    steps = steps_of(session, subscriber.sequence_id)
    start = subscriber.next_step
    subscriber.next_step = resume_point(session, subscriber, steps)
    if start is not None and subscriber.next_step is not None:
        subscriber.next_step = max(start, subscriber.next_step)
    subscriber.next_send_at = now
    return issue_next(session, subscriber, steps, now, default_timezone=default_timezone)

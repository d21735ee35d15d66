"""Composing the message for one delivery: which template, which values, which links.

Two halves, so that no transaction is open while a message is rendered and built:
`draft` reads what the email needs (inside the sending claim's transaction, where the
subscriber is already locked, with plain rows and statements) and `compose` turns that
draft into a message without touching the database. A template renders with plain
values only (names, numbers, URLs built from DRIP_BASE_URL), never with ORM objects or
settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from drip import consent
from drip.delivery_locks import Row
from drip.errors import DripError
from drip.messages import Envelope, build_message, message_id, recipient_address
from drip.models import (
    DeliveryKind,
    Sequence,
    Step,
    TemplateVersion,
)
from drip.rendering import EmailTemplate, Footer, Renderer
from drip.schedule import zone_of
from drip.series_files import (
    CONFIRM_FOLDER,
    PRIVACY_FOLDER,
    read_email,
)
from drip.settings import Settings
from drip.tokens import CONFIRM, PRIVACY, UNSUBSCRIBE, Tokens


@dataclass(frozen=True)
class Draft:
    """Everything one email needs from the database, as plain values."""

    kind: DeliveryKind
    template: EmailTemplate
    context: dict[str, str | int]
    footer: Footer
    envelope: Envelope
    msgid: str
    rcpt_to: str
    template_version_id: int | None


@dataclass(frozen=True)
class Composed:
    raw: bytes
    """The message as it goes on the wire, before any DKIM signature."""
    rcpt_to: str


class Reads:
    """The series and lessons one claim's drafts read, each once: a batch of deliveries
    (drip.sending) mostly carries one lesson to many readers, and each read was a query
    per email. Made for one transaction and dropped with it."""

    def __init__(self, connection: sa.Connection) -> None:
        self.connection = connection
        self._lessons: dict[tuple[int, int | None], _Lesson] = {}
        self._series: dict[int, _Series] = {}

    def lesson(self, sequence_id: int, step_id: int | None) -> _Lesson:
        key = (sequence_id, step_id)
        if key not in self._lessons:
            self._lessons[key] = _lesson(self.connection, sequence_id, step_id)
        return self._lessons[key]

    def series(self, sequence_id: int) -> _Series:
        if sequence_id not in self._series:
            self._series[sequence_id] = _series(self.connection, sequence_id)
        return self._series[sequence_id]


def draft(
    reads: Reads,
    delivery: Row,
    subscriber: Row,
    *,
    settings: Settings,
    tokens: Tokens,
    now: datetime,
) -> Draft:
    lesson = None
    if delivery.kind == DeliveryKind.STEP:
        lesson = reads.lesson(subscriber.sequence_id, delivery.step_id)
    sequence = lesson.series if lesson else reads.series(subscriber.sequence_id)
    links = _Links(settings, tokens, subscriber)
    name = _own_name(delivery, subscriber)
    context: dict[str, str | int] = {
        "first_name": name,
        "series_name": sequence.name,
        "sender_name": settings.sender.display_name or sequence.name,
        "lesson_total": sequence.total or 0,
    }
    version_id = None
    if lesson is not None:
        template, version_id = lesson.template, lesson.version_id
        context["lesson_number"] = lesson.number
        confirmed = _confirmed_on(subscriber, now, settings.default_timezone)
        reason = (
            f"You are getting this because you signed up for {sequence.name} and confirmed "
            f"on {confirmed:%d %B %Y}."
        )
    elif delivery.kind == DeliveryKind.CONFIRMATION:
        template = read_email(settings.emails_dir / CONFIRM_FOLDER)
        context["confirm_url"] = links.confirm(
            consent.latest_signup_id(reads.connection, subscriber.id) or 0
        )
        context["confirm_days"] = max(1, settings.confirm_max_age.days)
        reason = (
            f"Someone, hopefully you, asked to join {sequence.name} with this address. "
            "Without a click on the confirm button you will get nothing more from us."
        )
    else:
        template = read_email(settings.emails_dir / PRIVACY_FOLDER)
        context["privacy_url"] = links.privacy()
        reason = (
            "Someone, hopefully you, asked on our privacy page for the data we keep about "
            "this address. If it was not you, ignore this email: nothing changes."
        )
    unsubscribe_url = links.unsubscribe()
    return Draft(
        kind=delivery.kind,
        template=template,
        context=context,
        footer=Footer(
            reason=reason,
            unsubscribe_url=unsubscribe_url,
            postal_address=settings.postal_address,
            sender_name=str(context["sender_name"]),
            contact=settings.contact,
            ad_notice=settings.ad_notice if lesson is not None else "",
            preferences=lesson is not None,
        ),
        envelope=Envelope(
            sender=settings.sender,
            recipient=recipient_address(subscriber.email, name),
            list_id=f"<{sequence.slug}.{settings.mail_domain}>",
            feedback_id=_feedback_id(delivery, context, sequence.slug, settings),
            unsubscribe_url=unsubscribe_url,
            date=now,
        ),
        msgid=message_id(delivery.id, secret=settings.secret_key, domain=settings.mail_domain),
        rcpt_to=subscriber.email,
        template_version_id=version_id,
    )


def compose(draft: Draft, *, settings: Settings, renderer: Renderer) -> Composed:
    """Render and build the message; reads nothing, so it runs outside any transaction."""
    rendered = renderer.render(draft.template, draft.context, draft.footer)
    raw = build_message(
        rendered,
        draft.envelope,
        msgid=draft.msgid,
        idempotency_header=settings.idempotency_header,
    )
    return Composed(raw, draft.rcpt_to)


def _own_name(delivery: Row, subscriber: Row) -> str:
    """The first name, or "" in mail to an address its owner has not confirmed.

    Anyone can type any address and any "name" into the signup form, so until the
    address's owner confirms, the name is a stranger's free text: in the confirmation,
    or in a privacy link anyone can ask for, it would carry their offer or link to that
    address in our name and under our DKIM signature (standards STD-09, SEC-13); the
    templates greet "Hi there" instead. A confirmed row's name is the one its owner
    confirmed: a new signup, the only thing that sets a name, also clears `confirmed_at`
    (drip.signup.ask_to_confirm), and the purge that gives it back when that signup is
    never confirmed drops the name (drip.resignups)."""
    if delivery.kind == DeliveryKind.CONFIRMATION or subscriber.confirmed_at is None:
        return ""
    return subscriber.first_name


def _confirmed_on(subscriber: Row, now: datetime, default_timezone: str) -> date:
    """The day the reader confirmed, on their own calendar: someone in Auckland who
    confirmed at 01:30 on 25 October did so on the 24th in UTC. The zone comes with the
    row the send already locked, so this costs no query. A zone this server's tz
    database no longer knows reads as DRIP_DEFAULT_TIMEZONE, as the scheduler reads it:
    a footer's date must not stop a lesson."""
    tz = zone_of(subscriber, default_timezone)
    return (subscriber.confirmed_at or now).astimezone(tz).date()


def _feedback_id(
    delivery: Row, context: dict[str, str | int], slug: str, settings: Settings
) -> str:
    """Gmail's feedback loop groups complaints by these fields: step, series, kind, sender."""
    step = context.get("lesson_number", delivery.kind.value)
    return f"{step}:{slug}:{delivery.kind.value}:{settings.feedback_sender}"


@dataclass(frozen=True)
class _Series:
    name: str
    slug: str
    total: int | None


@dataclass(frozen=True)
class _Lesson:
    series: _Series
    number: int
    template: EmailTemplate
    version_id: int


def _series(connection: sa.Connection, sequence_id: int) -> _Series:
    return _Series(*connection.execute(_SERIES, {"sequence_id": sequence_id}).one())


def _lesson(connection: sa.Connection, sequence_id: int, step_id: int | None) -> _Lesson:
    row = connection.execute(_LESSON, {"sequence_id": sequence_id, "step_id": step_id}).one()
    if row.version_id is None:
        raise DripError(f"step {row.number} has no template")
    template = EmailTemplate(row.subject, row.preheader, row.body_html, row.body_text)
    return _Lesson(_Series(row.name, row.slug, row.total), row.number, template, row.version_id)


_counted = aliased(Step)
_SERIES = (
    sa.select(
        Sequence.name,
        Sequence.slug,
        sa.select(sa.func.max(_counted.number))
        .where(_counted.sequence_id == Sequence.id)
        .correlate(Sequence)
        .scalar_subquery()
        .label("total"),
    )
    .select_from(Sequence)
    .where(Sequence.id == sa.bindparam("sequence_id"))
)
"""The series' name, slug and number of lessons, as plain columns. Built once: every
query, ORM object and statement construction saved here is saved on every email sent.
The lesson count reads its own alias of steps so that `_LESSON` can join the step."""

_LESSON = (
    _SERIES.add_columns(
        Step.number,
        TemplateVersion.id.label("version_id"),
        TemplateVersion.subject,
        TemplateVersion.preheader,
        TemplateVersion.body_html,
        TemplateVersion.body_text,
    )
    .join(Step, Step.id == sa.bindparam("step_id"))
    .outerjoin(TemplateVersion, TemplateVersion.step_id == Step.id)
    .order_by(TemplateVersion.id.desc())
    .limit(1)
)
"""`_SERIES`, the step and its newest template version, in one query of plain columns."""


@dataclass(frozen=True)
class _Links:
    """Absolute links for one subscriber, always on DRIP_BASE_URL (never a request's Host)."""

    settings: Settings
    tokens: Tokens
    subscriber: Row

    def unsubscribe(self) -> str:
        token = self.tokens.make(UNSUBSCRIBE, [self.subscriber.id])
        return f"{self.settings.base_url}/unsubscribe/{token}"

    def confirm(self, signup_id: int) -> str:
        token = self.tokens.make(CONFIRM, [self.subscriber.id, signup_id])
        return f"{self.settings.base_url}/confirm/{token}"

    def privacy(self) -> str:
        token = self.tokens.make(PRIVACY, [self.subscriber.id])
        return f"{self.settings.base_url}/privacy/{token}"

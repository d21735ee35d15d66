"""Composing the message for one delivery: which template, which values, which links.

Everything here reads; nothing is written. A template renders with plain values only
(names, numbers, URLs built from DRIP_BASE_URL), never with ORM objects or settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drip.errors import DripError
from drip.messages import Envelope, build_message, message_id, recipient_address
from drip.models import ConsentRecord, Delivery, DeliveryKind, Sequence, Step, Subscriber
from drip.rendering import EmailTemplate, Footer, Renderer
from drip.series_files import (
    CONFIRM_FOLDER,
    PRIVACY_FOLDER,
    latest_version,
    read_email,
    version_template,
)
from drip.settings import Settings
from drip.tokens import CONFIRM, PRIVACY, UNSUBSCRIBE, Tokens


@dataclass(frozen=True)
class Composed:
    message: EmailMessage
    rcpt_to: str
    template_version_id: int | None


def compose(
    session: Session,
    delivery: Delivery,
    *,
    settings: Settings,
    renderer: Renderer,
    tokens: Tokens,
    now: datetime,
) -> Composed:
    subscriber = session.get_one(Subscriber, delivery.subscriber_id)
    sequence = session.get_one(Sequence, subscriber.sequence_id)
    links = _Links(settings, tokens, subscriber)
    total = session.scalar(
        sa.select(sa.func.max(Step.number)).where(Step.sequence_id == sequence.id)
    )
    context: dict[str, str | int] = {
        "first_name": subscriber.first_name,
        "series_name": sequence.name,
        "sender_name": settings.sender.display_name or sequence.name,
        "lesson_total": total or 0,
    }
    version_id = None
    if delivery.kind == DeliveryKind.CONFIRMATION:
        template = read_email(settings.emails_dir / CONFIRM_FOLDER)
        context["confirm_url"] = links.confirm(_latest_consent(session, subscriber))
        context["confirm_days"] = max(1, settings.confirm_max_age.days)
        reason = (
            f"Someone, hopefully you, asked to join {sequence.name} with this address. "
            "Without a click on the confirm button you will get nothing more from us."
        )
    elif delivery.kind == DeliveryKind.PRIVACY:
        template = read_email(settings.emails_dir / PRIVACY_FOLDER)
        context["privacy_url"] = links.privacy()
        reason = (
            "Someone, hopefully you, asked on our privacy page for the data we keep about "
            "this address. If it was not you, ignore this email: nothing changes."
        )
    else:
        step = session.get_one(Step, delivery.step_id)
        template, version_id = _current_template(session, step)
        context["lesson_number"] = step.number
        confirmed = subscriber.confirmed_at or now
        reason = (
            f"You are getting this because you signed up for {sequence.name} and confirmed "
            f"on {confirmed:%d %B %Y}."
        )
    rendered = renderer.render(
        template,
        context,
        Footer(
            reason=reason,
            unsubscribe_url=links.unsubscribe(),
            postal_address=settings.postal_address,
            sender_name=str(context["sender_name"]),
            contact=settings.contact,
        ),
    )
    message = build_message(
        rendered,
        Envelope(
            sender=settings.sender,
            recipient=recipient_address(subscriber.email, subscriber.first_name),
            list_id=f"<{sequence.slug}.{settings.mail_domain}>",
            feedback_id=_feedback_id(delivery, context, sequence.slug, settings),
            unsubscribe_url=links.unsubscribe(),
            date=now,
        ),
        msgid=message_id(delivery.id, secret=settings.secret_key, domain=settings.mail_domain),
    )
    return Composed(message, subscriber.email, version_id)


def _feedback_id(
    delivery: Delivery, context: dict[str, str | int], slug: str, settings: Settings
) -> str:
    """Gmail's feedback loop groups complaints by these fields: step, series, kind, sender."""
    step = context.get("lesson_number", delivery.kind.value)
    return f"{step}:{slug}:{delivery.kind.value}:{settings.feedback_sender}"


def _current_template(session: Session, step: Step) -> tuple[EmailTemplate, int]:
    version = latest_version(session, step.id)
    if version is None:
        raise DripError(f"step {step.number} has no template")
    return version_template(version), version.id


def _latest_consent(session: Session, subscriber: Subscriber) -> int:
    consent_id = session.scalar(
        sa.select(sa.func.max(ConsentRecord.id)).where(ConsentRecord.subscriber_id == subscriber.id)
    )
    return consent_id or 0


@dataclass(frozen=True)
class _Links:
    """Absolute links for one subscriber, always on DRIP_BASE_URL (never a request's Host)."""

    settings: Settings
    tokens: Tokens
    subscriber: Subscriber

    def unsubscribe(self) -> str:
        token = self.tokens.make(UNSUBSCRIBE, [self.subscriber.id])
        return f"{self.settings.base_url}/unsubscribe/{token}"

    def confirm(self, consent_id: int) -> str:
        token = self.tokens.make(CONFIRM, [self.subscriber.id, consent_id])
        return f"{self.settings.base_url}/confirm/{token}"

    def privacy(self) -> str:
        token = self.tokens.make(PRIVACY, [self.subscriber.id])
        return f"{self.settings.base_url}/privacy/{token}"

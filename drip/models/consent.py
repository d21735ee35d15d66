"""Evidence of consent (standards CON-01): the notices shown, and what each person did.

Both tables are append-only. Migration 0014 installs database triggers that refuse every
UPDATE, and every DELETE unless an erasure is in progress (an `erasure_marks` row,
drip.consent.erasing): whoever edits rows by hand, or a bug, cannot rewrite the proof.
"""

from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from drip.db import UTCDateTime
from drip.models.base import IDS_NEVER_REUSED, Base, str_enum


class ConsentText(Base):
    """One wording of the consent notice, verbatim, as shown next to a form (or the
    statement an import row carried). Never edited: a changed wording, or a changed
    privacy policy, is a new row with the next `version`."""

    __tablename__ = "consent_texts"
    __table_args__ = (
        sa.UniqueConstraint("sha256", "privacy_policy_version", name="uq_consent_texts_wording"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(unique=True)
    body: Mapped[str] = mapped_column(sa.Text)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    privacy_policy_version: Mapped[str] = mapped_column(sa.String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ConsentEventKind(enum.StrEnum):
    SIGNUP = "signup"
    CONFIRM = "confirm"
    WITHDRAW = "withdraw"
    RESUBSCRIBE = "resubscribe"


class ConsentMethod(enum.StrEnum):
    """How a consent was withdrawn (or an unsubscribe undone: by `link` or `admin`).

    `link` is the unsubscribe link in an email; `privacy_page` the unsubscribe button of
    the privacy page (standards LAW-12), which the proof of consent names as it is
    (LAW-21) rather than as the link that led there (migration 0023). `erasure`
    completes the standard's list, but an erasure deletes the whole log with it, so no
    stored row carries it today."""

    ONE_CLICK_POST = "one_click_post"
    LINK = "link"
    PRIVACY_PAGE = "privacy_page"
    COMPLAINT = "complaint"
    HARD_BOUNCE = "hard_bounce"
    ADMIN = "admin"
    ERASURE = "erasure"


class ConsentEvent(Base):
    """One thing that happened to a subscriber's consent; the F5 fields each kind fills:

    signup: email as entered and normalised, the text shown, form id, page URL, referrer,
    embed origin, IP and user agent, purposes; `occurred_at` is signed_up_at.
    confirm: IP and user agent of the click, the Message-ID and send time of the
    confirmation email it came from; `occurred_at` is confirmed_at.
    withdraw: `method`; `occurred_at` is withdrawn_at. resubscribe: an unsubscribe undone
    within its 30 days, by `method` link (with IP and user agent) or admin.

    Every event after a signup names it in `signup_id` and repeats its `consent_text_id`,
    so each event points to the text its person was shown. NULLs are fields that do not
    belong to the kind, or that drip did not record before migration 0014.
    """

    __tablename__ = "consent_events"
    __table_args__ = (
        sa.Index("ix_consent_events_consent_text_id", "consent_text_id"),
        sa.Index("ix_consent_events_counted", "kind", "occurred_at", "subscriber_id"),
        IDS_NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        sa.ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[ConsentEventKind] = mapped_column(str_enum(ConsentEventKind, "consent_event_kind"))
    signup_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("consent_events.id", ondelete="CASCADE")
    )
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    consent_text_id: Mapped[int | None] = mapped_column(sa.ForeignKey("consent_texts.id"))
    email_entered: Mapped[str | None] = mapped_column(sa.String(320))
    email_normalised: Mapped[str | None] = mapped_column(sa.String(254))
    form_id: Mapped[str | None] = mapped_column(sa.String(32))
    page_url: Mapped[str | None] = mapped_column(sa.String(500))
    referrer: Mapped[str | None] = mapped_column(sa.String(500))
    embed_origin: Mapped[str | None] = mapped_column(sa.String(200))
    ip: Mapped[str | None] = mapped_column(sa.String(45))
    user_agent: Mapped[str | None] = mapped_column(sa.String(400))
    purposes: Mapped[str | None] = mapped_column(sa.String(200))
    confirmation_message_id: Mapped[str | None] = mapped_column(sa.String(255))
    confirmation_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    method: Mapped[ConsentMethod | None] = mapped_column(str_enum(ConsentMethod, "consent_method"))


class ErasureMark(Base):
    """Present only inside an erasure's own transaction: the append-only triggers let a
    DELETE through while a row exists here (drip.consent.erasing explains why a table)."""

    __tablename__ = "erasure_marks"

    id: Mapped[int] = mapped_column(primary_key=True)

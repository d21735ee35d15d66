"""A person on one series, and where they are in it."""

from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from drip.db import UTCDateTime
from drip.models.base import IDS_NEVER_REUSED, Base, str_enum


class SubscriberStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    COMPLETED = "completed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"


class Subscriber(Base):
    """`next_step`/`next_send_at` are the schedule: the scheduler claims rows whose
    next_send_at has passed. Both are NULL when nothing more is due.

    `paused_until` is the end of a pause (drip.subscriptions.pause): no lesson is issued
    before it, and the subscriber is paused while it lies ahead. It is stored because a
    late next_send_at does not tell a pause from a series whose lessons are days apart.
    A pause leaves next_send_at at the series' time for the next lesson, so a writer's
    new day and an admin's move change it as for anyone, and Resume rebuilds nothing;
    the lesson goes at the later of the two (drip.subscriptions.scheduled_at).

    `ix_subscribers_due` leaves paused subscribers out, so the scheduler's due range
    never holds them however many pause; each pass ends the pauses that are over
    through `ix_subscribers_paused_until` (drip.subscriptions.end_pauses), which puts
    them back in."""

    __tablename__ = "subscribers"
    __table_args__ = (
        sa.UniqueConstraint("sequence_id", "email", name="uq_subscribers_sequence_email"),
        sa.Index(
            "ix_subscribers_due",
            "status",
            "next_send_at",
            postgresql_where=sa.text("paused_until IS NULL"),
            sqlite_where=sa.text("paused_until IS NULL"),
        ),
        sa.Index(
            "ix_subscribers_paused_until",
            "paused_until",
            postgresql_where=sa.text("paused_until IS NOT NULL"),
            sqlite_where=sa.text("paused_until IS NOT NULL"),
        ),
        sa.Index("ix_subscribers_list", "sequence_id", "id"),
        sa.Index("ix_subscribers_by_status", "sequence_id", "status", "id"),
        sa.Index("ix_subscribers_by_step", "sequence_id", "next_step", "id"),
        sa.Index("ix_subscribers_created", "sequence_id", "created_at"),
        sa.Index("ix_subscribers_confirmed", "sequence_id", "confirmed_at"),
        sa.Index("ix_subscribers_ended", "ended_at"),
        sa.CheckConstraint("send_hour BETWEEN 0 AND 23", name="send_hour_range"),
        IDS_NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sequence_id: Mapped[int] = mapped_column(sa.ForeignKey("sequences.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(sa.String(254))
    first_name: Mapped[str] = mapped_column(sa.String(100), default="")
    timezone: Mapped[str] = mapped_column(sa.String(64), default="UTC")
    send_hour: Mapped[int] = mapped_column(default=8)
    status: Mapped[SubscriberStatus] = mapped_column(
        str_enum(SubscriberStatus, "subscriber_status")
    )
    next_step: Mapped[int | None]
    next_send_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    confirmation_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime)

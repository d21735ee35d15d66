"""One email to one subscriber: created before it is queued, the unit of exactly-once."""

from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from drip.db import UTCDateTime
from drip.models.base import IDS_NEVER_REUSED, Base, str_enum


class DeliveryKind(enum.StrEnum):
    CONFIRMATION = "confirmation"
    STEP = "step"
    PRIVACY = "privacy"


class DeliveryStatus(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Delivery(Base):
    """A step email is unique per (subscriber, step): a second scheduler or a redelivered
    message can never create it twice. Confirmation and privacy-link emails have no step
    (each re-send is its own row). `lease_until` bounds how long a worker may hold a
    delivery in `sending` before the sweeper treats the outcome as unknown; `retry_at` is
    when a delivery that failed temporarily is due to be tried again. `bounce` is what the
    recipient's side reported after it was sent: "soft", "hard" or "complaint";
    `complained_at` is when drip learned of a complaint about it (drip.complaints). A step's
    `due_at` is when the schedule wanted it out; how late it actually went decides when the
    next one may follow (drip.timing.catch_up)."""

    __tablename__ = "deliveries"
    __table_args__ = (
        sa.UniqueConstraint("subscriber_id", "step_id", name="uq_deliveries_subscriber_step"),
        sa.Index("ix_deliveries_status_queued_at", "status", "queued_at"),
        sa.Index("ix_deliveries_step_status", "step_id", "status"),
        sa.Index("ix_deliveries_message_id", "message_id"),
        sa.Index("ix_deliveries_sent_at", "sent_at"),
        sa.Index(
            "ix_deliveries_ambiguous",
            "ambiguous_resends",
            postgresql_where=sa.text("ambiguous_resends > 0"),
            sqlite_where=sa.text("ambiguous_resends > 0"),
        ),
        sa.Index(
            "ix_deliveries_bounced",
            "step_id",
            "bounce",
            postgresql_where=sa.text("bounce IS NOT NULL"),
            sqlite_where=sa.text("bounce IS NOT NULL"),
        ),
        sa.Index(
            "ix_deliveries_complained_at",
            "complained_at",
            postgresql_where=sa.text("complained_at IS NOT NULL"),
            sqlite_where=sa.text("complained_at IS NOT NULL"),
        ),
        IDS_NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        sa.ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[DeliveryKind] = mapped_column(str_enum(DeliveryKind, "delivery_kind"))
    step_id: Mapped[int | None] = mapped_column(sa.ForeignKey("steps.id", ondelete="SET NULL"))
    status: Mapped[DeliveryStatus] = mapped_column(str_enum(DeliveryStatus, "delivery_status"))
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    message_id: Mapped[str | None] = mapped_column(sa.String(255))
    template_version_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("template_versions.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    bounce: Mapped[str | None] = mapped_column(sa.String(16))
    complained_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ambiguous_resends: Mapped[int] = mapped_column(default=0, server_default="0")
    """Times this email was sent again after its worker vanished mid-send (REL-05)."""

"""Confirmation emails queued per address, for the list-bombing limits."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from drip.db import UTCDateTime
from drip.models.base import Base


class ConfirmationMail(Base):
    """One confirmation email queued to an address, named by the same keyed hash as a
    suppression: never the address itself, and kept through an erasure, so that erasing
    and signing up again cannot reset the limits (drip.list_bombing)."""

    __tablename__ = "confirmation_mails"
    __table_args__ = (sa.Index("ix_confirmation_mails_email_hash", "email_hash", "queued_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email_hash: Mapped[str] = mapped_column(sa.String(64))
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)

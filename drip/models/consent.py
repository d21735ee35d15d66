"""Evidence of consent: what the visitor was shown, where, when, and when they confirmed."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from drip.db import UTCDateTime
from drip.models.base import Base


class ConsentRecord(Base):
    """One per signup; a fresh signup after unsubscribing adds a new record."""

    __tablename__ = "consent_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        sa.ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ip: Mapped[str] = mapped_column(sa.String(45), default="")
    user_agent: Mapped[str] = mapped_column(sa.String(400), default="")
    page: Mapped[str] = mapped_column(sa.String(500), default="")
    consent_text: Mapped[str] = mapped_column(sa.Text)
    consent_version: Mapped[str] = mapped_column(sa.String(64), default="")
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirm_ip: Mapped[str | None] = mapped_column(sa.String(45))
    confirm_user_agent: Mapped[str | None] = mapped_column(sa.String(400))

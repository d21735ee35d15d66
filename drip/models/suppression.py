"""Addresses that must not be mailed again by accident, kept only as keyed hashes."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from drip.db import UTCDateTime
from drip.models.base import Base


class Suppression(Base):
    """What is left of an erased subscriber: HMAC-SHA256 of the normalised address under
    the instance's secret key. Without the key the hash cannot be tested against guesses,
    and it cannot be turned back into the address."""

    __tablename__ = "suppressions"
    __table_args__ = (sa.Index("ix_suppressions_reason_created_at", "reason", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    reason: Mapped[str] = mapped_column(sa.String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    erased: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    """Whether an erasure left this hash too. A declined signup's hash outranks an
    erasure's, and goes once its quiet period is over (drip.privacy.end_quiet_periods):
    then the hash stays, as the erasure's, if this says so."""

"""Signups and confirmations deleted from the consent log, kept as counts per series,
day and reason (drip.retired)."""

from __future__ import annotations

import enum
from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from drip.models.base import Base, str_enum


class RetiredReason(enum.StrEnum):
    """Why the signups went: deleted by the purge, never confirmed (drip.privacy.
    purge_unconfirmed), or erased with their subscription once it had ended longer ago
    than the retention period (drip.privacy.erase_ended)."""

    PURGED = "purged"
    EXPIRED = "expired"


class RetiredCounts(Base):
    """One row per series, UTC day of the event and reason on which something was
    deleted; counts only, with nothing in them about anyone. A signup counts on the day
    of its signup, a confirmation on the day of its confirmation."""

    __tablename__ = "retired_counts"

    sequence_id: Mapped[int] = mapped_column(
        sa.ForeignKey("sequences.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    reason: Mapped[RetiredReason] = mapped_column(
        str_enum(RetiredReason, "retired_reason"), primary_key=True
    )
    signups: Mapped[int]
    confirmations: Mapped[int]
    """Always 0 for the purge: what it deletes was never confirmed."""

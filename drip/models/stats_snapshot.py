"""A series' dashboard numbers as a worker last counted them (drip.snapshots)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from drip.db import UTCDateTime
from drip.models.base import Base


class StatsSnapshot(Base):
    """One row per series. The scheduler makes it when it first asks for a count
    (`requested_at`); `computed_at`, `took_ms` and `body` stay empty until a worker has
    counted, and are then replaced together on every count."""

    __tablename__ = "stats_snapshots"

    sequence_id: Mapped[int] = mapped_column(
        sa.ForeignKey("sequences.id", ondelete="CASCADE"), primary_key=True
    )
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    computed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    took_ms: Mapped[int | None] = mapped_column(nullable=True)
    body: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)

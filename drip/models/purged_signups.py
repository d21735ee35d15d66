"""How many signups the purge deleted unconfirmed, per series and day (drip.purged)."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from drip.models.base import Base


class PurgedSignups(Base):
    """One row per series and UTC day of signup on which the purge deleted someone; counts
    only, with nothing in them about anyone."""

    __tablename__ = "purged_signups"

    sequence_id: Mapped[int] = mapped_column(
        sa.ForeignKey("sequences.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    signups: Mapped[int]

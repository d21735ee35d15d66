"""Times drip stopped issuing lessons on its own, and when an admin let it go on."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from drip.db import UTCDateTime
from drip.models.base import Base


class SendingHold(Base):
    """New lessons are held while a row has no `resumed_at` (see drip.complaints)."""

    __tablename__ = "sending_holds"

    id: Mapped[int] = mapped_column(primary_key=True)
    reason: Mapped[str] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resumed_by: Mapped[str | None] = mapped_column(sa.String(254), nullable=True)

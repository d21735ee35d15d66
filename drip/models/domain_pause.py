"""Recipient domains that asked drip to stop sending for a while."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from drip.db import UTCDateTime
from drip.models.base import Base


class DomainPause(Base):
    """A domain that throttled us (Gmail's 4.7.28): no email to it before `until`.

    Kept in the database, not Redis, so every worker on every machine honours it and a
    Redis restart cannot cut it short.
    """

    __tablename__ = "domain_pauses"

    domain: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    until: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(sa.String(500))

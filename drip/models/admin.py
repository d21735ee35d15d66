"""The people who run the series: they log into /admin."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from drip.db import UTCDateTime
from drip.models.base import IDS_NEVER_REUSED, Base


class Admin(Base):
    __tablename__ = "admins"
    __table_args__ = IDS_NEVER_REUSED

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AdminSession(Base):
    """A login that has not ended (drip.admin_sessions).

    Keyed by the SHA-256 of the random token in the browser's session cookie, not the
    token itself: whoever reads this table still cannot log in."""

    __tablename__ = "admin_sessions"

    token_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    admin_id: Mapped[int] = mapped_column(
        sa.ForeignKey("admins.id", ondelete="CASCADE"), index=True
    )
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)

"""Signups received by the web and not yet handled by a worker."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from drip.db import UTCDateTime
from drip.models.base import IDS_NEVER_REUSED, Base


class ReceivedSignup(Base):
    """One form or API signup as the visitor sent it, with the notice the page showed,
    held for the seconds until a worker handles it (drip.intake) and then deleted.

    The web writes this one row whatever the address's state, so the time a signup
    takes tells nobody whether the address is on the list (standards SEC-12). The
    fields are already checked, and cut as consent evidence; `email` is the normalised
    address, which an erasure looks for, `email_entered` the address as typed, which
    the worker checks again exactly as the web did.

    `sequence_id` is the series the form was for, by id, not by slug: an admin may
    rename a series and give its old slug to another before a worker gets here. A
    series deleted meanwhile takes its received signups with it, as it does its
    subscribers, so a worker finds nothing to do rather than a series that is gone; on
    SQLite, which may give a deleted highest id to the next series, that also keeps
    that series from taking them over.

    `attempts` counts the messages workers took for it, each in a transaction of its
    own committed before the handling, so one killed mid-handling counts too
    (drip.intake.attempt); the one past DRIP_MAX_ATTEMPTS gives up instead of handling.
    `queued_at` is when a message for it was last queued, and None once a worker gave
    up on it: the sweeper then leaves it alone until DRIP_PENDING_DAYS deletes it.
    """

    __tablename__ = "received_signups"
    __table_args__ = IDS_NEVER_REUSED

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), index=True)
    email_entered: Mapped[str] = mapped_column(sa.Text)
    first_name: Mapped[str] = mapped_column(sa.String(100))
    timezone: Mapped[str] = mapped_column(sa.String(64))
    sequence_id: Mapped[int] = mapped_column(sa.ForeignKey("sequences.id", ondelete="CASCADE"))
    ip: Mapped[str] = mapped_column(sa.String(45))
    user_agent: Mapped[str] = mapped_column(sa.String(400))
    page: Mapped[str] = mapped_column(sa.String(500))
    referrer: Mapped[str] = mapped_column(sa.String(500))
    embed_origin: Mapped[str] = mapped_column(sa.String(200))
    form_id: Mapped[str] = mapped_column(sa.String(32))
    consent_text: Mapped[str] = mapped_column(sa.Text)
    privacy_policy: Mapped[str] = mapped_column(sa.String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")

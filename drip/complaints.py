"""The complaint-rate guard (standards DEL-01).

Gmail stops delivering for a sender whose spam-complaint rate reaches 0.3% of a day's
mail, and lifts that only after a week under it. So drip watches its own rate per UTC
day: at 0.08% the admin is warned, at 0.25% new lessons are held (confirmations and
privacy links still go out) until an admin has read why and resumes. One instance sends
from one domain (DRIP_FROM), so the rate is the instance's.

The day's rate is the complaints that arrived since midnight UTC over the emails sent in
the last SENT_WINDOW (24 hours). By arrival, because readers complain hours after the
email comes: counted by the day their email was sent, the complaints arriving after
midnight about the evening before counted on no day at all (their own had been judged).
Over the last 24 hours' emails rather than today's alone, because the complaints that
come in before today's mail goes out are about yesterday's: set against the few emails
sent since midnight they would hold a healthy list most mornings (10,000 a day at 13:00
UTC at 0.1%: 3 complaints overnight, then 0.3% once the first 1,000 are out). In the
day's last minute both count the same UTC day, as Gmail's daily figure does.

A rate needs complaints as well as emails: one or two on a small list are noise (one in
200 is 0.5%), three in a day are a signal on any list. So a hold takes at least
MIN_COMPLAINTS of them, and a warning MIN_COMPLAINTS_TO_WARN: on a small list the
admin hears of the second complaint before the third stops the lessons. (A floor of
1,000 emails, before, let a list sending 500 a day go on at 10%.)
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drip.models import Delivery, DeliveryStatus, SendingHold

log = logging.getLogger(__name__)
WARN_AT = 0.0008
HOLD_AT = 0.0025
MIN_COMPLAINTS = 3
MIN_COMPLAINTS_TO_WARN = 2
SENT_WINDOW = timedelta(hours=24)


class Level(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    HOLD = "hold"


@dataclass(frozen=True)
class DayRate:
    """The complaints that arrived since `since` (midnight UTC), over the emails sent
    since `sent_since` (24 hours ago)."""

    since: datetime
    sent_since: datetime
    delivered: int
    complaints: int

    @property
    def rate(self) -> float:
        """0 with no email sent: nothing to set the complaints against, and nothing for a
        hold to stop until the next emails go out, which give a rate again."""
        return self.complaints / self.delivered if self.delivered else 0.0

    @property
    def level(self) -> Level:
        if self.complaints >= MIN_COMPLAINTS and self.rate >= HOLD_AT:
            return Level.HOLD
        if self.complaints >= MIN_COMPLAINTS_TO_WARN and self.rate >= WARN_AT:
            return Level.WARN
        return Level.OK


def day_rate(session: Session, now: datetime) -> DayRate:
    """Today's figures, counted in full: for the dashboard, which shows them."""
    since, sent_since = _midnight(now), now - SENT_WINDOW
    complaints = session.scalar(_COMPLAINTS, {"since": since}) or 0
    delivered = session.scalar(_SENT, {"since": sent_since}) or 0
    return DayRate(since, sent_since, delivered=delivered, complaints=complaints)


def holding_rate(session: Session, now: datetime) -> DayRate | None:
    """Today's figures if they call for a hold, else None, reading only as many of the
    window's deliveries as could still make it one.

    The scheduler asks on every pass, and a busy day sends a million emails, which a
    full count reads one by one. Complaints are few and have an index of their own; the
    rate can reach HOLD_AT only while the emails number at most complaints / HOLD_AT,
    so they are counted up to one past that and no further, and not at all below
    MIN_COMPLAINTS.
    """
    since, sent_since = _midnight(now), now - SENT_WINDOW
    complaints = session.scalar(_COMPLAINTS, {"since": since}) or 0
    if complaints < MIN_COMPLAINTS:
        return None
    most = math.floor(complaints / HOLD_AT)
    delivered = session.scalar(_SENT_UP_TO, {"since": sent_since, "most": most + 1}) or 0
    today = DayRate(since, sent_since, delivered=delivered, complaints=complaints)
    return today if today.level is Level.HOLD else None


def _midnight(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


_COMPLAINTS = sa.select(sa.func.count()).where(Delivery.complained_at >= sa.bindparam("since"))
"""Read from the partial index of complaints (ix_deliveries_complained_at), whose rows
are only those with a `complained_at`: a comparison on the column implies that, which
both databases see even through a bound value. Only sent emails draw complaints."""
_SENT_SINCE = (Delivery.sent_at >= sa.bindparam("since"), Delivery.status == DeliveryStatus.SENT)
_SENT = sa.select(sa.func.count()).where(*_SENT_SINCE)
_SENT_UP_TO = sa.select(sa.func.count()).select_from(
    sa.select(Delivery.id).where(*_SENT_SINCE).limit(sa.bindparam("most")).subquery()
)


def current_hold(session: Session) -> SendingHold | None:
    return session.scalars(
        sa.select(SendingHold).where(SendingHold.resumed_at.is_(None)).order_by(SendingHold.id)
    ).first()


def guard(session: Session, now: datetime) -> SendingHold | None:
    """Hold new lessons when today's rate calls for it; the hold in force, if any.

    Once an admin resumes, the guard does not hold again the same UTC day: the admin
    has seen today's figure, and tomorrow starts a new count.
    """
    hold = current_hold(session)
    if hold is not None:
        return hold
    if _held_since(session, _midnight(now)):
        return None  # resumed today: not again, and not worth counting
    today = holding_rate(session, now)
    if today is None:
        return None
    hold = SendingHold(
        reason=(
            f"{today.complaints} spam complaints since {today.since:%Y-%m-%d} 00:00 UTC, "
            f"against {today.delivered} emails sent in the last 24 hours ({today.rate:.2%}); "
            f"new lessons wait until you resume. Gmail blocks senders at 0.3%."
        ),
        created_at=now,
    )
    session.add(hold)
    log.warning("sending_held complaints=%d delivered=%d", today.complaints, today.delivered)
    return hold


def resume(session: Session, now: datetime, *, admin: str) -> bool:
    """Let new lessons go out again; False when nothing was held."""
    hold = current_hold(session)
    if hold is None:
        return False
    hold.resumed_at = now
    hold.resumed_by = admin
    return True


def _held_since(session: Session, since: datetime) -> bool:
    return (
        session.scalar(sa.select(SendingHold.id).where(SendingHold.created_at >= since).limit(1))
        is not None
    )

"""How many confirmation emails one address may get: 1 a day and 3 in 30 days (SEC-13).

A signup form that mails whatever address it is given can be turned against a stranger:
a script posts their address again and again. Double opt-in stops lessons from reaching
them, and these limits stop the confirmations from piling up. They count in the database
by keyed hash, whatever the route (form, API, import) and whatever happened in between
(an unsubscribe, an erasure, a lost Redis), and whichever series the signup was for.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drip.models import ConfirmationMail
from drip.privacy import email_hash

LIMITS = ((1, timedelta(hours=24)), (3, timedelta(days=30)))
"""(at most this many confirmation emails, within this long) for one address."""
KEPT = max(window for _, window in LIMITS)


def may_mail(session: Session, secret: str, email: str, *, now: datetime) -> bool:
    """Whether one more confirmation email to `email` stays within every limit."""
    sent = session.scalars(
        sa.select(ConfirmationMail.queued_at).where(
            ConfirmationMail.email_hash == email_hash(secret, email),
            ConfirmationMail.queued_at > now - KEPT,
        )
    ).all()
    return all(sum(at > now - window for at in sent) < most for most, window in LIMITS)


def note_mailed(session: Session, secret: str, email: str, *, now: datetime) -> None:
    session.add(ConfirmationMail(email_hash=email_hash(secret, email), queued_at=now))


def forget_old(session: Session, *, now: datetime) -> None:
    """Drop what no limit looks at any more."""
    session.execute(sa.delete(ConfirmationMail).where(ConfirmationMail.queued_at <= now - KEPT))

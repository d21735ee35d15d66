"""Pausing a recipient domain that throttles us (standards DEL-02).

Gmail answers "4.7.28" when mail from a sender arrives at an unusual rate, and asks for
at least ten minutes of silence. Every worker must honour that for every subscriber on
the domain, or the next worker's attempt makes things worse; so the pause is a row that
the claim checks, and a delivery that meets it waits without using an attempt.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from drip.models import DomainPause

PAUSE = timedelta(minutes=10)


def domain_of(email: str) -> str:
    return email.rpartition("@")[2].lower()


def pause(session: Session, domain: str, until: datetime, reason: str) -> None:
    """Pause `domain` until `until`, or later if it is already paused for longer; an
    upsert, because several workers hear the same refusal at once."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(DomainPause).values(domain=domain, until=until, reason=reason[:500])
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["domain"],
            set_={"until": until, "reason": statement.excluded.reason},
            where=DomainPause.until < until,
        )
    )


PAUSED = sa.select(DomainPause.domain, DomainPause.until).where(
    DomainPause.domain.in_(sa.bindparam("domains", expanding=True)),
    DomainPause.until > sa.bindparam("now"),
)
"""Which of `:domains` are paused at `:now`, and until when. Built once: every claim of
a batch of emails reads it, with the addresses' suppressions (drip.sending)."""

"""Admin login sessions, kept in the database so that logging out ends one for good.

The browser's session cookie (Flask's, signed) holds a random token; the database holds
its SHA-256, whose admin it is and when the login began. A session ends:

- at logout, its row deleted, so a copy of the cookie taken before is worth nothing;
- after IDLE_TIMEOUT without a request: the cookie's signed timestamp, which Flask
  checks (PERMANENT_SESSION_LIFETIME) and renews with each request;
- LIFETIME after the login, however busy, the renewals notwithstanding;
- when the admin's password changes (drip.admins.set_password), every row of the
  admin deleted.

`now` is the wall clock here, never the series' clock: a demo or a test moves that one
days ahead, and an admin watching must not be logged out by it.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drip.models import Admin, AdminSession

LIFETIME = timedelta(hours=8)
"""From login to the end, whatever happens between (standards SEC-17: 8 h or less)."""
IDLE_TIMEOUT = timedelta(hours=2)
"""Long enough to write a lesson in the editor without saving, short enough that a
browser left logged in does not stay so for the day."""


def start_session(session: Session, admin: Admin, *, now: datetime) -> str:
    """A new session for `admin`: the token for the cookie. Sessions past their
    lifetime, anyone's, are deleted on the way, so the table holds live ones only."""
    session.execute(sa.delete(AdminSession).where(AdminSession.started_at <= now - LIFETIME))
    token = secrets.token_urlsafe(32)
    session.add(AdminSession(token_hash=_digest(token), admin_id=admin.id, started_at=now))
    return token


def session_admin(session: Session, token: str, *, now: datetime) -> Admin | None:
    """The admin whose live session `token` is; None once it has ended."""
    started = session.get(AdminSession, _digest(token))
    if started is None or started.started_at <= now - LIFETIME:
        return None
    return session.get(Admin, started.admin_id)


def end_session(session: Session, token: str) -> None:
    session.execute(sa.delete(AdminSession).where(AdminSession.token_hash == _digest(token)))


def end_every_session(session: Session, admin: Admin) -> None:
    session.execute(sa.delete(AdminSession).where(AdminSession.admin_id == admin.id))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()

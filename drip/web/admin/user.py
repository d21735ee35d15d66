"""The logged-in admin as Flask-Login sees it: plain values, never an ORM object.

The session cookie holds the token of a server-side session (drip.admin_sessions), which
Flask-Login takes for the user id: each request loads the admin through it, so a session
ended by logout, by its lifetime or by a new password loads nobody."""

from __future__ import annotations

from dataclasses import dataclass

from flask_login import UserMixin

from drip.admin_sessions import session_admin
from drip.models import Admin
from drip.web.context import ctx


@dataclass(frozen=True)
class AdminUser(UserMixin):
    id: int
    email: str
    token: str

    @classmethod
    def of(cls, admin: Admin, token: str) -> AdminUser:
        return cls(admin.id, admin.email, token)

    def get_id(self) -> str:
        return self.token


def load_admin(token: str) -> AdminUser | None:
    web = ctx()
    with web.reading() as session:
        admin = session_admin(session, token, now=web.wall_clock.now())
        return None if admin is None else AdminUser.of(admin, token)

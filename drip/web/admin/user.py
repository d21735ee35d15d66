"""The logged-in admin as Flask-Login sees it: plain values, never an ORM object.

The session holds the admin's id and session stamp (drip.admins.session_stamp), so a
session made before a password change no longer loads anyone: Flask-Login's alternative
ids, with the stamp checked on every request."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from flask_login import UserMixin

from drip.admins import session_stamp
from drip.models import Admin
from drip.web.context import ctx


@dataclass(frozen=True)
class AdminUser(UserMixin):
    id: int
    email: str
    stamp: str

    @classmethod
    def of(cls, admin: Admin) -> AdminUser:
        return cls(admin.id, admin.email, session_stamp(ctx().settings.secret_key, admin))

    def get_id(self) -> str:
        return f"{self.id}:{self.stamp}"


def load_admin(user_id: str) -> AdminUser | None:
    number, _, stamp = user_id.partition(":")
    if not (number.isascii() and number.isdigit()):
        return None
    with ctx().reading() as session:
        admin = session.get(Admin, int(number))
        if admin is None:
            return None
        user = AdminUser.of(admin)
    return user if hmac.compare_digest(user.stamp.encode(), stamp.encode()) else None

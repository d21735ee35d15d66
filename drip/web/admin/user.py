"""The logged-in admin as Flask-Login sees it: plain values, never an ORM object."""

from __future__ import annotations

from dataclasses import dataclass

from flask_login import UserMixin

from drip.models import Admin
from drip.web.context import ctx


@dataclass(frozen=True)
class AdminUser(UserMixin):
    id: int
    email: str

    def get_id(self) -> str:
        return str(self.id)


def load_admin(user_id: str) -> AdminUser | None:
    if not (user_id.isascii() and user_id.isdigit()):
        return None
    with ctx().reading() as session:
        admin = session.get(Admin, int(user_id))
        return AdminUser(admin.id, admin.email) if admin else None

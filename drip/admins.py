"""Admin accounts: creating them, changing passwords, checking a login.

Passwords are hashed with Argon2id (argon2-cffi's defaults). A login for an unknown
address still runs one hash verification, so the answer takes as long as for a wrong
password and reveals nothing about which accounts exist.

Setting a new password ends every session made with the old one
(drip.admin_sessions), and both ways of setting one refuse a password easy to guess
(drip.passwords).

Each hash takes 64 MiB for a moment (Argon2's memory cost), so the stand-in hash for
unknown addresses is made at the first login, not at import: a web process that only
takes signups never reaches that peak.
"""

from __future__ import annotations

import functools
from datetime import datetime

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from drip.admin_sessions import end_every_session
from drip.errors import InvalidInput, NotFound
from drip.models import Admin
from drip.passwords import check_password
from drip.signup import normalise_email

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash("not a real password, only for timing")


def create_admin(session: Session, email: str, password: str, *, now: datetime) -> Admin:
    address = normalise_email(email)
    check_password(password, email=email)
    if session.scalar(sa.select(Admin.id).where(Admin.email == address)) is not None:
        raise InvalidInput(f"an admin {address} already exists", field="email")
    admin = Admin(email=address, password_hash=_hasher.hash(password), created_at=now)
    session.add(admin)
    session.flush()
    return admin


def account_address(email: str) -> str:
    """The address as accounts are stored (punycode, lower case: drip.signup's
    normalisation), so either spelling of an international domain finds the account. Text
    that is no address comes back only trimmed and lower-cased, to match nothing: a
    login's failure must not be told apart by its input (standards SEC-16)."""
    try:
        return normalise_email(email)
    except InvalidInput:
        return email.strip().lower()[:254]


def admin_id(session: Session, email: str) -> int | None:
    admin = _account(session, email)
    return None if admin is None else admin.id


def _account(session: Session, email: str) -> Admin | None:
    """The admin at `email`, if any. An address holding a NUL matches nothing without
    asking the database: no account has one, and PostgreSQL refuses the character even
    in a query, which answered a login with "cannot be stored" (400) instead of the
    usual failure (401), and left the attempt uncounted (standards SEC-16)."""
    address = account_address(email)
    if "\x00" in address:
        return None
    return session.scalar(sa.select(Admin).where(Admin.email == address))


def set_password(session: Session, email: str, password: str) -> Admin:
    """A new password for the admin at `email`, logging out every session of theirs: it
    is what an admin does when the old one may have leaked."""
    check_password(password, email=email)
    admin = _account(session, email)
    if admin is None:
        raise NotFound(f"no admin {email}")
    admin.password_hash = _hasher.hash(password)
    end_every_session(session, admin)
    return admin


def authenticate(session: Session, email: str, password: str, *, now: datetime) -> Admin | None:
    """The admin whose email and password these are, or None (same cost either way: the
    stand-in hash is made at the first login of the process, whoever logs in)."""
    dummy = _dummy_hash()
    admin = _account(session, email)
    try:
        _hasher.verify(admin.password_hash if admin else dummy, password)
    except (VerificationError, InvalidHashError):
        return None
    if admin is None:
        return None
    if _hasher.check_needs_rehash(admin.password_hash):
        admin.password_hash = _hasher.hash(password)
    admin.last_login_at = now
    return admin

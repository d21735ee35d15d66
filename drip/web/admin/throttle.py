"""How many wrong passwords a login may try: 10 in 15 minutes, then 429 (SEC-16).

Only failures count, so a correct password is never refused for other people's
mistakes, and an admin who logs in all day never for their own successes. Each login
is checked, before its password is, against two counters:

- its IP's, whatever account it tries: one machine cannot work through many;
- its account's, when it comes from a browser that has never logged into that account,
  or else that browser's own.

The second is OWASP's device cookie scheme ("Slow Down Online Guessing Attacks with
Device Cookies"). A successful login leaves a signed cookie in the browser, naming the
admin and a random nonce and sent back only to the login form. An attacker guessing
from many IPs fills the account's counter, which holds back only browsers new to the
account: the admin's own browser logs in as before, where a plain lockout per account
would keep the admin out for as long as anyone cared to keep guessing. A copy of the
cookie buys no extra guesses, as its counter is its own. The cost: while an attack goes
on, a browser new to the account waits for the window to end.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app, request, url_for
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from drip.admins import account_address, admin_id
from drip.errors import BadToken
from drip.tokens import ADMIN_DEVICE
from drip.web.context import ctx
from drip.web.limits import hashed_key, ip_key, limiter

LIMIT = "10 per 15 minutes"
COOKIE = "drip_admin_device"
TRUSTED_FOR = timedelta(days=90)
"""How long a browser stays known after its last login."""


@dataclass(frozen=True)
class LoginCounters:
    """The counters one login attempt answers to."""

    keys: tuple[str, ...]

    def refuse_if_full(self) -> None:
        for key in self.keys:
            limiter.refuse_if_full(LIMIT, key)

    def count_failure(self) -> None:
        for key in self.keys:
            limiter.count(LIMIT, key)


def login_counters(session: Session, email: str) -> LoginCounters:
    """The counters for a login to `email` from this request: the IP's, and the
    browser's if it has logged into that account before, the account's if not. The
    account is keyed by a keyed hash of its address, so Redis never holds it, and known
    and unknown addresses are counted alike."""
    nonce = _known_browser(session, email)
    if nonce is None:
        return LoginCounters((ip_key(), hashed_key("account", account_address(email))))
    return LoginCounters((ip_key(), f"browser:{nonce}"))


def remember_browser(response: Response, admin: int) -> None:
    """Mark the browser as one `admin` has logged in with, a new nonce each time."""
    token = ctx().tokens.make(ADMIN_DEVICE, [admin, secrets.randbits(63)])
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(TRUSTED_FOR.total_seconds()),
        path=url_for("admin_auth.login_post"),
        secure=current_app.config["SESSION_COOKIE_SECURE"],
        httponly=True,
        samesite="Strict",
    )


def _known_browser(session: Session, email: str) -> int | None:
    """The nonce of this browser's cookie if it is genuine, recent and for the admin at
    `email`."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        payload = ctx().tokens.read(ADMIN_DEVICE, token, max_age=TRUSTED_FOR)
    except BadToken:
        return None
    if len(payload) != 2 or payload[0] != admin_id(session, email):
        return None
    return payload[1]

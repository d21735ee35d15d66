"""Logging in and out. Rate-limited per IP and per account; one message for every failure."""

from __future__ import annotations

import re

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from werkzeug.wrappers import Response

from drip.admin_sessions import end_session, start_session
from drip.admins import account_address, authenticate
from drip.web.admin import check_csrf
from drip.web.admin.user import AdminUser
from drip.web.context import ctx
from drip.web.limits import limiter

bp = Blueprint("admin_auth", __name__, url_prefix="/admin")
bp.before_request(check_csrf)
LOGIN_LIMIT = "10 per 15 minutes"
ADMIN_PATH = re.compile(r"/admin(?:[/?][!#-\[\]-~]*)?")
"""A path in the admin, with its query: printable ASCII only, no space, no quote and no
backslash (which browsers read as a slash)."""


def _account_key() -> str:
    return "login:" + account_address(request.form.get("email", ""))


@bp.get("/login")
def login() -> str:
    return render_template("admin/login.html", next=_safe_next())


@bp.post("/login")
@limiter.limit(LOGIN_LIMIT)
@limiter.limit(LOGIN_LIMIT, key_func=_account_key)
def login_post() -> Response | tuple[str, int]:
    web = ctx()
    with web.transaction() as db:
        admin = authenticate(
            db, request.form.get("email", ""), request.form.get("password", ""), now=web.clock.now()
        )
        user = None
        if admin is not None:
            user = AdminUser.of(admin, start_session(db, admin, now=web.wall_clock.now()))
    if user is None:
        flash("That email and password do not match an admin account.")
        return render_template("admin/login.html", next=_safe_next()), 401
    session.clear()
    session.permanent = True
    login_user(user)
    return redirect(_safe_next() or url_for("admin_dashboard.index"))


@bp.post("/logout")
def logout() -> Response:
    if current_user.is_authenticated:
        with ctx().transaction() as db:
            end_session(db, current_user.token)
    logout_user()
    session.clear()
    return redirect(url_for("admin_auth.login"))


def _safe_next() -> str:
    """Where to go after logging in: a path inside /admin, or "" for the dashboard. Never
    another site, and nothing that could not go into a Location header as it is."""
    target = request.values.get("next", "")
    return target if ADMIN_PATH.fullmatch(target) else ""

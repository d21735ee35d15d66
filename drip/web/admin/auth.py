"""Logging in and out. One message for every failed login; how many may fail is
drip.web.admin.throttle's business, how long a session lasts drip.admin_sessions'."""

from __future__ import annotations

import re

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from werkzeug.wrappers import Response

from drip.admin_sessions import end_session, start_session
from drip.admins import authenticate
from drip.web.admin import check_csrf
from drip.web.admin.throttle import login_counters, remember_browser
from drip.web.admin.user import AdminUser
from drip.web.context import ctx

bp = Blueprint("admin_auth", __name__, url_prefix="/admin")
bp.before_request(check_csrf)
ADMIN_PATH = re.compile(r"/admin(?:[/?][!#-\[\]-~]*)?")
"""A path in the admin, with its query: printable ASCII only, no space, no quote and no
backslash (which browsers read as a slash)."""


@bp.get("/login")
def login() -> str:
    return render_template("admin/login.html", next=_safe_next())


@bp.post("/login")
def login_post() -> Response | tuple[str, int]:
    web = ctx()
    email, password = request.form.get("email", ""), request.form.get("password", "")
    with web.transaction() as db:
        counters = login_counters(db, email)
        counters.refuse_if_full()
        admin = authenticate(db, email, password, now=web.clock.now())
        user = None
        if admin is not None:
            user = AdminUser.of(admin, start_session(db, admin, now=web.wall_clock.now()))
    if user is None:
        counters.count_failure()
        flash("That email and password do not match an admin account.")
        return render_template("admin/login.html", next=_safe_next()), 401
    session.clear()
    session.permanent = True
    login_user(user)
    response = redirect(_safe_next() or url_for("admin_dashboard.index"))
    remember_browser(response, user.id)
    return response


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

"""The admin: every page needs a logged-in admin and every form a CSRF token.

Each admin blueprint is made by `protected()`, which refuses anonymous requests before
any view runs (a redirect to the login page, or 401 for JSON) and then checks the CSRF
token of every state-changing request. Views cannot forget either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
from urllib.parse import quote

from flask import Blueprint, Flask, current_app, jsonify, redirect, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from drip.web.admin.user import AdminUser, load_admin
from drip.web.extensions import csrf, login_manager


def protected(name: str, import_name: str, url_prefix: str) -> Blueprint:
    bp = Blueprint(name, import_name, url_prefix=url_prefix)

    @bp.before_request
    def require_admin() -> Response | tuple[Response, int] | None:
        if current_user.is_authenticated:
            return None
        if request.accept_mimetypes.best == "application/json" or request.is_json:
            return jsonify(error="log in first"), 401
        return redirect(url_for("admin_auth.login", next=requested_url()))

    bp.before_request(allow_large_body)
    bp.before_request(check_csrf)
    return bp


def requested_url() -> str:
    """This request's path and query, for the login to lead back to: a search, a filter
    or a diff is in the query."""
    query = request.query_string.decode("ascii", "replace")
    return quote(request.path) + (f"?{query}" if query else "")


View = TypeVar("View", bound=Callable[..., object])
MAX_BODY = "drip_max_body"


def large_body(limit: int) -> Callable[[View], View]:
    """Let a view take a request body of up to `limit` bytes, past the app's
    MAX_CONTENT_LENGTH (the lesson editor, whose lesson may be far larger than any
    other form)."""

    def allow(view: View) -> View:
        setattr(view, MAX_BODY, limit)
        return view

    return allow


def allow_large_body() -> None:
    """Raise this request's limit for a view marked by `large_body`: it runs before
    the CSRF check, the first to read the form, once the admin is known to be logged in."""
    limit = getattr(current_app.view_functions.get(request.endpoint or ""), MAX_BODY, None)
    if limit is not None:
        request.max_content_length = limit


def check_csrf() -> None:
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        csrf.protect()


def register(app: Flask) -> None:
    from drip.web.admin import auth, dashboard, lessons, outbox, signups, subscribers

    login_manager.init_app(app)
    login_manager.user_loader(load_admin)
    login_manager.login_view = "admin_auth.login"
    for module in (auth, dashboard, lessons, subscribers, outbox, signups):
        app.register_blueprint(module.bp)


__all__ = ["AdminUser", "large_body", "protected", "register"]

"""The admin: every page needs a logged-in admin and every form a CSRF token.

Each admin blueprint is made by `protected()`, which refuses anonymous requests before
any view runs (a redirect to the login page, or 401 for JSON) and then checks the CSRF
token of every state-changing request. Views cannot forget either.
"""

from __future__ import annotations

from flask import Blueprint, Flask, jsonify, redirect, request, url_for
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
        return redirect(url_for("admin_auth.login", next=request.path))

    bp.before_request(check_csrf)
    return bp


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


__all__ = ["AdminUser", "protected", "register"]

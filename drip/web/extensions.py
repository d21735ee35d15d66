"""Flask extensions created unbound (attached in create_app), shared by the blueprints."""

from __future__ import annotations

from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()
"""CSRF checks run where each blueprint says (WTF_CSRF_CHECK_DEFAULT is off): the admin
checks them after login, so an anonymous request is always sent to the login page."""

login_manager = LoginManager()

"""The Flask application factory: a list of steps, everything checked at start."""

from __future__ import annotations

from flask import Flask

from drip.clock import Clock
from drip.db import make_session_factory
from drip.scheduler import Enqueue
from drip.settings import Settings, load_settings
from drip.web import api, errors, public
from drip.web.context import WebContext


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    enqueue: Enqueue | None = None,
) -> Flask:
    """Build the web app. Tests pass a clock and an enqueue function; production reads DRIP_*."""
    from drip import wiring
    from drip.tasks import Enqueuer, create_broker
    from drip.tokens import Tokens

    settings = settings or load_settings()
    clock = clock or wiring.make_clock(settings)
    if enqueue is None:
        enqueue = Enqueuer(create_broker(wiring.make_redis(settings)))
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=64 * 1024,
        SESSION_COOKIE_SECURE=settings.base_url.startswith("https://"),
        SESSION_COOKIE_SAMESITE="Lax",
    )
    engine = wiring.make_engine(settings)
    app.extensions["drip"] = WebContext(
        settings=settings,
        clock=clock,
        engine=engine,
        sessions=make_session_factory(engine),
        tokens=Tokens(settings.secret_key, clock),
        enqueue=enqueue,
    )
    app.register_blueprint(public.bp)
    app.register_blueprint(api.bp)
    errors.register(app)
    return app

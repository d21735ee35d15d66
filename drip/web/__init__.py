"""The Flask application factory: a list of steps, everything checked at start."""

from __future__ import annotations

from flask import Flask
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

from drip.admin_sessions import IDLE_TIMEOUT
from drip.clock import Clock
from drip.db import make_session_factory
from drip.scheduler import Enqueue, Recount
from drip.settings import Settings, load_settings
from drip.sns import Fetch
from drip.web import (
    admin,
    api,
    errors,
    health,
    hooks,
    limits,
    manage,
    metrics,
    privacy,
    security,
    signup,
)
from drip.web.context import Proofs, WebContext
from drip.web.extensions import csrf


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    enqueue: Enqueue | None = None,
    signups: Enqueue | None = None,
    proofs: Proofs | None = None,
    recount: Recount | None = None,
    fetch: Fetch | None = None,
) -> Flask:
    """Build the web app. Tests pass a clock, the queueing functions (`enqueue` for
    deliveries, `signups` for signups received) and the fetch of SNS URLs; production
    reads DRIP_* and queues through the broker."""
    from drip import wiring
    from drip.logs import configure_logging
    from drip.tasks import Enqueuer, create_broker
    from drip.tokens import Tokens

    settings = settings or load_settings()
    configure_logging(settings)
    clock = clock or wiring.make_clock(settings)
    if enqueue is None:
        queue = Enqueuer(create_broker(wiring.make_redis(settings)))
        enqueue, signups, proofs, recount = queue, queue.signups, queue.proof, queue.recount
    elif signups is None:
        raise TypeError("create_app: whoever passes `enqueue` passes `signups` too")
    https = settings.base_url.startswith("https://")
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_keys[-1],
        SECRET_KEY_FALLBACKS=list(settings.secret_keys[:-1]),
        MAX_CONTENT_LENGTH=64 * 1024,
        SESSION_COOKIE_SECURE=https,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SECURE=https,
        REMEMBER_COOKIE_HTTPONLY=True,
        PERMANENT_SESSION_LIFETIME=IDLE_TIMEOUT,
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=None,  # tied to the login session; a long edit must still save
        TRUSTED_HOSTS=sorted(settings.trusted_hosts) if settings.production else None,
    )
    if settings.proxy_hops:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.proxy_hops, x_proto=settings.proxy_hops
        )
    engine = wiring.make_engine(settings)
    app.extensions["drip"] = WebContext(
        settings=settings,
        clock=clock,
        engine=engine,
        sessions=make_session_factory(engine),
        tokens=Tokens(settings.secret_keys, clock),
        enqueue=enqueue,
        signups=signups,
        proofs=proofs,
        recount=recount,
        renderer=wiring.make_renderer(settings),
    )
    limits.limiter.init_app(app, limits.storage_uri(settings), timeout=wiring.REDIS_TIMEOUT)
    csrf.init_app(app)
    CORS(app, resources={r"/api/*": api.cors_policy(settings)})
    for blueprint in (signup.bp, manage.bp, privacy.bp, api.bp, health.bp):
        app.register_blueprint(blueprint)  # signed tokens, origin checks and rate limits
    hooks.register(app, settings, fetch=fetch)  # verified per provider, not by CSRF
    admin.register(app)
    metrics.register(app)
    errors.register(app)
    security.register(app, https=https)
    return app

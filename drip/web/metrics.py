"""/metrics for Prometheus, behind a bearer token when DRIP_METRICS_TOKEN is set.

In production the endpoint exists only with a token: the counts describe the list, and
the web process is usually reachable from the internet. On a laptop it is open.
"""

from __future__ import annotations

import functools
import hmac

from flask import Blueprint, Flask, Response, abort, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from drip.metrics import DripCollector
from drip.web.context import ctx

bp = Blueprint("metrics", __name__)


def register(app: Flask) -> None:
    """One registry per app, reading through the app's sessions and Redis."""
    from drip.wiring import make_redis

    settings = app.extensions["drip"].settings
    registry = CollectorRegistry(auto_describe=False)
    # the embedded Redis starts a server when a client is made: wait for the first scrape
    lazy_redis = functools.cache(lambda: make_redis(settings))
    registry.register(DripCollector(app.extensions["drip"].sessions, lazy_redis))
    app.extensions["drip_metrics"] = registry
    app.register_blueprint(bp)


@bp.get("/metrics")
def metrics() -> Response:
    settings = ctx().settings
    token = settings.metrics_token
    if not token and settings.production:
        abort(404)
    if token and not _bearer_matches(token):
        return Response(
            "a bearer token is required\n",
            status=401,
            mimetype="text/plain",
            headers={"WWW-Authenticate": 'Bearer realm="drip metrics"'},
        )
    body = generate_latest(current_app.extensions["drip_metrics"])
    return Response(body, content_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})


def _bearer_matches(token: str) -> bool:
    scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(sent.strip().encode(), token.encode())

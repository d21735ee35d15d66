"""The JSON API: POST /api/v1/subscribers, the same signup as the form, and its OpenAPI
description. Cross-origin calls are allowed from DRIP_ALLOWED_ORIGINS only: CORS tells
browsers so, and a signup naming another site is refused with 403."""

from __future__ import annotations

import json
from pathlib import Path

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import Forbidden

from drip.errors import InvalidInput
from drip.settings import Settings
from drip.signup import SignupRequest
from drip.timing import known_zones
from drip.web.context import ctx, seen
from drip.web.limits import limiter

bp = Blueprint("api", __name__, url_prefix="/api/v1")
FIELDS = ("email", "first_name", "timezone", "sequence")
OPENAPI = Path(__file__).with_name("openapi.json")


def cors_policy(settings: Settings) -> dict[str, object]:
    """What browsers on the allowed sites may do here: POST a signup and GET the
    description (OPTIONS is the preflight itself), with the one header a JSON body
    needs. flask-cors would otherwise advertise PUT, PATCH, DELETE and any header."""
    return {
        "origins": sorted(settings.allowed_origins),
        "methods": ["GET", "OPTIONS", "POST"],
        "allow_headers": ["Content-Type"],
    }


@bp.post("/subscribers")
@limiter.limit(lambda: ctx().settings.signup_limit)
def create_subscriber() -> tuple[Response, int]:
    """A signup from a developer's code.

    A signup whose Origin is not in DRIP_ALLOWED_ORIGINS is refused with 403, where the
    form drops it in silence (standards SEC-14). The form's silence is a bot trap: it
    must not tell a bot which check it failed. The API's callers are developers, and a
    foreign Origin there is a site left out of the setting; a 202 that keeps nothing
    would leave them looking for lost signups. The answer depends on the Origin alone,
    never on the address, so it tells nothing about who is subscribed (SEC-12), and a bot
    learns nothing it can use: a call without Origin, as from curl or a server, is let
    through anyway."""
    web = ctx()
    if not web.origin_allowed():
        raise Forbidden(
            "This site may not call the API: add its origin to DRIP_ALLOWED_ORIGINS "
            "on the drip server."
        )
    try:
        data = request.get_json(silent=True)
    except RecursionError:
        data = None
    if not isinstance(data, dict):
        raise InvalidInput("expected a JSON object")
    values = {name: data.get(name, "") for name in FIELDS}
    if not all(isinstance(v, str) for v in values.values()):
        raise InvalidInput("every field must be a string")
    web.subscribe(
        SignupRequest(
            **values,
            ip=seen().ip,
            user_agent=seen().user_agent,
            page=request.referrer or "",
            embed_origin=request.headers.get("Origin", ""),
            form_id="api",
        )
    )
    return jsonify(status="accepted", message="Check your inbox to confirm."), 202


@bp.get("/openapi.json")
def openapi() -> Response:
    """The API's description, completed with this server's URL and the timezone names
    its tz database knows (they differ between installations); "" means the default."""
    spec = json.loads(OPENAPI.read_text())
    spec["servers"] = [{"url": ctx().settings.base_url}]
    timezone = spec["components"]["schemas"]["Signup"]["properties"]["timezone"]
    timezone["enum"] = ["", *sorted(known_zones())]
    return jsonify(spec)

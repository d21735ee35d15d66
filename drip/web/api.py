"""The JSON API: POST /api/v1/subscribers, the same signup as the form, and its OpenAPI
description. Cross-origin calls are allowed from DRIP_ALLOWED_ORIGINS only (CORS)."""

from __future__ import annotations

import json
from pathlib import Path

from flask import Blueprint, Response, jsonify, request

from drip.errors import InvalidInput
from drip.signup import SignupRequest
from drip.timing import known_zones
from drip.web.context import ctx, seen
from drip.web.limits import limiter

bp = Blueprint("api", __name__, url_prefix="/api/v1")
FIELDS = ("email", "first_name", "timezone", "sequence")
OPENAPI = Path(__file__).with_name("openapi.json")


@bp.post("/subscribers")
@limiter.limit(lambda: ctx().settings.signup_limit)
def create_subscriber() -> tuple[Response, int]:
    try:
        data = request.get_json(silent=True)
    except RecursionError:
        data = None
    if not isinstance(data, dict):
        raise InvalidInput("expected a JSON object")
    values = {name: data.get(name, "") for name in FIELDS}
    if not all(isinstance(v, str) for v in values.values()):
        raise InvalidInput("every field must be a string")
    web = ctx()
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

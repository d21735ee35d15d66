"""The JSON API: POST /api/v1/subscribers, the same signup as the form."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from drip.errors import InvalidInput
from drip.signup import SignupRequest, find_sequence, subscribe
from drip.web.context import ctx, seen

bp = Blueprint("api", __name__, url_prefix="/api/v1")
FIELDS = ("email", "first_name", "timezone", "sequence")


@bp.post("/subscribers")
def create_subscriber() -> tuple[Response, int]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise InvalidInput("expected a JSON object")
    values = {name: data.get(name) or "" for name in FIELDS}
    if not all(isinstance(v, str) for v in values.values()):
        raise InvalidInput("every field must be a string")
    context = seen()
    web = ctx()
    with web.transaction() as session:
        sequence = find_sequence(session, values["sequence"])
        delivery_id = subscribe(
            session,
            SignupRequest(
                **values,
                ip=context.ip,
                user_agent=context.user_agent,
                page=request.headers.get("Origin", "") or request.referrer or "",
            ),
            now=web.clock.now(),
            consent_text=web.consent_text(sequence.name),
        )
    web.enqueue([delivery_id] if delivery_id else [])
    return jsonify(status="accepted", message="Check your inbox to confirm."), 202

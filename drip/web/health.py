"""/healthz (the process answers) and /readyz (it can do its work) for load balancers.

Ready means: the database takes a write and is at the newest migration, and Redis (the
queue and the rate-limit counters) answers. The unsubscribe route needs only the
database, and must be able to write to it (standards UNS-09); a web process that cannot
queue a confirmation is not ready for signups either.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from drip import schema
from drip.web.context import ctx
from drip.web.limits import storage_answers

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    checks = {"database": _database(), "migrations": _migrations(), "redis": _redis()}
    ready = all(value == "ok" for value in checks.values())
    return jsonify(status="ready" if ready else "not ready", **checks), 200 if ready else 503


def _database() -> str:
    try:
        schema.probe_write(ctx().engine)
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "ok"


def _migrations() -> str:
    try:
        return "behind: run drip db upgrade" if schema.is_behind(ctx().engine) else "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}"


def _redis() -> str:
    try:
        return "ok" if storage_answers(current_app) else "error: no answer"
    except Exception as exc:
        return f"error: {type(exc).__name__}"

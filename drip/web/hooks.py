"""POST /hooks/<provider>: bounce and complaint webhooks from SES (SNS), Postmark, Mailgun.

A thin shell over drip.webhooks: look the provider up (unknown or not configured: 404),
read at most MAX_BODY bytes, let the provider's hook verify and read it (unverified: 403,
malformed: 400, nothing changed either way), then apply the reports in one transaction.
A provider calls as it learns of a bounce, so a report is dated by its request (what
ties one that names only an address to the email sent before it).
No CSRF check (the blueprint does not opt in): the providers prove themselves instead.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from flask import Blueprint, Flask, Response, abort, current_app, jsonify, request

from drip import sns
from drip.bounces import Tally, apply
from drip.errors import InvalidInput, Unverified
from drip.settings import Settings
from drip.sns import Fetch
from drip.web.context import ctx
from drip.webhooks import FirstUse, Hook, HookRequest, configured_hooks

bp = Blueprint("hooks", __name__)
MAX_BODY = 512 * 1024
"""An SES notification may be up to 256 KiB, and more once escaped into its SNS envelope;
the app's default limit is far smaller."""


def register(app: Flask, settings: Settings, *, fetch: Fetch | None = None) -> None:
    app.extensions["drip.hooks"] = configured_hooks(
        settings, fetch=fetch or sns.fetch, first_use=redis_first_use(settings)
    )
    app.register_blueprint(bp)


def redis_first_use(settings: Settings) -> FirstUse:
    """Remember used tokens in Redis, shared by every web process, until they are stale
    anyway; the client is made on first use, so only a configured Mailgun hook needs it."""
    clients = []

    def first_use(key: str, ttl: timedelta) -> bool:
        if not clients:
            from drip.wiring import make_redis

            clients.append(make_redis(settings))
        seconds = int(ttl.total_seconds())
        return bool(clients[0].set(f"drip:hooks:{key}", 1, nx=True, ex=seconds))

    return first_use


@bp.post("/hooks/<provider>")
def receive(provider: str) -> tuple[Response, int]:
    hooks: dict[str, Hook] = current_app.extensions["drip.hooks"]
    hook = hooks.get(provider)
    if hook is None:
        abort(404)
    request.max_content_length = MAX_BODY
    web = ctx()
    auth = request.authorization
    incoming = HookRequest(
        body=request.get_data(cache=False),
        now=web.clock.now(),
        password=auth.password if auth is not None and auth.type == "basic" else None,
    )
    try:
        reports = hook.reports(incoming)
    except Unverified as exc:
        return jsonify(error=str(exc)), 403
    except InvalidInput as exc:
        return jsonify(error=str(exc)), 400
    tally = Tally()
    with web.transaction() as session:
        apply(
            session,
            [replace(r, dated=r.dated or incoming.now) for r in reports],
            secret=web.settings.secret_key,
            tokens=web.tokens,
            now=incoming.now,
            tally=tally,
        )
    return jsonify(status="ok", hard=tally.hard, soft=tally.soft, complaints=tally.complaints), 200

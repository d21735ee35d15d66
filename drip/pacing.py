"""One sending rate (DRIP_SEND_RATE) shared by every worker thread on every machine.

The rate is a GCRA kept in Redis, as one Lua script: each message reserves the next free
slot, spaced 1/rate apart, and its thread sleeps until that slot. Reserving (rather than
asking "may I send now?" and retrying) gives a smooth rate with no polling: waiters are
queued in slot order, and their number is bounded by the worker threads, so a burst of
10,000 due lessons drains at exactly the rate. Dramatiq's own rate limiters were not
used: they count in fixed or sliding windows (bursts at window edges) and answer only
yes or no, which leaves each waiting thread to poll.

Time is Redis's own clock (TIME; Redis 5+ replicates a script's effects, so a script
may read it and then write), so machines whose clocks disagree still share one schedule;
tests inject a time source instead.

When the relay says "slow down", the spacing of every slot doubles (up to MAX_FACTOR)
and then relaxes back smoothly, halving every RECOVERY seconds without another such reply.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from drip.errors import NoSendingSlot, TransportError
from drip.transports import Ready, Transport, go

log = logging.getLogger(__name__)
KEY = "drip:send-rate"
RECOVERY = 60.0
"""Seconds over which a slow-down factor halves, once the relay stops complaining."""
QUIET = 10.0
"""Seconds after a back-off during which further "slow down" replies (the other threads'
messages already in flight) do not double it again."""
MAX_FACTOR = 64
UNREACHABLE_RETRY = 60.0
"""Seconds to postpone a delivery when Redis cannot be asked for a slot."""

MICROS = """
local function micros(arg)
  local now = tonumber(arg)
  if now then return now end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
"""
"""Lua: the time a script works with, in µs: the injected time when one is passed
(see `micros_arg`), else Redis's own clock."""

_FACTOR = (
    MICROS
    + """
local function factor_at(key, now, recovery)
  local slow = redis.call('HMGET', key, 'factor', 'at')
  if not slow[1] then return 1 end
  return math.max(1, tonumber(slow[1]) * 2 ^ (-(now - tonumber(slow[2])) / recovery))
end
"""
)

_RESERVE = (
    _FACTOR
    + """
-- KEYS: next free slot, slow-down; ARGV: now | "", spacing, max wait, recovery (all µs)
local now = micros(ARGV[1])
local spacing = tonumber(ARGV[2]) * factor_at(KEYS[2], now, tonumber(ARGV[4]))
local slot = math.max(tonumber(redis.call('GET', KEYS[1]) or 0), now)
local wait = slot - now
if wait > tonumber(ARGV[3]) then
  return {0, string.format('%.0f', wait)}
end
local following = slot + spacing
redis.call('SET', KEYS[1], string.format('%.0f', following),
           'PX', math.ceil((following - now) / 1000) + 1000)
return {1, string.format('%.0f', wait)}
"""
)

_SLOW_DOWN = (
    _FACTOR
    + """
-- KEYS: slow-down; ARGV: now | "", recovery, quiet (µs), max factor
local now = micros(ARGV[1])
local recovery = tonumber(ARGV[2])
local last = tonumber(redis.call('HGET', KEYS[1], 'at'))
if last and now - last < tonumber(ARGV[3]) then
  return 0
end
local factor = math.min(factor_at(KEYS[1], now, recovery) * 2, tonumber(ARGV[4]))
redis.call('HSET', KEYS[1], 'factor', string.format('%.6f', factor),
           'at', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(recovery * math.log(factor) / math.log(2) / 1000) + 1000)
return string.format('%.6f', factor)
"""
)


class SendRate:
    """The shared limiter: `acquire` waits for this message's slot, `slow_down` backs off.

    A wait longer than `max_wait` seconds is refused rather than reserved: the caller
    holds a delivery whose lease must outlast the wait and the SMTP transaction.
    """

    def __init__(
        self,
        client: redis.Redis,
        rate: float,
        *,
        max_wait: float,
        now: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        key: str = KEY,
    ) -> None:
        self.rate = rate
        self.max_wait = max_wait
        self._now = now
        self._sleep = sleep
        self._keys = [f"{key}:next", f"{key}:slow"]
        self._reserve = client.register_script(_RESERVE)
        self._slow_down = client.register_script(_SLOW_DOWN)

    def reserve(self) -> float:
        """Take the next slot; the seconds until it comes. NoSendingSlot if none is near."""
        try:
            granted, wait = self._reserve(
                keys=self._keys,
                args=[self._micros(), 1e6 / self.rate, self.max_wait * 1e6, RECOVERY * 1e6],
            )
        except redis.RedisError as exc:
            log.warning("the shared send rate cannot be checked (Redis: %s)", exc)
            raise NoSendingSlot(
                f"the shared send rate cannot be checked: {exc}", retry_after=UNREACHABLE_RETRY
            ) from None
        seconds = int(wait) / 1e6
        if not int(granted):
            raise NoSendingSlot(
                f"no sending slot within {self.max_wait:g} s (next in {seconds:.1f} s)",
                retry_after=seconds,
            )
        return seconds

    def acquire(self) -> None:
        """Wait for this message's slot."""
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)

    def slow_down(self) -> float | None:
        """Double the spacing for every worker; the new factor, or None when another thread
        already backed off for this burst of refusals (or Redis cannot be reached)."""
        try:
            factor = self._slow_down(
                keys=self._keys[1:],
                args=[self._micros(), RECOVERY * 1e6, QUIET * 1e6, MAX_FACTOR],
            )
        except redis.RedisError as exc:
            log.warning("cannot record the relay's slow-down in Redis: %s", exc)
            return None
        return float(factor) if factor != 0 else None

    def _micros(self) -> str:
        return micros_arg(self._now)


def micros_arg(now: Callable[[], float] | None) -> str:
    """The time argument of a script using MICROS: "" asks for Redis's clock."""
    return "" if now is None else f"{now() * 1e6:.0f}"


class PacedTransport:
    """A transport that sends each message in its slot of the shared rate, and slows
    every worker down when the relay says so (the delivery itself is retried later by
    the database, like any temporary failure)."""

    def __init__(self, inner: Transport, rate: SendRate) -> None:
        self.inner = inner
        self.rate = rate

    def send(self, raw: bytes, *, mail_from: str, rcpt_to: str, ready: Ready = go) -> None:
        self.rate.acquire()
        try:
            self.inner.send(raw, mail_from=mail_from, rcpt_to=rcpt_to, ready=ready)
        except TransportError as exc:
            if exc.throttled and (factor := self.rate.slow_down()) is not None:
                log.warning(
                    "the relay asked to slow down (%s); every worker now sends at %.3g/s "
                    "(DRIP_SEND_RATE / %g), recovering over the next minutes",
                    exc,
                    self.rate.rate / factor,
                    factor,
                )
            raise

    def idle(self) -> None:
        self.inner.idle()

    def close(self) -> None:
        self.inner.close()

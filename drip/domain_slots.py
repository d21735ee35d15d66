"""At most DRIP_DOMAIN_CONCURRENCY SMTP transactions in flight to one recipient domain,
across every worker thread on every machine (standards DEL-02).

The slots are work in flight, so they live in Redis, not the database: per domain, a
ZSET of holder tokens scored by when each holder's lease runs out. Taking a slot is one
Lua script (drop the expired holders, count, add), and so is giving it back, which the
transport does once a thread's run of messages to the domain is over, whatever became
of them; a worker killed in between holds its slot only until the lease runs out. A
domain with every slot taken refuses at once rather than queueing threads: the delivery
goes back to the database for a few seconds without using an attempt (drip.sending), as
when no slot of the shared rate is near (drip.pacing).

After Gmail's 4.7.28 ("do not send email for at least 10 minutes ... then send emails
from a single connection") the domain is paused in the database (drip.domain_pauses),
and here it is marked calm: while the mark lasts, its cap is 1. The mark is set when
the refusal's slot is given back, in the same script, so it costs nothing extra.

Time is Redis's own clock unless a time source is injected (tests), as in drip.pacing.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
from collections.abc import Callable
from datetime import timedelta

import redis

from drip.domain_pauses import PAUSE, domain_of
from drip.errors import NoSendingSlot, TransportError
from drip.pacing import MICROS, UNREACHABLE_RETRY, micros_arg
from drip.transports import Ready, Transport, go

log = logging.getLogger(__name__)
KEY = "drip:domain"
FULL_RETRY = 5.0
"""Seconds to postpone a delivery whose domain has every slot taken: an SMTP
transaction takes well under a second, so a slot is most likely free by the time the
sweeper brings the delivery back."""
CALM_RETRY = 600.0
"""Up to how many seconds to postpone a delivery turned away while its domain has one
slot after a pause, chosen at random from FULL_RETRY on. The domain's whole backlog is
turned away then, and would otherwise come back on every sweep, each one claimed and
built only to be turned away again; spread out, it comes back a few at a time."""
SINGLE_AFTER_PAUSE = timedelta(hours=1)
"""How long a domain gets one connection once its pause is over. Gmail says how long
to stop (10 minutes) but not how long to stay on one connection: an hour lets the
domain see a calm sender for a good while, without slowing a domain that asked once
for the rest of the day. Counted from the refusal as PAUSE plus this, since the
domain's pause is always PAUSE (drip.sending)."""

_ACQUIRE = (
    MICROS
    + """
-- KEYS: holders, calm-until; ARGV: now | "", token, lease (µs), cap
-- Returns {granted, the cap that applied}.
local now = micros(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local cap = tonumber(ARGV[4])
if tonumber(redis.call('GET', KEYS[2]) or 0) > now then
  cap = 1
end
if redis.call('ZCARD', KEYS[1]) >= cap then
  return {0, cap}
end
local lease = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], string.format('%.0f', now + lease), ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.ceil(lease / 1000) + 1000)
return {1, cap}
"""
)

_RELEASE = (
    MICROS
    + """
-- KEYS: holders, calm-until; ARGV: now | "", token, calm for (µs) | ""
redis.call('ZREM', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then
  local calm = tonumber(ARGV[3])
  redis.call('SET', KEYS[2], string.format('%.0f', micros(ARGV[1]) + calm),
             'PX', math.ceil(calm / 1000) + 1000)
end
return 1
"""
)


class DomainSlots:
    """The shared per-domain cap: `acquire` takes a slot or refuses, `release` gives it
    back (and marks the domain calm after it asked for a pause).

    `lease` is how long a slot outlives a holder that never gives it back: as long as
    DRIP_SEND_LEASE, after which the delivery itself is taken for lost.
    """

    def __init__(
        self,
        client: redis.Redis,
        cap: int,
        *,
        lease: float,
        now: Callable[[], float] | None = None,
        key: str = KEY,
    ) -> None:
        self.cap = cap
        self.lease = lease
        self._now = now
        self._key = key
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)

    def acquire(self, domain: str) -> str:
        """Take a slot for `domain`; the token to release it with. NoSendingSlot if none
        is free or Redis cannot be asked."""
        token = secrets.token_hex(8)
        try:
            granted, cap = self._acquire(
                keys=self._keys(domain),
                args=[micros_arg(self._now), token, self.lease * 1e6, self.cap],
            )
        except redis.RedisError as exc:
            log.warning("the cap of %s cannot be checked (Redis: %s)", domain, exc)
            raise NoSendingSlot(
                f"the cap of {domain} cannot be checked: {exc}", retry_after=UNREACHABLE_RETRY
            ) from None
        if not int(granted):
            calm = int(cap) < self.cap
            why = "resuming after a pause" if calm else "DRIP_DOMAIN_CONCURRENCY"
            raise NoSendingSlot(
                f"{int(cap)} transaction(s) to {domain} already in flight ({why})",
                retry_after=random.uniform(FULL_RETRY, CALM_RETRY) if calm else FULL_RETRY,
            )
        return token

    def release(self, domain: str, token: str, *, calm: bool = False) -> None:
        """Give the slot back; with `calm`, give `domain` one connection for a while.
        Never raises: the send's outcome matters more, and the lease frees the slot."""
        calm_for = f"{(PAUSE + SINGLE_AFTER_PAUSE).total_seconds() * 1e6:.0f}" if calm else ""
        try:
            self._release(keys=self._keys(domain), args=[micros_arg(self._now), token, calm_for])
        except redis.RedisError as exc:
            log.warning("cannot give back a slot of %s (Redis: %s); its lease will", domain, exc)

    def _keys(self, domain: str) -> list[str]:
        return [f"{self._key}:{domain}:held", f"{self._key}:{domain}:calm"]


class CappedTransport:
    """A transport that holds a slot of the recipient's domain for each transaction.

    A thread keeps its slot after a message that went, for the next message of its
    batch to the same domain (drip.sending sends a batch domain by domain), and gives
    it back at the batch's end (`idle`), before a message to another domain, or when a
    message fails. The cap still bounds the transactions in flight to the domain: a
    thread sends one at a time. Taking and giving back a slot for every message was a
    tenth of a worker's CPU (docs/performance.md, run 14)."""

    def __init__(self, inner: Transport, slots: DomainSlots) -> None:
        self.inner = inner
        self.slots = slots
        self._local = threading.local()

    def send(self, raw: bytes, *, mail_from: str, rcpt_to: str, ready: Ready = go) -> None:
        domain = domain_of(rcpt_to)
        kept: tuple[str, str] | None = getattr(self._local, "kept", None)
        self._local.kept = None
        if kept is not None and kept[0] != domain:
            self.slots.release(*kept)
            kept = None
        token = kept[1] if kept is not None else self.slots.acquire(domain)
        try:
            self.inner.send(raw, mail_from=mail_from, rcpt_to=rcpt_to, ready=ready)
        except TransportError as exc:
            self.slots.release(domain, token, calm=exc.domain_throttled)
            raise
        except BaseException:
            self.slots.release(domain, token)
            raise
        self._local.kept = (domain, token)

    def idle(self) -> None:
        kept: tuple[str, str] | None = getattr(self._local, "kept", None)
        self._local.kept = None
        if kept is not None:
            self.slots.release(*kept)
        self.inner.idle()

    def close(self) -> None:
        self.inner.close()

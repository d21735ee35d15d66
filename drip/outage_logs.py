"""A worker's lines about a Redis outage: the first at once, then one a minute.

While Redis is unreachable, each of Dramatiq's consumer threads logs "Consumer
encountered a connection error" at CRITICAL and "Restarting consumer in 3.00 seconds."
every 3 seconds (dramatiq.worker, CONSUMER_RESTART_DELAY): a 15-second outage wrote
about 40 CRITICAL lines, which bury everything else and page whoever alerts on
CRITICAL. The worker recovers by itself when Redis is back, and nothing is lost (every
delivery and signup waits in the database), so the line is an ERROR: mail stops while
it lasts, but no one has to restart anything.
"""

from __future__ import annotations

import logging
import threading

CONSUMER = "dramatiq.worker.ConsumerThread"
"""Dramatiq names each consumer's logger after it, e.g. ConsumerThread(drip.DQ)."""
REPEATED = ("Consumer encountered a connection error", "Restarting consumer in")
EVERY = 60.0


class OutageThrottle(logging.Filter):
    """Lets a consumer's connection-error or restart line through, then holds back the
    same kind of line for `every` seconds (timed by the records, so a test needs no
    outage and no waiting); the next one let through counts those held back."""

    def __init__(self, every: float = EVERY) -> None:
        super().__init__()
        self.every = every
        self._lock = threading.Lock()
        self._passed: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(CONSUMER):
            return True
        message = record.getMessage()
        kind = next((start for start in REPEATED if message.startswith(start)), None)
        if kind is None:
            return True
        with self._lock:
            passed = self._passed.get(kind)
            if passed is not None and record.created - passed < self.every:
                self._held[kind] = self._held.get(kind, 0) + 1
                return False
            self._passed[kind] = record.created
            held = self._held.pop(kind, 0)
        if held:
            record.msg, record.args = f"{message} ({held} more like it held back)", None
        if record.levelno > logging.ERROR:
            record.levelno, record.levelname = logging.ERROR, logging.getLevelName(logging.ERROR)
        return True


def throttle_outage_lines(logger: logging.Logger) -> None:
    """Add one throttle to every handler of `logger` (the root, once drip's logging is
    set up): Dramatiq's loggers send their records up to it, and a filter on a logger
    would see only records logged on that logger itself."""
    throttle = OutageThrottle()
    for handler in logger.handlers:
        handler.addFilter(throttle)

"""The only place drip asks what time it is.

Everything that compares or stores times takes a Clock, so a test can run a whole
10-day series in seconds, and an operator can replay a pass "as if at" an instant.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from drip.errors import ConfigError


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that moves only when told to; shared safely between threads."""

    def __init__(self, start: datetime) -> None:
        self._lock = threading.Lock()
        self._now = as_utc(start)

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, instant: datetime) -> None:
        with self._lock:
            self._now = as_utc(instant)

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now


class FileClock:
    """A clock read from a file holding an ISO-8601 instant.

    Separate processes (a worker, a scheduler) cannot share a FixedClock object, but
    they can share a file: this is how a multi-process test or a demo moves every
    process through the days together. Select it with DRIP_CLOCK=file:PATH.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def now(self) -> datetime:
        """ConfigError naming DRIP_CLOCK when the file cannot be read or holds no instant:
        settings check it at start, and a file that goes bad later stops a command with
        the same message. set() replaces the file whole, so a reader never sees it half
        written."""
        try:
            text = self.path.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"DRIP_CLOCK=file:{self.path}: cannot read the file ({exc.strerror})"
            ) from None
        try:
            return parse_instant(text)
        except ValueError:
            raise ConfigError(
                f"DRIP_CLOCK=file:{self.path}: the file holds {text[:40]!r}, not an ISO-8601 "
                "instant such as 2026-03-01T08:00:00+00:00"
            ) from None

    def set(self, instant: datetime) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(as_utc(instant).isoformat())
        tmp.replace(self.path)

    def advance(self, delta: timedelta) -> datetime:
        instant = self.now() + delta
        self.set(instant)
        return instant


def as_utc(instant: datetime) -> datetime:
    if instant.tzinfo is None:
        raise ValueError("naive datetime: drip only handles timezone-aware instants")
    return instant.astimezone(UTC)


def parse_instant(text: str) -> datetime:
    """Parse ISO-8601; an instant without an offset is taken as UTC."""
    instant = datetime.fromisoformat(text)
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC)

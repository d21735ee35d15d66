"""Where one worker's time goes: timers around each part of the send path.

Runs the real actor in this process with one Dramatiq worker thread on the embedded
Redis, and times, per lesson: rendering (Jinja + CSS inlining), building the message
(MIME + bytes, DKIM if set), the SMTP hand-over, and everything else inside
send_batch (the database: claim, compose's reads, last look, record). What is left
of the wall time is the queue (Redis fetch, ack, Dramatiq's dispatch). The timers are
attached here only; the product code carries none.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dramatiq

import drip.composing
import drip.sending
from bench import loader
from bench.support import drip_instance
from drip.clock import SystemClock
from drip.db import make_session_factory
from drip.scheduler import run_pass
from drip.settings import load_settings
from drip.tasks import QUEUE, Enqueuer, create_broker, declare_actors
from drip.wiring import make_mailer

PARTS = ("render", "build", "smtp", "send_batch")


class Stopwatch:
    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.last_raw = b""

    def timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.total[name] += time.perf_counter() - started

        return wrapper


class _Timed:
    """A stand-in for one of the Mailer's parts whose `method` is timed."""

    def __init__(self, inner: Any, method: str, watch: Stopwatch, name: str) -> None:
        self._inner = inner
        setattr(self, method, watch.timed(name, getattr(inner, method)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@contextmanager
def _patched(watch: Stopwatch) -> Iterator[None]:
    """Time the module-level functions the send path calls by name."""
    saved = [
        (drip.composing, "build_message"),
        (drip.sending, "signed"),
        (drip.sending, "send_batch"),
    ]
    originals = [getattr(module, name) for module, name in saved]
    names = ("build", "build", "send_batch")
    for (module, attr), original, name in zip(saved, originals, names, strict=True):
        setattr(module, attr, watch.timed(name, original))
    try:
        yield
    finally:
        for (module, attr), original in zip(saved, originals, strict=True):
            setattr(module, attr, original)


def profile_send_path(
    database_url: str, folder: Path, port: int, *, n: int
) -> tuple[list[tuple[str, float, str]], bytes]:
    """Send n lessons with one worker thread; returns the table rows and one sent message."""
    now = datetime.now(UTC)
    watch = Stopwatch()
    with drip_instance(database_url, folder, now=now, smtp_port=port) as drip:
        settings = load_settings(drip.env)
        loader.load_subscribers(
            drip.engine, drip.sequence_id, start=1, count=n, due_every=1, now=now
        )
        sessions = make_session_factory(drip.engine)
        mailer = make_mailer(settings, SystemClock(), sessions, redis_client=drip.redis)
        transport = mailer.transport

        def keep(raw: bytes, **kwargs: str) -> None:
            watch.last_raw = raw
            transport.send(raw, **kwargs)

        mailer = dataclasses.replace(
            mailer,
            renderer=_Timed(mailer.renderer, "render", watch, "render"),
            transport=_Timed(_Keep(keep, transport.idle), "send", watch, "smtp"),
        )
        broker = create_broker(drip.redis)
        enqueue = Enqueuer(broker)
        started = time.perf_counter()
        run_pass(
            sessions,
            SystemClock(),
            watch.timed("enqueue", enqueue),
            signups=enqueue.signups,
            batch_size=settings.batch_size,
            requeue_after=settings.requeue_after,
            pending_ttl=settings.pending_ttl,
            retention=settings.retention,
            secret=settings.secret_key,
            default_timezone=settings.default_timezone,
        )
        scheduled = time.perf_counter()
        with _patched(watch):
            declare_actors(broker, mailer)  # imports send_batch now: the timed one
            worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
            worker.start()
            try:
                broker.join(QUEUE, timeout=600_000)
                worker.join()
            finally:
                worker.stop()
        wall = time.perf_counter() - scheduled
        broker.close()
        transport.close()  # type: ignore[attr-defined]
    t = watch.total
    rows = {
        "render (Jinja + CSS inline)": t["render"],
        "build (MIME + bytes)": t["build"],
        "SMTP hand-over": t["smtp"],
        "database and the rest of send_batch": t["send_batch"]
        - t["render"]
        - t["build"]
        - t["smtp"],
        "queue (Redis fetch/ack, dispatch)": wall - t["send_batch"],
    }
    table = [(name, seconds / n * 1000, f"{seconds / wall:.0%}") for name, seconds in rows.items()]
    table.append(("total per lesson, one thread", wall / n * 1000, "100%"))
    table.append(
        ("scheduler pass incl. enqueue (not in total)", (scheduled - started) / n * 1000, "")
    )
    return table, watch.last_raw


@dataclasses.dataclass
class _Keep:
    send: Callable[..., None]
    idle: Callable[[], None]

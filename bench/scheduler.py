"""Benchmark 2: what one scheduler pass costs, as the list grows and the work due does not.

10,000 subscribers due among 10,000, then 100,000, then 1,000,000 (bulk-loaded, then
ANALYZE as autovacuum would). Each pass is the real `run_pass`: purge, claim due in
batches (on PostgreSQL in DRIP_SCHEDULER_CLAIMERS transactions at once, 2 unless set),
create the delivery rows, queue them in the embedded Redis, sweep. Between passes the
due subscribers are put back as they were. Baseline (same run): the pass over the
smallest list; the ratio says whether cost follows what is due (about 1) or the size
of the list.

    python -m bench.scheduler --sizes 10000,100000 --databases sqlite
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bench import loader
from bench.support import (
    arguments,
    databases,
    drip_instance,
    machine,
    print_table,
    summary,
    verdict,
)
from drip.clock import FixedClock
from drip.db import make_session_factory
from drip.models import Delivery, Subscriber, SubscriberStatus
from drip.scheduler import run_pass
from drip.settings import load_settings
from drip.tasks import Enqueuer, create_broker

NOT_DUE = 10**12
"""A `due_every` no subscriber number reaches: the extra rows are never due."""
RATIO_TARGET = 1.5
PG_SECONDS_TARGET = 2.0


def measure(
    engine: Engine, env: dict[str, str], redis: object, *, due: int, now: datetime, repeat: int
) -> tuple[float, float]:
    """Best of `repeat` passes: (pass seconds, seconds spent queueing in Redis, summed over
    the pass's claimers, which queue while another claims)."""
    settings = load_settings(env)
    sessions = make_session_factory(engine)
    enqueue = Enqueuer(create_broker(redis))  # type: ignore[arg-type]
    best = (float("inf"), 0.0)
    queued: list[float] = []

    def timed_enqueue(ids: object) -> None:
        started = time.perf_counter()
        enqueue(ids)  # type: ignore[arg-type]
        queued.append(time.perf_counter() - started)

    for _ in range(repeat):
        _reset(engine, due, now)
        redis.flushall()  # type: ignore[attr-defined]
        queued.clear()
        started = time.perf_counter()
        result = run_pass(
            sessions,
            FixedClock(now),
            timed_enqueue,
            signups=enqueue.signups,
            batch_size=settings.batch_size,
            requeue_after=settings.requeue_after,
            pending_ttl=settings.pending_ttl,
            retention=settings.retention,
            secret=settings.secret_key,
            default_timezone=settings.default_timezone,
            claimers=settings.scheduler_claimers,
        )
        seconds = time.perf_counter() - started
        if len(result.issued) != due:
            raise RuntimeError(f"the pass issued {len(result.issued)}, expected {due}")
        best = min(best, (seconds, sum(queued)))
    return best


def _reset(engine: Engine, due: int, now: datetime) -> None:
    """Put the first `due` subscribers back to lesson 1 due, and forget every delivery."""
    with engine.begin() as conn:
        conn.execute(sa.delete(Delivery))
        conn.execute(
            sa.update(Subscriber)
            .where(Subscriber.id <= due)
            .values(
                status=SubscriberStatus.ACTIVE,
                next_step=1,
                next_send_at=now - timedelta(minutes=1),
                last_sent_at=None,
            )
        )
    loader.analyse(engine)


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    kinds = args.databases.split(",")
    print(f"# Benchmark 2: scheduler pass, {args.due:,} due, {machine()}")
    rows = []
    ratios = {}
    with tempfile.TemporaryDirectory(prefix="drip-bench-") as tmp, databases(kinds) as database:
        for kind in kinds:
            folder = Path(tmp) / kind
            now = datetime.now(UTC)
            with database(kind, folder) as url, drip_instance(url, folder, now=now) as drip:
                engine, sequence_id = drip.engine, drip.sequence_id
                loaded = 0
                times = {}
                for size in sizes:
                    started = time.perf_counter()
                    loader.load_subscribers(
                        engine,
                        sequence_id,
                        start=loaded + 1,
                        count=size - loaded,
                        due_every=1 if loaded == 0 else NOT_DUE,
                        now=now,
                    )
                    load_seconds = time.perf_counter() - started
                    loaded = size
                    seconds, queued = measure(
                        engine,
                        drip.env,
                        drip.redis,
                        due=min(args.due, sizes[0]),
                        now=now,
                        repeat=args.repeat,
                    )
                    times[size] = seconds
                    rows.append(
                        (
                            kind,
                            size,
                            seconds,
                            queued,
                            seconds / times[sizes[0]],
                            load_seconds,
                        )
                    )
                    print(
                        f"  {kind} {size:,}: pass {seconds:.2f} s (loaded in {load_seconds:.1f} s)",
                        flush=True,
                    )
                ratios[kind] = times[sizes[-1]] / times[sizes[0]]
    print()
    print_table(
        [
            "database",
            "subscribers",
            "pass s",
            "Redis enqueue s, summed over claimers",
            f"x {sizes[0]:,} pass",
            "bulk load s",
        ],
        rows,
    )
    pg_pass = [r[2] for r in rows if r[0] == "postgresql" and r[1] == sizes[-1]]
    parts = [
        f"{kind} ratio {ratio:.2f} ({verdict(ratio <= RATIO_TARGET)})"
        for kind, ratio in ratios.items()
    ]
    if pg_pass:
        parts.append(
            f"postgresql {args.due:,}-due pass among {sizes[-1]:,}: {pg_pass[0]:.2f} s "
            f"({verdict(pg_pass[0] < PG_SECONDS_TARGET)} < {PG_SECONDS_TARGET:.0f} s)"
        )
    summary("scheduler", f"{args.due:,} due, {sizes[-1]:,}/{sizes[0]:,}: " + "; ".join(parts))


def _parser() -> argparse.ArgumentParser:
    parser = arguments("bench.scheduler", __doc__)
    parser.add_argument("--due", type=int, default=int(os.environ.get("BENCH_DUE", 10_000)))
    parser.add_argument("--sizes", default=os.environ.get("BENCH_SIZES", "10000,100000,1000000"))
    parser.add_argument("--repeat", type=int, default=2)
    return parser


if __name__ == "__main__":
    main()

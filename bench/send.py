"""Benchmark 1: lessons per second, end to end, against the machine's SMTP ceiling.

N subscribers are bulk-loaded with lesson 1 due at once. A real `drip scheduler` process
claims them and queues the deliveries in the embedded Redis; real `drip worker`
processes render, build and send them to an SMTP sink in a process of its own. The
clock runs from starting the scheduler until the database shows all N sent.

Baseline (same run): one Python loop sending N pre-built messages of the same size over
one persistent SMTP connection to the same sink: the ceiling for one Python process.
Before that, one worker thread in this process sends a few hundred lessons with timers
around each part of the send path, to show where the time goes.

    python -m bench.send --n 2000 --processes 1,2 --databases sqlite
"""

from __future__ import annotations

import argparse
import os
import smtplib
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from bench import loader
from bench.profiler import profile_send_path
from bench.support import (
    ROOT,
    arguments,
    databases,
    drip_instance,
    machine,
    peak_rss_mb,
    print_table,
    process_tree,
    smtp_sink,
    stop,
    summary,
    verdict,
    wait_until,
)
from drip.models import Delivery, DeliveryStatus

TARGET = {1: 0.35, 2: 0.6}
"""The share of the ceiling each worker-process count should reach (issue 5)."""


@dataclass(frozen=True)
class SendRun:
    database: str
    processes: int
    threads: int
    seconds: float
    rate: float
    worker_rss_mb: float


def ceiling(port: int, raw: bytes, n: int) -> float:
    """Pre-built messages per second over one persistent connection."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo()
        for _ in range(min(n, 100)):
            smtp.sendmail("hello@drip.example.com", ["reader@example.com"], raw)
        started = time.perf_counter()
        for _ in range(n):
            smtp.sendmail("hello@drip.example.com", ["reader@example.com"], raw)
        return n / (time.perf_counter() - started)


def run_setup(
    kind: str, database_url: str, folder: Path, port: int, *, n: int, processes: int, threads: int
) -> SendRun:
    """Load N due subscribers, then time real scheduler and worker processes sending them."""
    now = datetime.now(UTC)
    with drip_instance(
        database_url, folder, now=now, smtp_port=port, DRIP_SCHEDULER_INTERVAL="3600"
    ) as drip:
        env, engine = drip.env, drip.engine
        loader.load_subscribers(engine, drip.sequence_id, start=1, count=n, due_every=1, now=now)
        loader.analyse(engine)
        log = folder / f"worker-{kind}-{processes}.log"
        with log.open("w") as err:
            worker = _drip(
                env, err, "worker", "--processes", str(processes), "--threads", str(threads)
            )
            try:
                wait_until(
                    lambda: log.read_text().count("ready for action") >= processes,
                    timeout=60,
                    what="the worker processes",
                )
                started = time.perf_counter()
                scheduler = _drip(env, err, "scheduler")
                try:
                    wait_until(
                        lambda: _sent(engine) >= n or worker.poll() is not None,
                        timeout=max(120, n / 20),
                        what=f"{n} lessons sent",
                        every=0.05,
                    )
                    seconds = time.perf_counter() - started
                finally:
                    stop(scheduler)
                rss = max(peak_rss_mb(pid) for pid in process_tree(worker.pid)[1:] or [worker.pid])
            finally:
                stop(worker)
        failed = _count(engine, DeliveryStatus.FAILED)
    if worker.returncode not in (None, 0, -15) or failed:
        raise RuntimeError(f"worker exited {worker.returncode}, {failed} failed; see {log}")
    return SendRun(kind, processes, threads, seconds, n / seconds, rss)


def _drip(env: dict[str, str], err: object, *args: str) -> subprocess.Popen[str]:
    drip = str(Path(sys.executable).with_name("drip"))
    return subprocess.Popen(
        [drip, *args], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, text=True
    )


def _sent(engine: sa.Engine) -> int:
    return _count(engine, DeliveryStatus.SENT)


def _count(engine: sa.Engine, status: DeliveryStatus) -> int:
    with engine.connect() as conn:
        return int(
            conn.scalar(
                sa.select(sa.func.count()).select_from(Delivery).where(Delivery.status == status)
            )
            or 0
        )


def main(argv: list[str] | None = None) -> list[SendRun]:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.profile_n < 1:
        parser.error("--profile-n must be at least 1: the ceiling sends the profiled message")
    print(f"# Benchmark 1: send throughput, N={args.n:,}, {machine()}")
    kinds = args.databases.split(",")
    counts = [int(p) for p in args.processes.split(",")]
    runs: list[SendRun] = []
    with (
        tempfile.TemporaryDirectory(prefix="drip-bench-") as tmp,
        smtp_sink() as port,
        databases(kinds) as database,
    ):
        folder = Path(tmp)
        for kind in kinds:
            profile_folder = folder / f"profile-{kind}"
            with database(kind, folder) as url:
                parts, raw = profile_send_path(url, profile_folder, port, n=args.profile_n)
            print(
                f"\nWhere the time goes: one worker thread in-process, {kind}, "
                f"{args.profile_n} lessons of {len(raw):,} bytes"
            )
            print_table(["part", "ms per lesson", "share"], parts)
        rate = ceiling(port, raw, args.n)
        print(
            f"\nCeiling: {args.n:,} pre-built messages of {len(raw):,} bytes over one "
            f"persistent connection: {rate:,.0f}/s"
        )
        for kind in kinds:
            for processes in counts:
                with database(kind, folder) as url:
                    run_folder = folder / f"{kind}-{processes}"
                    runs.append(
                        run_setup(
                            kind,
                            url,
                            run_folder,
                            port,
                            n=args.n,
                            processes=processes,
                            threads=args.threads,
                        )
                    )
    print()
    print_table(
        [
            "database",
            "processes",
            "threads",
            "seconds",
            "lessons/s",
            "x ceiling",
            "target",
            "worker peak RSS MB",
        ],
        [
            (
                r.database,
                r.processes,
                r.threads,
                r.seconds,
                r.rate,
                r.rate / rate,
                f">= {TARGET.get(r.processes, 0)}",
                r.worker_rss_mb,
            )
            for r in runs
        ],
    )
    results = []
    for r in runs:
        goal = TARGET.get(r.processes)
        mark = f" ({verdict(r.rate / rate >= goal)})" if goal else ""
        results.append(f"{r.database} {r.processes}p {r.rate / rate:.2f}x{mark}")
    summary("send", f"ceiling {rate:,.0f}/s; " + "; ".join(results))
    return runs


def _parser() -> argparse.ArgumentParser:
    parser = arguments("bench.send", __doc__)
    parser.add_argument("--n", type=int, default=int(os.environ.get("BENCH_N", 20_000)))
    parser.add_argument("--processes", default=os.environ.get("BENCH_PROCESSES", "1,2"))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", 8)))
    parser.add_argument("--profile-n", type=int, default=500, help="lessons in the timed profile")
    return parser


if __name__ == "__main__":
    main()

"""Benchmark 4: peak resident memory of a worker process and of a web process under load.

The worker figure is the largest high-water mark (VmHWM) among the `drip worker`
processes while they send the benchmark-1 load; the web figure is the largest among
the gunicorn processes while they take the benchmark-3 signup load. Baseline (same run):
a bare Python process that imports drip's worker side (what every process pays before
doing any work).

    python -m bench.memory --n 2000 --databases sqlite
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import send, signup
from bench.support import (
    arguments,
    databases,
    machine,
    print_table,
    smtp_sink,
    summary,
    verdict,
)

TARGET_MB = 120


def baseline_mb() -> float:
    """Peak RSS of a Python process that has imported the worker's modules and nothing else."""
    code = (
        "import drip.tasks, drip.wiring, pathlib, os;"
        "print(next(l for l in pathlib.Path('/proc/self/status').read_text().splitlines()"
        " if l.startswith('VmHWM')).split()[1])"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return int(out.stdout) / 1024


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    kinds = args.databases.split(",")
    print(f"# Benchmark 4: memory, N={args.n:,}, {machine()}")
    base = baseline_mb()
    rows: list[tuple[object, ...]] = [("-", "python + drip imported (baseline)", base, 1.0)]
    peaks = {}
    with (
        tempfile.TemporaryDirectory(prefix="drip-bench-") as tmp,
        smtp_sink() as port,
        databases(kinds) as database,
    ):
        for kind in kinds:
            folder = Path(tmp) / kind
            with database(kind, folder) as url:
                run = send.run_setup(
                    kind, url, folder / "send", port, n=args.n, processes=2, threads=args.threads
                )
            web_folder = folder / "web"
            with database(kind, web_folder) as url:
                *_, web_rss = signup.run(
                    kind, url, web_folder, seconds=args.seconds, connections=16
                )
            peaks[kind] = (run.worker_rss_mb, web_rss)
            rows.append(
                (
                    kind,
                    f"worker process, {args.n:,} lessons",
                    run.worker_rss_mb,
                    run.worker_rss_mb / base,
                )
            )
            rows.append(
                (kind, f"web process, {args.seconds} s of signups", web_rss, web_rss / base)
            )
    print()
    print_table(["database", "process", "peak RSS MB", "x baseline"], rows)
    worst = max(max(pair) for pair in peaks.values())
    summary(
        "memory",
        "; ".join(f"{k} worker {w:.0f} MB, web {s:.0f} MB" for k, (w, s) in peaks.items())
        + f" ({verdict(worst < TARGET_MB)} < {TARGET_MB} MB each); baseline {base:.0f} MB",
    )


def _parser() -> argparse.ArgumentParser:
    parser = arguments("bench.memory", __doc__)
    parser.add_argument("--n", type=int, default=int(os.environ.get("BENCH_N", 20_000)))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", 8)))
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", 20)))
    return parser


if __name__ == "__main__":
    main()

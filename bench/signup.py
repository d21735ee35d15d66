"""Benchmark 3: signups per second through the JSON API, against /healthz.

gunicorn serves the app as the Procfile's `web` line says; wrk (a load generator in its
own process) posts a distinct address to /api/v1/subscribers on every request for
`--seconds`. The signup rate limit per IP is raised for the run by configuration
(DRIP_SIGNUP_LIMIT). Baseline (same run, same server, same load):
GET /healthz, which does no database or Redis work. No worker runs: what is measured is
the request, which stores each signup as received (drip.intake) and queues it.

    python -m bench.signup --seconds 10 --databases sqlite
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from bench.support import (
    ROOT,
    arguments,
    databases,
    drip_instance,
    free_port,
    machine,
    peak_rss_mb,
    print_table,
    process_tree,
    stop,
    summary,
    verdict,
    wait_until,
)
from drip.models import ReceivedSignup

RATIO_TARGET = 0.4
P99_TARGET_MS = 100
NO_LIMIT = "1000000 per minute"
SCRIPT = """
local counter = 0
local threads = {}
function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end
request = function()
  counter = counter + 1
  local body = string.format(
    '{"email": "r%d-%d@example.com", "first_name": "Reader"}', id, counter)
  return wrk.format("POST", "/api/v1/subscribers", {["Content-Type"] = "application/json"}, body)
end
"""


@dataclass(frozen=True)
class Load:
    what: str
    requests: int
    rate: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


def procfile_web(port: int) -> list[str]:
    """The Procfile's web command, with this run's port and the venv's gunicorn."""
    line = next(
        line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:")
    )
    argv = [part.strip("'") for part in line.removeprefix("web:").split()]
    argv[0] = str(Path(sys.executable).with_name(argv[0]))
    return [re.sub(r"\$\{PORT:-\d+\}", str(port), part) for part in argv]


def wrk(url: str, *, seconds: int, connections: int, threads: int, script: Path | None) -> Load:
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    argv += ["-s", str(script)] if script else []
    out = subprocess.run([*argv, url], check=True, capture_output=True, text=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    return Load(
        url.rsplit("/", 1)[1] if "healthz" in url else "POST /api/v1/subscribers",
        requests,
        float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        _latency(out, "50"),
        _latency(out, "99"),
        int(non_2xx.group(1)) if non_2xx else 0,
        sum(int(n) for n in sockets.groups()) if sockets else 0,
    )


def _latency(out: str, percentile: str) -> float:
    value, unit = re.search(rf"\s{percentile}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run(
    kind: str, database_url: str, folder: Path, *, seconds: int, connections: int
) -> tuple[Load, Load, int, float]:
    """(healthz, signup, rows created, peak RSS of the biggest web process in MB)."""
    with drip_instance(
        database_url,
        folder,
        now=datetime.now(UTC),
        DRIP_SIGNUP_LIMIT=NO_LIMIT,
    ) as drip:
        env, engine = drip.env, drip.engine
        port = free_port()
        script = folder / "signup.lua"
        script.write_text(SCRIPT)
        with (folder / "gunicorn.log").open("w") as log:
            web = subprocess.Popen(procfile_web(port), env=env, cwd=ROOT, stdout=log, stderr=log)
            try:
                base = f"http://127.0.0.1:{port}"
                wait_until(lambda: _answers(f"{base}/healthz"), timeout=60, what="gunicorn")
                load = dict(seconds=seconds, connections=connections, threads=2)
                healthz = wrk(f"{base}/healthz", script=None, **load)
                signup = wrk(f"{base}/api/v1/subscribers", script=script, **load)
                rss = max(peak_rss_mb(pid) for pid in process_tree(web.pid))
            finally:
                stop(web)
        with engine.connect() as conn:
            created = int(conn.scalar(sa.select(sa.func.count()).select_from(ReceivedSignup)) or 0)
    return healthz, signup, created, rss


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (make bench installs it: apt-get install wrk)")
    kinds = args.databases.split(",")
    print(
        f"# Benchmark 3: signup throughput, {args.seconds} s per load, "
        f"{args.connections} connections, {machine()}"
    )
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="drip-bench-") as tmp, databases(kinds) as database:
        for kind in kinds:
            folder = Path(tmp) / kind
            with database(kind, folder) as url:
                healthz, signup, created, rss = run(
                    kind, url, folder, seconds=args.seconds, connections=args.connections
                )
            ratio = signup.rate / healthz.rate
            for load in (healthz, signup):
                rows.append(
                    (
                        kind,
                        load.what,
                        load.requests,
                        load.rate,
                        load.p50_ms,
                        load.p99_ms,
                        f"{load.non_2xx} non-2xx, {load.socket_errors} socket",
                        f"{load.rate / healthz.rate:.2f}",
                    )
                )
            ok = ratio >= RATIO_TARGET and signup.p99_ms < P99_TARGET_MS and not signup.errors
            results.append(
                f"{kind} {signup.rate:,.0f}/s = {ratio:.2f}x healthz, p99 {signup.p99_ms:.0f} ms, "
                f"{signup.errors} errors, {created:,} rows ({verdict(ok)})"
            )
            print(f"  {kind}: {created:,} signups received; web peak RSS {rss:.0f} MB", flush=True)
    print()
    print_table(
        ["database", "request", "requests", "per s", "p50 ms", "p99 ms", "errors", "x healthz"],
        rows,
    )
    summary("signup", "; ".join(results))


def _parser() -> argparse.ArgumentParser:
    parser = arguments("bench.signup", __doc__)
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", 20)))
    parser.add_argument("--connections", type=int, default=16)
    return parser


if __name__ == "__main__":
    main()

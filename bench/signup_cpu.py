"""What one signup costs the web process: CPU and wall time per request, in-process.

Builds the app with create_app on a benchmark instance (bench.support.drip_instance),
then posts `--n` distinct addresses to /api/v1/subscribers through Flask's test client,
and asks /healthz as often, as the baseline. CPU time per request hardly moves with
other work on the machine, unlike wrk's requests per second (bench.signup), so it
shows a change to the request's own work even on a busy machine; `--profile` prints
where the signup's CPU time goes (cProfile, on CPU time, cumulative).

    python -m bench.signup_cpu --n 1000 --databases sqlite --profile 40
"""

from __future__ import annotations

import cProfile
import pstats
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from flask.testing import FlaskClient

from bench.signup import NO_LIMIT
from bench.support import arguments, databases, drip_instance, machine, print_table
from drip.settings import load_settings
from drip.web import create_app

WARM_UP = 200


def run(database_url: str, folder: Path, *, n: int, profile: int) -> dict[str, tuple[float, float]]:
    """{request: (wall ms, CPU ms)} per request, for /healthz and the signup."""
    with drip_instance(
        database_url, folder, now=datetime.now(UTC), DRIP_SIGNUP_LIMIT=NO_LIMIT
    ) as drip:
        client = create_app(load_settings(drip.env)).test_client()
        loads = {"healthz": _healthz(client), "POST /api/v1/subscribers": _signup(client)}
        for load in loads.values():
            for i in range(-WARM_UP, 0):
                load(i)
        return {
            what: _timed(load, n, profile=profile if what != "healthz" else 0)
            for what, load in loads.items()
        }


def _healthz(client: FlaskClient) -> Callable[[int], None]:
    def load(_: int) -> None:
        assert client.get("/healthz").status_code == 200

    return load


def _signup(client: FlaskClient) -> Callable[[int], None]:
    def load(i: int) -> None:
        body = {"email": f"r{i}@example.com", "first_name": "Reader"}
        response = client.post("/api/v1/subscribers", json=body)
        assert response.status_code == 202, response.data

    return load


def _timed(load: Callable[[int], None], n: int, *, profile: int) -> tuple[float, float]:
    profiler = cProfile.Profile(time.process_time) if profile else None
    wall, cpu = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    for i in range(n):
        load(i)
    if profiler:
        profiler.disable()
    took = ((time.perf_counter() - wall) * 1000 / n, (time.process_time() - cpu) * 1000 / n)
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(profile)
    return took


def main(argv: list[str] | None = None) -> None:
    parser = arguments("bench.signup_cpu", __doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--profile", type=int, default=0, help="print this many profile lines")
    args = parser.parse_args(argv)
    kinds = args.databases.split(",")
    print(f"# Signup CPU per request, in-process, N = {args.n}, {machine()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="drip-bench-") as tmp, databases(kinds) as database:
        for kind in kinds:
            folder = Path(tmp) / kind
            with database(kind, folder) as url:
                took = run(url, folder, n=args.n, profile=args.profile)
            healthz_cpu = took["healthz"][1]
            for what, (wall, cpu) in took.items():
                rows.append((kind, what, wall, cpu, f"{cpu / healthz_cpu:.2f}"))
    print_table(["database", "request", "wall ms", "CPU ms", "CPU x healthz"], rows)


if __name__ == "__main__":
    main()

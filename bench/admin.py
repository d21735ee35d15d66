"""Benchmark 5: the admin's dashboard and subscriber list on a million subscribers.

The pages are requested in-process through Flask's test client as a logged-in admin, so
the time is the app's (queries and templates), not the network's. Baseline (same run):
the same pages on the smallest list. Each page: one cold request, then the median of
`--repeat` more.

    python -m bench.admin --sizes 10000,100000 --databases sqlite
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from flask.testing import FlaskClient

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
from drip.admins import create_admin
from drip.db import make_session_factory, transaction
from drip.settings import load_settings
from drip.web import create_app

TARGET_MS = 500
EMAIL = "admin@example.com"
PASSWORD = "bench-password-123"
PAGES = {
    "dashboard": "/admin/",
    "list, first page": "/admin/subscribers/",
    "list, status=active": "/admin/subscribers/?status=active",
    "list, next step 3": "/admin/subscribers/?step=3",
    "list, deep page": "/admin/subscribers/?before={middle}",
    "search an address": "/admin/subscribers/?q=reader{middle}@",
    "search a name": "/admin/subscribers/?q=Reader+{middle}",
}


def log_in(client: FlaskClient) -> None:
    page = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    response = client.post(
        "/admin/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302, response.status_code


def time_pages(client: FlaskClient, size: int, repeat: int) -> dict[str, tuple[float, float]]:
    """Page name -> (cold ms, median warm ms)."""
    timings = {}
    for name, path in PAGES.items():
        url = path.format(middle=size // 2)
        samples = []
        for _ in range(repeat + 1):
            started = time.perf_counter()
            response = client.get(url)
            samples.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        timings[name] = (samples[0], statistics.median(samples[1:]))
    return timings


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    kinds = args.databases.split(",")
    print(f"# Benchmark 5: admin pages, {machine()}")
    rows, worst = [], {}
    with tempfile.TemporaryDirectory(prefix="drip-bench-") as tmp, databases(kinds) as database:
        for kind in kinds:
            folder = Path(tmp) / kind
            now = datetime.now(UTC)
            with database(kind, folder) as url, drip_instance(url, folder, now=now) as drip:
                engine, sequence_id = drip.engine, drip.sequence_id
                with transaction(make_session_factory(engine)) as session:
                    create_admin(session, EMAIL, PASSWORD, now=now)
                client = create_app(load_settings(drip.env)).test_client()
                log_in(client)
                loaded, baseline = 0, {}
                for size in sizes:
                    started = time.perf_counter()
                    loader.load_subscribers(
                        engine,
                        sequence_id,
                        start=loaded + 1,
                        count=size - loaded,
                        due_every=10**12,
                        now=now,
                    )
                    deliveries = loader.load_sent_deliveries(engine, sequence_id, after=loaded)
                    loaded = size
                    loader.analyse(engine)
                    print(
                        f"  {kind}: {size:,} subscribers, {deliveries:,} deliveries loaded in "
                        f"{time.perf_counter() - started:.1f} s",
                        flush=True,
                    )
                    timings = time_pages(client, size, args.repeat)
                    baseline = baseline or timings
                    for name, (cold, warm) in timings.items():
                        rows.append((kind, size, name, cold, warm, warm / baseline[name][1]))
                    worst[kind] = max(timings.items(), key=lambda item: item[1][1])
    print()
    print_table(
        ["database", "subscribers", "page", "cold ms", "median ms", f"x at {sizes[0]:,}"], rows
    )
    summary(
        "admin",
        f"at {sizes[-1]:,} subscribers, slowest page (median): "
        + "; ".join(
            f"{kind} {name} {warm:.0f} ms ({verdict(warm < TARGET_MS)} < {TARGET_MS} ms)"
            for kind, (name, (_, warm)) in worst.items()
        ),
    )


def _parser() -> argparse.ArgumentParser:
    parser = arguments("bench.admin", __doc__)
    parser.add_argument("--sizes", default=os.environ.get("BENCH_ADMIN_SIZES", "10000,1000000"))
    parser.add_argument("--repeat", type=int, default=3)
    return parser


if __name__ == "__main__":
    main()

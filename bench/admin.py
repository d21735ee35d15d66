"""Benchmark 5: the admin's dashboard and subscriber list on a million subscribers.

The pages are requested in-process through Flask's test client as a logged-in admin, so
the time is the app's (queries and templates), not the network's. Baseline (same run):
the same pages on the smallest list. Each page: one cold request, then the median of
`--repeat` more.

The dashboard is timed twice at each size: first with no stored count, so it counts
live (as it did before drip.snapshots), then after a worker's count (`recount_series`,
timed on its own), which it shows instead on a list of more than DRIP_LIVE_COUNT_UP_TO
subscribers (20,000). The complaint-rate queries the dashboard always runs live are
timed on their own too.

    python -m bench.admin --sizes 10000,100000 --databases sqlite
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
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
from drip import complaints
from drip.admins import create_admin
from drip.db import SessionFactory, make_session_factory, reading, transaction
from drip.models import StatsSnapshot
from drip.settings import load_settings
from drip.snapshots import recount_series
from drip.web import create_app

TARGET_MS = 500
EMAIL = "admin@example.com"
PASSWORD = "bench-password-123"
LIVE_DASHBOARD = "dashboard, counted live"
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
        timings[name] = timed(lambda url=url: _get(client, url), repeat)
    return timings


def time_dashboard_parts(
    client: FlaskClient, sessions: SessionFactory, sequence_id: int, repeat: int
) -> dict[str, tuple[float, float]]:
    """The dashboard counted live (no stored count), a worker's count, and the
    complaint-rate queries; leaves the worker's count stored for the pages."""
    with transaction(sessions) as session:
        session.execute(sa.delete(StatsSnapshot))
    live = timed(lambda: _get(client, "/admin/"), repeat)
    count = timed(lambda: recount_series(sessions, sequence_id, now=datetime.now(UTC)), 0)

    def day_rate() -> None:
        with reading(sessions) as session:
            complaints.day_rate(session, datetime.now(UTC))

    def hold() -> None:
        with reading(sessions) as session:
            complaints.current_hold(session)

    return {
        LIVE_DASHBOARD: live,
        "worker's count (recount_series)": count,
        "query: complaints.day_rate": timed(day_rate, repeat),
        "query: complaints.current_hold": timed(hold, repeat),
    }


def timed(run: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(first ms, median ms of `repeat` more; the first again when there are none)."""
    samples = []
    for _ in range(repeat + 1):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    return samples[0], statistics.median(samples[1:] or samples)


def _get(client: FlaskClient, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)


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
                    loader.load_consent_events(engine, after=loaded)
                    loaded = size
                    loader.analyse(engine)
                    print(
                        f"  {kind}: {size:,} subscribers, {deliveries:,} deliveries loaded in "
                        f"{time.perf_counter() - started:.1f} s",
                        flush=True,
                    )
                    timings = time_dashboard_parts(
                        client, make_session_factory(engine), sequence_id, args.repeat
                    )
                    timings |= time_pages(client, size, args.repeat)
                    baseline = baseline or timings
                    for name, (cold, warm) in timings.items():
                        rows.append((kind, size, name, cold, warm, warm / baseline[name][1]))
                    pages = {n: t for n, t in timings.items() if n in PAGES}
                    worst[kind] = max(pages.items(), key=lambda item: item[1][1])
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

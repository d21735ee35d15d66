"""Timing migrations 0027-0029 on a big list, and what they hold up meanwhile.

Loads `--size` subscribers (as bench.admin does, with paused readers, a sent lesson each,
their consent events, a few suppressions and bounces) at the newest schema, downgrades
to 0026, then upgrades to 0027, 0028 and 0029 one at a time, each in a process of its
own (wall time and peak RSS, Python's start included), and finally downgrades to 0026
once more and upgrades to the newest in one go, as `drip db upgrade` does.

While each runs, one probe per table and kind of access takes the lock a web process's
read or write of it needs (PostgreSQL: LOCK TABLE ... IN ACCESS SHARE / ROW EXCLUSIVE
MODE; SQLite: a read, and BEGIN IMMEDIATE for a write, waiting as long as it takes)
every 0.2 s and keeps the longest wait: what a signup or an admin page would have seen.

    python -m bench.migrations --size 100000 --databases sqlite
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bench import loader
from bench.support import ROOT, arguments, databases, drip_instance, machine, print_table

TABLES = ("subscribers", "suppressions", "deliveries", "consent_events")
STEPS = (("downgrade", "0026"), ("upgrade", "0027"), ("upgrade", "0028"), ("upgrade", "0029"))
IN_ONE_GO = (("downgrade", "0026"), ("upgrade", "head"))
PAUSED = "SELECT count(*) FROM subscribers WHERE paused_until IS NOT NULL"
MIGRATE = """
import json, os, sys, time
from bench.support import peak_rss_mb
from drip import schema
from drip.settings import load_settings
from drip.wiring import make_engine
started = time.perf_counter()
schema.migrate(make_engine(load_settings()), sys.argv[1], sys.argv[2])
print(json.dumps([time.perf_counter() - started, peak_rss_mb(os.getpid())]))
"""


def load(engine: Engine, sequence_id: int, size: int, now: datetime) -> None:
    """The list, and one suppression per 50 subscribers (every reason), one bounce per
    100 deliveries."""
    loader.load_subscribers(engine, sequence_id, start=1, count=size, due_every=10**12, now=now)
    loader.load_sent_deliveries(engine, sequence_id, after=0)
    loader.load_consent_events(engine, after=0)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO suppressions (email_hash, reason, created_at, erased) "
                "SELECT 'hash' || id, CASE id % 4 WHEN 0 THEN 'erased' WHEN 1 THEN 'declined' "
                "WHEN 2 THEN 'bounced' ELSE 'complaint' END, created_at, id % 4 = 0 "
                "FROM subscribers WHERE id % 50 = 0"
            )
        )
        conn.execute(sa.text("UPDATE deliveries SET bounce = 'hard' WHERE id % 100 = 0"))
    loader.analyse(engine)


def migrate(env: dict[str, str], direction: str, revision: str) -> tuple[float, float, float]:
    """(wall s of the process, s inside schema.migrate, peak RSS MB)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", MIGRATE, direction, revision],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    inside, rss = json.loads(done.stdout.splitlines()[-1])
    return time.perf_counter() - started, inside, rss


class Probe(threading.Thread):
    """Takes one lock again and again until stopped; keeps the longest wait."""

    def __init__(self, url: str, table: str, write: bool) -> None:
        super().__init__(daemon=True)
        self.url, self.table, self.write = url, table, write
        self.longest = 0.0
        self.stopping = threading.Event()

    def run(self) -> None:
        take = self._postgresql() if self.url.startswith("postgresql") else self._sqlite()
        while not self.stopping.is_set():
            started = time.perf_counter()
            take()
            self.longest = max(self.longest, time.perf_counter() - started)
            self.stopping.wait(0.2)

    def _postgresql(self) -> Callable[[], None]:
        conn = psycopg.connect(self.url.replace("+psycopg", ""), autocommit=True)
        mode = "ROW EXCLUSIVE" if self.write else "ACCESS SHARE"

        def take() -> None:
            with conn.transaction():
                conn.execute(f"LOCK TABLE {self.table} IN {mode} MODE")

        return take

    def _sqlite(self) -> Callable[[], None]:
        conn = sqlite3.connect(self.url.removeprefix("sqlite:///"), timeout=3600)
        conn.isolation_level = None

        def take() -> None:
            if self.write:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
            else:
                conn.execute(f"SELECT id FROM {self.table} WHERE id = 1").fetchall()

        return take


@contextmanager
def probes(url: str) -> Iterator[list[Probe]]:
    sqlite = url.startswith("sqlite")
    running = [
        Probe(url, table, write)
        for table in (TABLES[:1] if sqlite else TABLES)
        for write in (False, True)
    ]
    for probe in running:
        probe.start()
    time.sleep(0.5)
    try:
        yield running
    finally:
        for probe in running:
            probe.stopping.set()
        for probe in running:
            probe.join()


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    kinds = args.databases.split(",")
    print(f"# Migrations 0027-0029 on {args.size:,} subscribers, {machine()}", flush=True)
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="drip-bench-") as tmp,
        databases(kinds) as database,
    ):
        for kind in kinds:
            folder = Path(tmp) / kind
            now = datetime.now(UTC)
            with database(kind, folder) as url, drip_instance(url, folder, now=now) as drip:
                started = time.perf_counter()
                load(drip.engine, drip.sequence_id, args.size, now)
                paused = _paused(drip.engine)
                drip.engine.dispose()
                print(f"  {kind}: loaded in {time.perf_counter() - started:.0f} s", flush=True)
                for label, steps in (("one by one", STEPS), ("in one go", IN_ONE_GO)):
                    for direction, revision in steps:
                        with probes(url) as running:
                            wall, inside, rss = migrate(drip.env, direction, revision)
                        waits = {p.table: "" for p in running}
                        for p in running:
                            waits[p.table] += f"{p.longest:.1f}" + ("" if p.write else "/")
                        row = (kind, label, f"{direction} {revision}", wall, inside, rss)
                        rows.append((*row, *(waits.get(table, "") for table in TABLES)))
                        print("  ", *rows[-1], flush=True)
                    print(f"  {kind}: {paused:,} paused loaded, {_paused(drip.engine):,} now")
    print()
    waited = [f"{table} r/w wait s" for table in TABLES]
    print_table(["database", "run", "to", "wall s", "migrate s", "peak RSS MB", *waited], rows)


def _paused(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(sa.text(PAUSED)) or 0)


def _parser() -> argparse.ArgumentParser:
    parser = arguments("bench.migrations", __doc__)
    size = os.environ.get("BENCH_MIGRATIONS_SIZE", "1000000")
    parser.add_argument("--size", type=int, default=int(size))
    return parser


if __name__ == "__main__":
    main()

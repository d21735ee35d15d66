"""The `drip` command: each subcommand parses its arguments and calls one function."""

from __future__ import annotations

import logging
import mailbox
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any, TextIO

import click
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from drip.clock import Clock, FixedClock, parse_instant
from drip.db import SessionFactory, is_conflict
from drip.errors import ConfigError, DripError, InvalidInput, NotFound
from drip.scheduler import PassResult
from drip.settings import Settings, load_settings, positive_float

log = logging.getLogger("drip.scheduler")


def _settings() -> Settings:
    """The settings, with logging set up from them (every command comes through here)."""
    from drip.logs import configure_logging

    settings = load_settings()
    configure_logging(settings)
    return settings


CONFLICT = (
    "the database aborted a step for a clash with another change; that step changed "
    "nothing (steps before it are kept), run the command again"
)


def _handles_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A command's errors as a message and an exit status, not a traceback: 2 for a bad
    setting, as for any usage error, and 1 for the rest. When PostgreSQL aborts a
    command's transaction to let a clashing one through (drip.db.CONFLICTS; the purge of
    unconfirmed signups can still deadlock with `drip privacy erase`, drip.privacy.erase),
    the aborted transaction leaves nothing behind (a command that commits in steps, as
    `bounces process` does, keeps the steps before it) and the same command run again
    normally goes through, so the message says that instead of a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None
        except DripError as exc:
            raise click.ClickException(str(exc)) from None
        except DBAPIError as exc:
            if not is_conflict(exc):
                raise
            raise click.ClickException(CONFLICT) from None

    return wrapper


@click.group()
def main() -> None:
    """drip: double opt-in signup, one lesson a day, one-click unsubscribe."""


@main.command()
@_handles_errors
def init() -> None:
    """Create or upgrade the database and install the shipped series if there is none."""
    from drip.bootstrap import initialise
    from drip.wiring import make_clock, make_engine, make_renderer

    settings = _settings()
    engine = make_engine(settings)
    try:
        lines = initialise(settings, engine, make_clock(settings), make_renderer(settings))
    finally:
        engine.dispose()
    click.echo("\n".join(lines))


@main.group()
def db() -> None:
    """The database schema (Alembic migrations, applied from code)."""


@db.command("upgrade")
@_handles_errors
def db_upgrade() -> None:
    """Apply every new migration. Safe on every deploy: run it before starting the new
    web and worker processes (drip init does this too, and installs the series once)."""
    from drip import schema
    from drip.wiring import make_engine

    engine = make_engine(_settings())
    try:
        schema.upgrade(engine)
        current, _newest = schema.revisions(engine)
    finally:
        engine.dispose()
    where = engine.url.render_as_string(hide_password=True)
    click.echo(f"database at {', '.join(sorted(current))}: {where}")


@db.command("current")
@_handles_errors
def db_current() -> None:
    """Print the database's migration and the code's newest; exit 1 when it is behind."""
    from drip import schema
    from drip.wiring import make_engine

    engine = make_engine(_settings())
    try:
        current, newest = schema.revisions(engine)
        behind = schema.is_behind(engine)
    finally:
        engine.dispose()
    at = ", ".join(sorted(current)) or "nothing (an empty database)"
    head = ", ".join(sorted(newest))
    if current == newest:
        click.echo(f"database at {at} (the newest)")
    elif behind:
        click.echo(f"database at {at}, newest is {head}: run drip db upgrade")
        sys.exit(1)
    else:
        click.echo(f"database at {at}, newer than this code ({head})")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@_handles_errors
def run(host: str, port: int) -> None:
    """Start everything on this machine: Redis (embedded), web, worker and scheduler."""
    from drip.runner import run_all

    sys.exit(run_all(_settings(), host=host, port=port))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@_handles_errors
def web(host: str, port: int) -> None:
    """Serve the web app with Werkzeug (local use; production runs gunicorn)."""
    from werkzeug.serving import run_simple

    from drip.web import create_app

    run_simple(host, port, create_app(_settings()), threaded=True)


@main.command()
@click.option("--processes", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 64))
@_handles_errors
def worker(processes: int, threads: int) -> None:
    """Start Dramatiq worker processes for drip's actors.

    Dramatiq's command line runs in this process, with drip's logging (its own is
    skipped), so the parent's lines are in DRIP_LOG_FORMAT too. Dramatiq reads its
    prefetch setting from the environment when it is first imported: set it before.
    """
    settings = _settings()
    # One message in hand per thread (standards REL-09): a killed worker strands at most
    # one per thread. A larger prefetch measured faster under load (bench/send.py), but
    # every stranded id then waits for the sweeper's DRIP_REQUEUE_AFTER.
    os.environ.setdefault("dramatiq_queue_prefetch", str(threads))
    os.environ["DRIP_DB_POOL_SIZE"] = str(max(threads, settings.db_pool_size))
    from dramatiq.cli import main as dramatiq_main
    from dramatiq.cli import make_argument_parser

    argv = ["drip.tasks:setup_worker", "--processes", str(processes), "--threads", str(threads)]
    argv += ["--queues", "drip", "--skip-logging"]
    sys.exit(dramatiq_main(make_argument_parser().parse_args(argv)))


def _seconds(_ctx: click.Context, _param: click.Parameter, raw: str | None) -> float | None:
    """DRIP_SCHEDULER_INTERVAL's rule for the option that overrides it: a negative, zero,
    NaN or infinite interval is refused here, not by time.sleep after the first pass."""
    if raw is None:
        return None
    try:
        return positive_float(raw)
    except ValueError as exc:
        raise click.BadParameter(f"{raw!r} {exc}") from None


@main.command()
@click.option(
    "--interval",
    default=None,
    metavar="SECONDS",
    callback=_seconds,
    help="Seconds between passes (default DRIP_SCHEDULER_INTERVAL).",
)
@click.option(
    "--sweep-only",
    is_flag=True,
    help="Only re-queue stale deliveries and signups (a separate sweeper); issue nothing new.",
)
@_handles_errors
def scheduler(interval: float | None, sweep_only: bool) -> None:
    """Run scheduler passes forever."""
    settings = _settings()
    pause = settings.scheduler_interval if interval is None else interval
    with _scheduler(settings, None, sweep_only=sweep_only) as run_pass:
        while True:
            try:
                result = run_pass()
            except Exception:
                log.exception("scheduler pass failed; trying again at the next one")
            else:
                if result.issued or result.requeued or result.requeued_signups:
                    click.echo(
                        f"queued {len(result.issued)} new, re-queued {len(result.requeued)}"
                        f" and {len(result.requeued_signups)} received signups"
                    )
            time.sleep(pause)


@main.command()
@click.option(
    "--now",
    default=None,
    help="Run as if at this ISO-8601 instant (the sweeper's deadlines move with it).",
)
@_handles_errors
def tick(now: str | None) -> None:
    """Run one scheduler pass and print what it queued."""
    settings = _settings()
    try:
        clock = FixedClock(parse_instant(now)) if now else None
    except ValueError:
        raise click.BadParameter(
            f"{now!r} is not an ISO-8601 instant", param_hint="--now"
        ) from None
    with _scheduler(settings, clock) as run_pass:
        result = run_pass()
    for delivery_id in result.issued:
        click.echo(f"queued delivery {delivery_id}")
    for delivery_id in result.requeued:
        click.echo(f"re-queued delivery {delivery_id}")
    for received_id in result.requeued_signups:
        click.echo(f"re-queued received signup {received_id}")
    click.echo(f"{len(result.issued)} queued, {len(result.requeued)} re-queued")


@main.group()
def lessons() -> None:
    """The series as files, to keep in git."""


@lessons.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--series", default="", help="Series slug (the first one by default).")
@_handles_errors
def lessons_export(directory: Path, series: str) -> None:
    """Write the series' current lessons into DIRECTORY."""
    from drip.series_files import export_series
    from drip.signup import find_sequence

    with _session() as (session, _clock):
        written = export_series(session, find_sequence(session, series), directory)
    click.echo(f"wrote {len(written)} files into {directory}")


@lessons.command("load")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_handles_errors
def lessons_load(directory: Path) -> None:
    """Load a series from DIRECTORY: changed lessons become new versions; nothing is
    overwritten or deleted. Every template is checked first; one bad file loads nothing."""
    from drip.bootstrap import check_series
    from drip.series_files import install_series, read_series
    from drip.wiring import make_renderer

    settings = _settings()
    series = read_series(directory)
    check_series(make_renderer(settings), series, settings)
    with _session() as (session, clock):
        before = _version_count(session)
        install_series(session, series, now=clock.now(), author=f"drip lessons load {directory}")
        added = _version_count(session) - before
    click.echo(f"loaded {series.name!r}: {added} new lesson version(s)")


def _version_count(session: Session) -> int:
    import sqlalchemy as sa

    from drip.models import TemplateVersion

    return session.scalar(sa.select(sa.func.count()).select_from(TemplateVersion)) or 0


@main.group()
def subscribers() -> None:
    """Subscribers as CSV files."""


@subscribers.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--series", default="", help="Series slug (the first one by default).")
@_handles_errors
def subscribers_export(file: Path, series: str) -> None:
    """Write every subscriber of the series to FILE (CSV)."""
    from drip.csvio import export_rows, write_csv
    from drip.signup import find_sequence

    with _session() as (session, _clock), file.open("w", newline="") as out:
        write_csv(export_rows(session, find_sequence(session, series).id), out)
    click.echo(f"wrote {file}")


@subscribers.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--series", default="", help="Series slug (the first one by default).")
@_handles_errors
def subscribers_import(file: Path, series: str) -> None:
    """Import subscribers from FILE (CSV with email and consent columns; optional
    first_name, timezone, send_hour, step). Each becomes a pending signup and gets one
    confirmation email; bad rows are reported and skipped."""
    import csv

    from drip.csvio import count_lines, import_rows
    from drip.signup import find_sequence
    from drip.tasks import Enqueuer, create_broker
    from drip.wiring import make_redis

    settings = _settings()
    total = count_lines(file)
    with (
        _session() as (session, clock),
        file.open(newline="", encoding="utf-8-sig") as lines,
        click.progressbar(length=total, label="importing", file=sys.stderr) as bar,
    ):
        report = import_rows(
            session,
            find_sequence(session, series),
            csv.DictReader(_counted(lines, bar)),
            now=clock.now(),
            secret=settings.secret_key,
            source=file.name,
        )
    broker = create_broker(make_redis(settings))
    try:
        Enqueuer(broker)(report.confirmations)
    finally:
        broker.close()
    for line, problem in report.problems:
        click.echo(f"line {line}: {problem}", err=True)
    click.echo(
        f"imported {report.imported} as pending, each asked by email to confirm; "
        f"skipped {len(report.problems)}"
    )


def _counted(lines: Iterator[str], bar: Any) -> Iterator[str]:
    for line in lines:
        bar.update(1)
        yield line


def _address(_ctx: click.Context, _param: click.Parameter, raw: str) -> str:
    """ADDRESS normalised as the privacy page normalises what it is given, so that the
    command finds the rows the page would; one that is no address is a usage error."""
    from drip.signup import normalise_email

    try:
        return normalise_email(raw)
    except InvalidInput as exc:
        raise click.BadParameter(str(exc)) from None


@main.group()
def privacy() -> None:
    """A person's data rights asked for by post or plain email (standards LAW-13, LAW-14):
    the download and the erasure the privacy page gives them."""


@privacy.command("export")
@click.argument("address", callback=_address)
@click.option(
    "--output",
    type=click.File("w", encoding="utf-8", lazy=True),
    default="-",
    metavar="FILE",
    help="Write the JSON to FILE instead of standard output.",
)
@_handles_errors
def privacy_export(address: str, output: TextIO) -> None:
    """Write everything held about ADDRESS as JSON: the privacy page's download. An
    address nobody holds gives an export with nothing in it (the answer to send) and a
    note on standard error, in case it was mistyped."""
    from drip.db import reading
    from drip.privacy_export import as_json, export, holds_nothing

    settings = _settings()
    with _sessions() as (sessions, _clock), reading(sessions) as session:
        exported = export(session, address, secret=settings.secret_key)
    click.echo(as_json(exported), file=output)
    if holds_nothing(exported):
        click.echo(f"nothing is held about {address}", err=True)


@privacy.command("erase")
@click.argument("address", callback=_address)
@click.option("--yes", is_flag=True, help="Erase without asking first.")
@_handles_errors
def privacy_erase(address: str, yes: bool) -> None:
    """Erase everything held about ADDRESS, as the privacy page's erase button does,
    keeping only keyed hashes of it, so that nothing mails it again by mistake. Asks first,
    showing what it would delete; when nothing holds the address, it says so, changes
    nothing and exits 1 (a mistyped address must not pass for a done erasure)."""
    from drip.db import reading
    from drip.privacy import erasable, erase_address

    settings = _settings()
    with _sessions() as (sessions, clock):
        with reading(sessions) as session:
            subscriptions, received = erasable(session, address)
        if not subscriptions and not received:
            raise NotFound(f"no subscription or signup holds {address}; nothing was erased")
        if not yes:
            click.confirm(
                f"Erase {address} for good: {subscriptions} subscription(s) and "
                f"{received} signup(s) received?",
                abort=True,
            )
        erased = erase_address(sessions, address, secret=settings.secret_key, now=clock.now())
    click.echo(f"erased {address}: {erased} subscription(s); only keyed hashes of it are left")


@main.group()
def bounces() -> None:
    """Bounce and complaint reports from a mailbox."""


@bounces.command("process")
@click.argument("source")
@_handles_errors
def bounces_process(source: str) -> None:
    """Read DSN bounces and ARF complaints from SOURCE (a Maildir folder, or - for one
    message on standard input) and stop the subscribers they name. Each message not yet
    Seen is read once, then deleted, reports and anything else alike (it holds an address
    an erasure cannot reach). A report that cannot be read is held: left in the Maildir
    marked Seen and Flagged for a person to read, and deleted after 30 days."""
    from drip.bounces import HELD_FOR, SOFT_RUN, Tally, process_maildir, process_message
    from drip.tokens import Tokens

    settings = _settings()
    tally = Tally()
    if source == "-":
        with _session() as (session, clock):
            process_message(
                session,
                sys.stdin.buffer.read(),
                secret=settings.secret_key,
                tokens=Tokens(settings.secret_keys, clock),
                now=clock.now(),
                tally=tally,
            )
    else:
        if not Path(source, "cur").is_dir():
            raise click.BadParameter(f"{source} is not a Maildir", param_hint="SOURCE")
        with _sessions() as (sessions, clock):
            process_maildir(
                mailbox.Maildir(source, create=False),
                sessions,
                secret=settings.secret_key,
                tokens=Tokens(settings.secret_keys, clock),
                clock=clock,
                tally=tally,
            )
    click.echo(
        f"{tally.hard} hard bounces, {tally.complaints} complaints, {tally.soft} soft bounces "
        f"({tally.stopped} stopped after {SOFT_RUN} in a row), {tally.unmatched} not matched, "
        f"{tally.unreadable} not a report, {tally.held} unreadable reports held, "
        f"{tally.expired} held reports deleted after {HELD_FOR.days} days"
    )


@main.group()
def dkim() -> None:
    """DKIM keys for signing mail."""


@dkim.command("keygen")
@click.argument("domain")
@click.argument("selector")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None)
@_handles_errors
def dkim_keygen(domain: str, selector: str, out: Path | None) -> None:
    """Write a new 2048-bit key for DOMAIN and print the DNS record to publish."""
    from drip.dkim_signing import generate_key, txt_record

    folder = out or _settings().instance_dir / "dkim"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{selector}.{domain}.pem"
    if path.exists():
        raise click.ClickException(f"{path} exists; choose another selector to rotate keys")
    pem, public = generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    click.echo(f"private key: {path}")
    click.echo(
        "publish this DNS record, then set DRIP_DKIM_DOMAIN, DRIP_DKIM_SELECTOR, DRIP_DKIM_KEY:"
    )
    click.echo(txt_record(selector, domain, public))


@main.command()
@_handles_errors
def doctor() -> None:
    """Check the settings a new operator gets wrong (URLs, DKIM, SPF, DMARC, SMTP login,
    the relay's reverse DNS), each with how to fix it. Fails only on errors; a DNS lookup
    it cannot make is a warning."""
    from drip.doctor import Level, dns_records, dns_txt, examine

    checks = examine(_settings(), lookup_txt=dns_txt, lookup_records=dns_records)
    for check in checks:
        click.echo(f"{check.level.value:<8} {check.name}: {check.detail}")
        if check.fix and check.level != Level.OK:
            click.echo(f"{'':<8} fix: {check.fix}")
    errors = sum(check.level == Level.ERROR for check in checks)
    warnings = sum(check.level == Level.WARNING for check in checks)
    click.echo(f"{errors} error(s), {warnings} warning(s)")
    if errors:
        sys.exit(1)


@main.group()
def keys() -> None:
    """Signing keys: rotate to a new one, retire the oldest (standards SEC-11)."""


@keys.command("rotate")
@_handles_errors
def keys_rotate() -> None:
    """Print the environment with a fresh newest key; deploy it to every process."""
    from drip.keys import rotated

    settings = _settings()
    _print_keys(settings, rotated(settings.secret_keys))


@keys.command("retire")
@_handles_errors
def keys_retire() -> None:
    """Print the environment without the oldest key, once it has not signed for 60 days."""
    from drip.keys import retired
    from drip.wiring import make_clock

    settings = _settings()
    now = make_clock(settings).now()
    _print_keys(settings, retired(settings.instance_dir, settings.secret_keys, now))


def _print_keys(settings: Settings, keys: tuple[str, ...]) -> None:
    """The variables to deploy. DRIP_HASH_KEY is printed too, pinned to the key already
    hashing, so that dropping the oldest signing key changes no stored hash."""
    click.echo(f"DRIP_SECRET_KEYS={','.join(keys)}")
    click.echo(f"DRIP_HASH_KEY={settings.secret_key}")


@main.group()
def admin() -> None:
    """Admin accounts for /admin."""


@admin.command("create")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@_handles_errors
def admin_create(email: str, password_stdin: bool) -> None:
    """Create an admin who can log into /admin."""
    from drip.admins import create_admin

    password = _password(password_stdin)
    with _session() as (session, clock):
        created = create_admin(session, email, password, now=clock.now())
        click.echo(f"created admin {created.email}")


@admin.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@_handles_errors
def admin_set_password(email: str, password_stdin: bool) -> None:
    """Give an admin a new password, which logs out every session made with the old one."""
    from drip.admins import set_password

    password = _password(password_stdin)
    with _session() as (session, _clock):
        changed = set_password(session, email, password)
        click.echo(f"password changed for {changed.email}")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@contextmanager
def _session() -> Iterator[tuple[Session, Clock]]:
    """One transaction on the configured database, for commands that change a few rows."""
    from drip.db import transaction

    with _sessions() as (sessions, clock), transaction(sessions) as session:
        yield session, clock


@contextmanager
def _sessions() -> Iterator[tuple[SessionFactory, Clock]]:
    """The configured database, for commands that commit as they go."""
    from drip.db import make_session_factory
    from drip.wiring import make_clock, make_engine

    settings = _settings()
    engine = make_engine(settings)
    try:
        yield make_session_factory(engine), make_clock(settings)
    finally:
        engine.dispose()


@contextmanager
def _scheduler(
    settings: Settings, clock: Clock | None, *, sweep_only: bool = False
) -> Iterator[Callable[[], PassResult]]:
    """A function running one scheduler pass (or only its sweep), with the database and
    Redis it needs."""
    from drip.db import make_session_factory
    from drip.metrics import record_pass
    from drip.scheduler import configured_pass
    from drip.tasks import Enqueuer, create_broker
    from drip.wiring import make_clock, make_engine, make_redis

    engine = make_engine(settings)
    client = make_redis(settings)
    broker = create_broker(client)
    sessions = make_session_factory(engine)
    chosen = clock or make_clock(settings)
    enqueue = Enqueuer(broker)

    def one_pass() -> PassResult:
        began = time.monotonic()
        result = configured_pass(
            settings,
            sessions,
            chosen,
            enqueue,
            signups=enqueue.signups,
            sweep_only=sweep_only,
            recount=enqueue.recount,
        )
        record_pass(client, result, seconds=time.monotonic() - began, finished_at=chosen.now())
        return result

    try:
        yield one_pass
    finally:
        broker.close()
        engine.dispose()

"""The long-running processes (all together, or web, worker and scheduler alone) and
`drip tick`, one scheduler pass."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

from drip.cli.common import configured_settings, handles_errors
from drip.clock import Clock, FixedClock, parse_instant
from drip.scheduler import PassResult
from drip.settings import Settings, positive_float

log = logging.getLogger("drip.scheduler")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@handles_errors
def run(host: str, port: int) -> None:
    """Start everything on this machine: Redis (embedded), web, worker and scheduler."""
    from drip.runner import run_all

    sys.exit(run_all(configured_settings(), host=host, port=port))


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@handles_errors
def web(host: str, port: int) -> None:
    """Serve the web app with Werkzeug (local use; production runs gunicorn)."""
    from werkzeug.serving import run_simple

    from drip.web import create_app

    run_simple(host, port, create_app(configured_settings()), threaded=True)


@click.command()
@click.option("--processes", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 64))
@handles_errors
def worker(processes: int, threads: int) -> None:
    """Start Dramatiq worker processes for drip's actors.

    Dramatiq's command line runs in this process, with drip's logging (its own is
    skipped), so the parent's lines are in DRIP_LOG_FORMAT too. Dramatiq reads its
    prefetch setting from the environment when it is first imported: set it before.
    """
    settings = configured_settings()
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
        raise click.BadParameter(f"{exc}, not {raw!r}") from None


@click.command()
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
@handles_errors
def scheduler(interval: float | None, sweep_only: bool) -> None:
    """Run scheduler passes forever, saying what each did in the log (standard error,
    in DRIP_LOG_FORMAT), never on standard output."""
    settings = configured_settings()
    pause = settings.scheduler_interval if interval is None else interval
    with _scheduler(settings, None, sweep_only=sweep_only) as run_pass:
        while True:
            try:
                result = run_pass()
            except Exception:
                log.exception("scheduler pass failed; trying again at the next one")
            else:
                if result.issued or result.requeued or result.requeued_signups:
                    log.info(
                        "queued %d new, re-queued %d and %d received signups",
                        len(result.issued),
                        len(result.requeued),
                        len(result.requeued_signups),
                    )
            time.sleep(pause)


@click.command()
@click.option(
    "--now",
    default=None,
    help="Run as if at this ISO-8601 instant (the sweeper's deadlines move with it).",
)
@handles_errors
def tick(now: str | None) -> None:
    """Run one scheduler pass and print what it queued."""
    settings = configured_settings()
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


@contextmanager
def _scheduler(
    settings: Settings, clock: Clock | None, *, sweep_only: bool = False
) -> Iterator[Callable[[], PassResult]]:
    """A function running one scheduler pass (or only its sweep), with the database and
    Redis it needs."""
    from drip.db import make_session_factory
    from drip.db_problems import require_database
    from drip.metrics import record_pass
    from drip.scheduler import configured_pass
    from drip.tasks import Enqueuer, create_broker
    from drip.wiring import make_clock, make_engine, make_redis

    require_database(settings.database_url)
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

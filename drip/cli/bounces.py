"""`drip bounces`: bounce and complaint reports from a mailbox."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import click
from sqlalchemy.exc import DBAPIError

from drip.cli.common import configured_settings, database_session, database_sessions, handles_errors
from drip.db import is_conflict
from drip.db_problems import is_passing, is_unreachable, reason, unreachable
from drip.errors import DripError
from drip.settings import Settings

log = logging.getLogger(__name__)

EX_TEMPFAIL = 75
"""sysexits.h's "temporary failure": the exit status with which a mail system that pipes
a message in (Postfix's pipe and local, Exim's pipe transport) keeps it in its queue and
tries again later. Any other failure status has it returned to its sender: a bounce's
sender is empty, so it is lost, and a complaint would go back to the provider."""


_TRY_LATER = "exiting with EX_TEMPFAIL for the mail system to try again later"


@contextmanager
def _failing_for_now(settings: Settings) -> Iterator[None]:
    """Exit EX_TEMPFAIL, with one line on stderr, when the database cannot take a piped
    message now (drip.db_problems.is_passing): it cannot be reached, it aborted the
    transaction for a clash with another (drip.db.is_conflict), or it failed otherwise
    for now, as SQLite does while another process holds its write lock past
    drip.db.BUSY_WAIT ("database is locked"). Exit status 1, as for any other failed
    command, had the mail system return the message to its sender, and a bounce has
    none: it was lost.

    Anything else is a bug that a later try meets again, and exits 1 as before, but with
    a line saying so and the traceback through drip's log: Python's own traceback came
    alone, naming an address the statement was given, and the mail system logs what
    the command printed and may mail it back to the report's sender. A DripError keeps
    its one-line message (handles_errors)."""
    try:
        yield
    except DBAPIError as exc:
        if not is_passing(exc):
            _failed_for_good()
        click.echo(f"{_problem(settings, exc)}; {_TRY_LATER}", err=True)
        sys.exit(EX_TEMPFAIL)
    except DripError:
        raise
    except Exception:
        _failed_for_good()


def _problem(settings: Settings, exc: DBAPIError) -> str:
    if is_conflict(exc):
        return "the database aborted the transaction for a clash with another change"
    if is_unreachable(exc):
        return unreachable(settings.database_url, exc)
    return f"the database cannot take the message now: {reason(exc)}"


def _failed_for_good() -> NoReturn:
    """Called while handling the exception, which the log line carries."""
    log.exception(
        "bounces_pipe_failed: a bug in drip, not the database's passing trouble; exiting "
        "with status 1, not EX_TEMPFAIL, as a later try would fail the same way"
    )
    sys.exit(1)


@click.group()
def bounces() -> None:
    """Bounce and complaint reports from a mailbox."""


@bounces.command("process")
@click.argument("source")
@handles_errors
def bounces_process(source: str) -> None:
    """Read DSN bounces and ARF complaints from SOURCE (a Maildir folder, or - for one
    message on standard input) and stop the subscribers they name. Each message not yet
    Seen is read once, then deleted, reports and anything else alike (it holds an address
    an erasure cannot reach). A report or bounce that cannot be read (or is over 10 MiB),
    and a complaint known only by the address it names, are held: left in the Maildir
    marked Seen and Flagged for a person to read, and deleted after 30 days. From
    standard input, one that cannot be read exits with status 75 (EX_TEMPFAIL), which has
    the mail system piping it in keep it queued and try again, and so does one the
    database cannot take now (unreachable, a clash with another change, or locked by
    another process); a complaint drip does not believe is logged, not kept."""
    from drip.bounces import HELD_FOR, SOFT_RUN, Tally, process_maildir, process_message
    from drip.tokens import Tokens

    settings = configured_settings()
    tally = Tally()
    done = True
    if source == "-":
        with _failing_for_now(settings), database_session() as (session, clock):
            done = process_message(
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
        with database_sessions() as (sessions, clock):
            process_maildir(
                Path(source),
                sessions,
                secret=settings.secret_key,
                tokens=Tokens(settings.secret_keys, clock),
                clock=clock,
                tally=tally,
            )
    click.echo(
        f"{tally.hard} hard bounces, {tally.complaints} complaints, {tally.soft} soft bounces "
        f"({tally.stopped} stopped after {SOFT_RUN} in a row), {tally.doubted} complaints "
        f"known only by address held (not acted on), {tally.unmatched} not matched, "
        f"{tally.unreadable} not a report, {tally.held} unreadable reports held, "
        f"{tally.expired} held reports deleted after {HELD_FOR.days} days"
    )
    if source == "-" and tally.held:
        click.echo("held: exiting with EX_TEMPFAIL for the mail system to keep it", err=True)
        sys.exit(EX_TEMPFAIL)
    if not done:
        # Not EX_TEMPFAIL: the message's other reports are applied, and each retry by the
        # mail system would apply them again (soft bounces adding up to a stop).
        click.echo("a complaint known only by its address was not acted on (see the log)", err=True)

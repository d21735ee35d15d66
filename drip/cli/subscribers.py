"""`drip subscribers`: subscribers as CSV files."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from drip.cli.common import configured_settings, database_session, handles_errors


@click.group()
def subscribers() -> None:
    """Subscribers as CSV files."""


@subscribers.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--series", default="", help="Series slug (the first one by default).")
@handles_errors
def subscribers_export(file: Path, series: str) -> None:
    """Write every subscriber of the series to FILE (CSV), readable by its owner only."""
    from drip.csvio import export_rows, write_csv
    from drip.private_files import open_private
    from drip.signup import find_sequence

    with (
        database_session(create_instance=False) as (session, _clock),
        open_private(file, newline="", encoding="utf-8") as out,
    ):
        write_csv(export_rows(session, find_sequence(session, series).id), out)
    click.echo(f"wrote {file}")


@subscribers.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--series", default="", help="Series slug (the first one by default).")
@handles_errors
def subscribers_import(file: Path, series: str) -> None:
    """Import subscribers from FILE (CSV with email and consent columns; optional
    first_name, timezone, send_hour, step). Each becomes a pending signup and gets one
    confirmation email; bad rows are reported and skipped."""
    import csv

    from drip.csvio import count_lines, import_rows
    from drip.signup import find_sequence
    from drip.tasks import Enqueuer, create_broker
    from drip.wiring import make_redis

    settings = configured_settings()
    total = count_lines(file)
    with (
        database_session() as (session, clock),
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

"""`drip lessons`: the series as files, to keep in git."""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy.orm import Session

from drip.cli.common import configured_settings, database_session, handles_errors


@click.group()
def lessons() -> None:
    """The series as files, to keep in git."""


@lessons.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--series", default="", help="Series slug (the first one by default).")
@handles_errors
def lessons_export(directory: Path, series: str) -> None:
    """Write the series' current lessons into DIRECTORY."""
    from drip.series_files import export_series
    from drip.signup import find_sequence

    with database_session(create_instance=False) as (session, _clock):
        written = export_series(session, find_sequence(session, series), directory)
    click.echo(f"wrote {len(written)} files into {directory}")


@lessons.command("load")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@handles_errors
def lessons_load(directory: Path) -> None:
    """Load a series from DIRECTORY: changed lessons become new versions; nothing is
    overwritten or deleted. Every template is checked first; one bad file loads nothing."""
    from drip.bootstrap import check_series
    from drip.series_files import install_series, read_series
    from drip.wiring import make_renderer

    settings = configured_settings()
    series = read_series(directory)
    with database_session() as (session, clock):
        check_series(make_renderer(settings), series, settings, session=session)
        before = _version_count(session)
        install_series(
            session,
            series,
            now=clock.now(),
            author=f"drip lessons load {directory}",
            default_timezone=settings.default_timezone,
        )
        added = _version_count(session) - before
    click.echo(f"loaded {series.name!r}: {added} new lesson version(s)")


def _version_count(session: Session) -> int:
    import sqlalchemy as sa

    from drip.models import TemplateVersion

    return session.scalar(sa.select(sa.func.count()).select_from(TemplateVersion)) or 0

"""`drip init` and `drip db`: the database's schema and the series it starts with."""

from __future__ import annotations

import sys

import click

from drip.cli.common import configured_settings, handles_errors


@click.command()
@handles_errors
def init() -> None:
    """Create or upgrade the database and install the shipped series if there is none."""
    from drip.bootstrap import initialise
    from drip.wiring import make_clock, make_engine, make_renderer

    settings = configured_settings()
    engine = make_engine(settings)
    try:
        lines = initialise(settings, engine, make_clock(settings), make_renderer(settings))
    finally:
        engine.dispose()
    click.echo("\n".join(lines))


@click.group()
def db() -> None:
    """The database schema (Alembic migrations, applied from code)."""


@db.command("upgrade")
@handles_errors
def db_upgrade() -> None:
    """Apply every new migration. Safe on every deploy: run it before starting the new
    web and worker processes (drip init does this too, and installs the series once)."""
    from drip import schema
    from drip.wiring import make_engine

    engine = make_engine(configured_settings())
    try:
        schema.upgrade(engine)
        current, _newest = schema.revisions(engine)
    finally:
        engine.dispose()
    where = engine.url.render_as_string(hide_password=True)
    click.echo(f"database at {', '.join(sorted(current))}: {where}")


@db.command("current")
@handles_errors
def db_current() -> None:
    """Print the database's migration and the code's newest; exit 1 when it is behind.
    Only reads: creates no database file, instance folder or key."""
    from drip import schema
    from drip.db_problems import require_database
    from drip.wiring import make_engine

    settings = configured_settings(create_instance=False)
    require_database(settings.database_url)
    engine = make_engine(settings)
    try:
        current, newest = schema.revisions(engine)
    finally:
        engine.dispose()
    at, head = schema.listed(current), schema.listed(newest)
    if current == newest:
        click.echo(f"database at {at} (the newest)")
    elif schema.behind(current, newest):
        click.echo(f"database at {at}, newest is {head}: run drip db upgrade")
        sys.exit(1)
    else:
        click.echo(f"database at {at}, newer than this code ({head})")

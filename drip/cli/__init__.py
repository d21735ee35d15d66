"""The `drip` command: each subcommand parses its arguments and calls one function.

One module per command group. A command imports what it calls inside its body, so that
`drip --help` stays quick and a process loads only what its command needs: `drip worker`
sets Dramatiq's prefetch before Dramatiq is first imported (tests/test_cli.py)."""

from __future__ import annotations

import click

from drip.cli import (
    admins,
    bounces,
    database,
    doctor,
    keys,
    lessons,
    privacy,
    processes,
    subscribers,
)


@click.group()
def main() -> None:
    """drip: double opt-in signup, one lesson a day, one-click unsubscribe."""


for command in (
    database.init,
    database.db,
    processes.run,
    processes.web,
    processes.worker,
    processes.scheduler,
    processes.tick,
    lessons.lessons,
    subscribers.subscribers,
    privacy.privacy,
    bounces.bounces,
    keys.dkim,
    doctor.doctor,
    keys.keys,
    admins.admin,
):
    main.add_command(command)

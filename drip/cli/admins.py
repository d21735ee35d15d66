"""`drip admin`: admin accounts for /admin."""

from __future__ import annotations

import sys

import click

from drip.cli.common import database_session, handles_errors


@click.group()
def admin() -> None:
    """Admin accounts for /admin."""


@admin.command("create")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@handles_errors
def admin_create(email: str, password_stdin: bool) -> None:
    """Create an admin who can log into /admin."""
    from drip.admins import create_admin

    password = _password(password_stdin)
    with database_session() as (session, clock):
        created = create_admin(session, email, password, now=clock.now())
        click.echo(f"created admin {created.email}")


@admin.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@handles_errors
def admin_set_password(email: str, password_stdin: bool) -> None:
    """Give an admin a new password, which logs out every session made with the old one."""
    from drip.admins import set_password

    password = _password(password_stdin)
    with database_session() as (session, _clock):
        changed = set_password(session, email, password)
        click.echo(f"password changed for {changed.email}")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))

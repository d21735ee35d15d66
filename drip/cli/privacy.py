"""`drip privacy`: the privacy page's download and erasure, for a request made by post or
plain email."""

from __future__ import annotations

from pathlib import Path

import click

from drip.cli.common import configured_settings, database_sessions, handles_errors
from drip.errors import InvalidInput, NotFound


def _address(_ctx: click.Context, _param: click.Parameter, raw: str) -> str:
    """ADDRESS normalised as the privacy page normalises what it is given, so that the
    command finds the rows the page would; one that is no address is a usage error."""
    from drip.signup import normalise_email

    try:
        return normalise_email(raw)
    except InvalidInput as exc:
        raise click.BadParameter(str(exc)) from None


@click.group()
def privacy() -> None:
    """A person's data rights asked for by post or plain email (standards LAW-13, LAW-14):
    the download and the erasure the privacy page gives them."""


@privacy.command("export")
@click.argument("address", callback=_address)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    default="-",
    metavar="FILE",
    help="Write the JSON to FILE (readable by its owner only) instead of standard output.",
)
@handles_errors
def privacy_export(address: str, output: Path) -> None:
    """Write everything held about ADDRESS as JSON: the privacy page's download. An
    address nobody holds gives an export with nothing in it (the answer to send) and a
    note on standard error, in case it was mistyped."""
    from drip.db import reading
    from drip.privacy_export import as_json, export, holds_nothing
    from drip.private_files import open_private

    settings = configured_settings()
    with database_sessions() as (sessions, _clock), reading(sessions) as session:
        exported = export(session, address, secret=settings.secret_key)
    if output == Path("-"):
        click.echo(as_json(exported))
    else:
        with open_private(output, encoding="utf-8") as out:
            click.echo(as_json(exported), file=out)
    if holds_nothing(exported):
        click.echo(f"nothing is held about {address}", err=True)


@privacy.command("erase")
@click.argument("address", callback=_address)
@click.option("--yes", is_flag=True, help="Erase without asking first.")
@handles_errors
def privacy_erase(address: str, yes: bool) -> None:
    """Erase everything held about ADDRESS, as the privacy page's erase button does,
    keeping only keyed hashes of it, so that nothing mails it again by mistake. Asks first,
    showing what it would delete; when nothing holds the address, it says so, changes
    nothing and exits 1 (a mistyped address must not pass for a done erasure)."""
    from drip.db import reading
    from drip.outbox import addressed_to, location
    from drip.privacy import erasable, erase_address

    settings = configured_settings()
    outbox = location(settings)
    with database_sessions() as (sessions, clock):
        with reading(sessions) as session:
            subscriptions, received = erasable(session, address)
        emails = len(addressed_to(outbox, address)) if outbox else 0
        if not subscriptions and not received and not emails:
            raise NotFound(f"no subscription or signup holds {address}; nothing was erased")
        if not yes:
            held = [f"{subscriptions} subscription(s)", f"{received} signup(s) received"]
            held += [f"{emails} email(s) in the outbox"] if emails else []
            listed = ", ".join(held[:-1]) + " and " + held[-1]
            click.confirm(f"Erase {address} for good: {listed}?", abort=True)
        erased = erase_address(
            sessions, address, secret=settings.secret_key, now=clock.now(), outbox=outbox
        )
    from_outbox = f" and {emails} email(s) from the outbox" if emails else ""
    click.echo(
        f"erased {address}: {erased} subscription(s){from_outbox}; only keyed hashes of it are left"
    )

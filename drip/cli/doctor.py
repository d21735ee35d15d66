"""`drip doctor`: the settings a new operator gets wrong, checked."""

from __future__ import annotations

import sys

import click

from drip.cli.common import configured_settings, handles_errors


@click.command()
@handles_errors
def doctor() -> None:
    """Check the settings a new operator gets wrong (the database and its migration,
    Redis, URLs, DKIM, SPF, DMARC, SMTP login, the relay's reverse DNS, embedded forms
    showing an older consent notice), each with how to fix it. Fails only on errors; a
    DNS lookup it cannot make is a warning."""
    from drip.doctor import Level, dns_records, dns_txt, examine
    from drip.wiring import make_clock

    settings = configured_settings()
    checks = examine(
        settings, lookup_txt=dns_txt, lookup_records=dns_records, clock=make_clock(settings)
    )
    for check in checks:
        click.echo(f"{check.level.value:<8} {check.name}: {check.detail}")
        if check.fix and check.level != Level.OK:
            click.echo(f"{'':<8} fix: {check.fix}")
    errors = sum(check.level == Level.ERROR for check in checks)
    warnings = sum(check.level == Level.WARNING for check in checks)
    click.echo(f"{errors} error(s), {warnings} warning(s)")
    if errors:
        sys.exit(1)

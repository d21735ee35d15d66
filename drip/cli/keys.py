"""`drip dkim` and `drip keys`: the keys that sign mail and the keys that sign links."""

from __future__ import annotations

import os
from pathlib import Path

import click

from drip.cli.common import configured_settings, handles_errors
from drip.settings import Settings


@click.group()
def dkim() -> None:
    """DKIM keys for signing mail."""


@dkim.command("keygen")
@click.argument("domain")
@click.argument("selector")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None)
@handles_errors
def dkim_keygen(domain: str, selector: str, out: Path | None) -> None:
    """Write a new 2048-bit key for DOMAIN and print the DNS record to publish."""
    from drip.dkim_signing import generate_key, txt_record

    folder = out or configured_settings().instance_dir / "dkim"
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


@click.group()
def keys() -> None:
    """Signing keys: rotate to a new one, retire the oldest (standards SEC-11)."""


@keys.command("rotate")
@handles_errors
def keys_rotate() -> None:
    """Print the environment with a fresh newest key; deploy it to every process."""
    from drip.keys import rotated

    settings = configured_settings()
    _print_keys(settings, rotated(settings.secret_keys))


@keys.command("retire")
@handles_errors
def keys_retire() -> None:
    """Print the environment without the oldest key, once it has not signed for 60 days."""
    from drip.keys import retired
    from drip.wiring import make_clock

    settings = configured_settings()
    now = make_clock(settings).now()
    _print_keys(settings, retired(settings.instance_dir, settings.secret_keys, now))


def _print_keys(settings: Settings, keys: tuple[str, ...]) -> None:
    """The variables to deploy. DRIP_HASH_KEY is printed too, pinned to the key already
    hashing, so that dropping the oldest signing key changes no stored hash."""
    click.echo(f"DRIP_SECRET_KEYS={','.join(keys)}")
    click.echo(f"DRIP_HASH_KEY={settings.secret_key}")

"""`drip dkim` and `drip keys`: the keys that sign mail and the keys that sign links."""

from __future__ import annotations

from pathlib import Path

import click

from drip.cli.common import configured_settings, handles_errors
from drip.settings import Settings


@click.group()
def dkim() -> None:
    """DKIM keys for signing mail."""


def _dns_name(ctx: click.Context, param: click.Parameter, raw: str) -> str:
    """DOMAIN or SELECTOR, checked as DRIP_DKIM_DOMAIN and DRIP_DKIM_SELECTOR are."""
    from drip.dns_names import dkim_selector, domain_name

    try:
        if param.name == "domain":
            return domain_name(raw)
        return dkim_selector(raw, domain=ctx.params["domain"])
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@dkim.command("keygen")
@click.argument("domain", callback=_dns_name)
@click.argument("selector", callback=_dns_name)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None)
@handles_errors
def dkim_keygen(domain: str, selector: str, out: Path | None) -> None:
    """Write a new 2048-bit key for DOMAIN and print the DNS record to publish.

    DOMAIN is a domain name (an internationalised one becomes its punycode form);
    SELECTOR is one or more dot-separated labels of letters, digits and hyphens.
    It reads DRIP_INSTANCE alone: the other settings may already name the key it writes
    (DRIP_DKIM_KEY), which would refuse to load before the key exists."""
    from drip.dkim_signing import generate_key, txt_record
    from drip.private_files import make_private_folder, open_private
    from drip.settings import instance_dir

    folder = out or instance_dir() / "dkim"
    make_private_folder(folder)
    path = folder / f"{selector}.{domain}.pem"
    pem, public = generate_key()
    try:
        with open_private(path, "wb", exclusive=True) as f:
            f.write(pem)
    except FileExistsError:
        raise click.ClickException(
            f"{path} exists; choose another selector to rotate keys"
        ) from None
    click.echo(f"private key: {path}")
    click.echo(
        "publish this DNS record, then set DRIP_DKIM_DOMAIN, DRIP_DKIM_SELECTOR, DRIP_DKIM_KEY:"
    )
    click.echo(txt_record(selector, domain, public))
    click.echo("DNS allows 255 characters in one quoted string, so the value comes in several;")
    click.echo("some DNS providers' forms want it as one: join the strings, without the quotes.")


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

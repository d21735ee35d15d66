"""Checks of the settings themselves, which need no network."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from drip.doctor.report import Check, Level
from drip.headers import PYTHON, STDLIB_HEADERS_SAFE, has_fold_check
from drip.settings import DEFAULT_BASE_URL, DEMO_POSTAL_ADDRESS, DEMO_SENDER, Settings

INLINE_COMMENT = re.compile(r"\s#\s")
"""A '#' between spaces, as a comment written after a value leaves it. "Suite #5" does
not match; "Unit # 5" does, which is why this warns instead of refusing."""
LOCAL_SUFFIXES = (".localhost", ".local", ".test", ".invalid", ".example", ".internal")


def sends_real_mail(settings: Settings) -> bool:
    return not settings.mail_url.startswith("maildir:")


def base_url(settings: Settings) -> Check:
    name = "base URL"
    host = urlsplit(settings.base_url).hostname or ""
    if _is_local(host):
        if sends_real_mail(settings):
            return Check(
                name,
                Level.ERROR,
                f"links in emails point at {host}, which recipients cannot reach",
                "set DRIP_BASE_URL to the public https:// address of this service",
            )
        return Check(
            name,
            Level.OK,
            f"{settings.base_url}, {_base_url_source(settings)} (local use, mail goes to a "
            "Maildir)",
        )
    if not settings.base_url.startswith("https://"):
        return Check(
            name,
            Level.ERROR if settings.production else Level.WARNING,
            f"{settings.base_url} is not https: unsubscribe links travel in the clear",
            "serve drip over TLS and set DRIP_BASE_URL=https://...",
        )
    return Check(name, Level.OK, f"{settings.base_url}, {_base_url_source(settings)}")


def _base_url_source(settings: Settings) -> str:
    """Where the doctor's base URL came from. `drip run --port N` gives its own processes
    http://localhost:N and leaves this shell's environment alone, so the doctor run
    beside it reads the default and must not pass it off as the running service's."""
    if settings.base_url == DEFAULT_BASE_URL:
        return (
            "DRIP_BASE_URL's default in this shell (`drip run --port N` gives its own "
            "processes http://localhost:N unless DRIP_BASE_URL is set)"
        )
    return "from DRIP_BASE_URL"


def secret_key(settings: Settings) -> Check:
    generated = settings.instance_dir / "secret_key"
    if generated.is_file() and generated.read_text(encoding="utf-8").strip() == settings.secret_key:
        if not (settings.production or sends_real_mail(settings)):
            return Check("secret key", Level.OK, f"generated in {generated} (one machine)")
        return Check(
            "secret key",
            Level.ERROR if settings.production else Level.WARNING,
            f"generated in {generated}: another machine would generate a different one, "
            "and the links it signed would stop working",
            'set DRIP_SECRET_KEY on every process: python3 -c "import secrets; '
            'print(secrets.token_urlsafe(48))"',
        )
    return Check("secret key", Level.OK, "set by DRIP_SECRET_KEY")


def postal_address(settings: Settings) -> Check:
    if settings.postal_address == DEMO_POSTAL_ADDRESS:
        return Check(
            "postal address",
            Level.WARNING,
            "the demo address is in every email's footer",
            "set DRIP_POSTAL_ADDRESS to your real postal address (CAN-SPAM requires one)",
        )
    return Check("postal address", Level.OK, settings.postal_address)


def sender(settings: Settings) -> Check:
    """The From address; production refuses the demo one at start (drip.settings)."""
    name = "From address"
    if str(settings.sender) != DEMO_SENDER:
        return Check(name, Level.OK, str(settings.sender))
    if sends_real_mail(settings):
        return Check(
            name,
            Level.ERROR,
            f"mail goes out as {DEMO_SENDER}, an address you do not own: receivers reject it",
            'set DRIP_FROM="Your Name <you@your-domain>" on a domain you publish DKIM for',
        )
    return Check(name, Level.OK, f"{DEMO_SENDER} (local use, mail goes to a Maildir)")


def inline_comments(settings: Settings) -> Check:
    """Free text that looks like it ends in a comment systemd kept (systemd #12527).

    Only web addresses refuse one at start (drip.settings): a postal address or a name
    may hold a '#' of its own. A secret key is only named, never shown, and must not
    simply be cut: links already sent are signed with it, and the suppression list's
    hashes are keyed with the oldest."""
    texts = {
        "DRIP_FROM": str(settings.sender),
        "DRIP_POSTAL_ADDRESS": settings.postal_address,
        "DRIP_PRIVACY_OPERATOR": settings.operator,
        "DRIP_PRIVACY_CONTACT": settings.contact,
        "DRIP_PRIVACY_PROCESSORS": settings.processors,
        "DRIP_AD_NOTICE": settings.ad_notice,
    }
    named = [name for name, text in texts.items() if INLINE_COMMENT.search(text)]
    keys = (*settings.secret_keys, settings.secret_key)
    secret = any(INLINE_COMMENT.search(key) for key in keys)
    if not (named or secret):
        return Check("inline comments", Level.OK, "no value looks like it holds a comment")
    fixes = ["write each comment on a line of its own"]
    if secret:
        named.append("a secret key (DRIP_SECRET_KEY(S) or DRIP_HASH_KEY)")
        fixes.append(
            "leave a key as it is, quoted, or rotate it (drip keys rotate): links already "
            "sent and the suppression list need it exactly"
        )
    return Check(
        "inline comments",
        Level.WARNING,
        f"{', '.join(named)}: ' # ' and text after it, most likely a comment that "
        "systemd's EnvironmentFile= kept as part of the value",
        "; ".join(fixes),
    )


def alignment(settings: Settings) -> Check:
    name = "From and DKIM domains"
    sender = settings.mail_domain
    if settings.dkim_key is None:
        return Check(
            name,
            Level.WARNING,
            "mail is not DKIM-signed: Gmail and Yahoo reject or spam-folder unsigned bulk mail",
            f"drip dkim keygen {sender} SELECTOR, publish the record, set DRIP_DKIM_*",
        )
    if _aligned(settings.dkim_domain, sender):
        return Check(name, Level.OK, f"d={settings.dkim_domain} aligns with From @{sender}")
    return Check(
        name,
        Level.ERROR,
        f"d={settings.dkim_domain} does not align with From @{sender}: DMARC will fail",
        f"sign with a key for {sender} (DRIP_DKIM_DOMAIN), or send From that domain",
    )


def bounce_domain(settings: Settings) -> Check:
    name = "bounce domain"
    if not settings.bounce_domain:
        return Check(name, Level.OK, f"not set: the envelope sender is @{settings.mail_domain}")
    if _aligned(settings.bounce_domain, settings.mail_domain):
        return Check(
            name, Level.OK, f"{settings.bounce_domain} aligns with From @{settings.mail_domain}"
        )
    return Check(
        name,
        Level.WARNING,
        f"{settings.bounce_domain} does not align with From @{settings.mail_domain}: "
        "SPF cannot count for DMARC, which then rests on DKIM alone",
        f"use a subdomain of {settings.mail_domain}, e.g. bounces.{settings.mail_domain}",
    )


def python_email_package(version: tuple[int, ...] = PYTHON) -> Check:
    """SEC-07's two fixes: CVE-2024-6923 is required (workers refuse to start without
    it); CVE-2026-1299 is a warning, because drip writes headers with its own fold check."""
    name = "Python email package"
    running = ".".join(map(str, version))
    if not STDLIB_HEADERS_SAFE:
        return Check(
            name,
            Level.ERROR,
            "predates the CVE-2024-6923 header-injection fix: workers refuse to start",
            "run drip on Python 3.11.10+, 3.12.5+ or 3.13+",
        )
    if not has_fold_check(version):
        return Check(
            name,
            Level.WARNING,
            f"Python {running} predates the CVE-2026-1299 fix (BytesGenerator writes a "
            "header fold that starts a new line); drip is covered by its own check in "
            "drip.email_policy.written_headers, which writes every header drip sends",
            "upgrade to Python 3.11.15+, 3.12.13+, 3.13.12+ or 3.14.3+",
        )
    return Check(name, Level.OK, f"Python {running} has the CVE-2024-6923 and CVE-2026-1299 fixes")


def _aligned(dkim_domain: str, from_domain: str) -> bool:
    """DMARC relaxed alignment, approximated without the public suffix list: the same
    domain, or one a subdomain of the other."""
    a, b = dkim_domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    return a == b or a.endswith("." + b) or b.endswith("." + a)


def _is_local(host: str) -> bool:
    if host == "localhost" or host.endswith(LOCAL_SUFFIXES) or "." not in host:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local

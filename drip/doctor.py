"""`drip doctor`: the configuration checks a new operator needs, each with how to fix it.

Each check returns ok, warning or error; only an error makes the command fail. The
network is optional: a DNS lookup that cannot be made is a warning that says the record
was not checked, never an error, so the doctor also runs on a laptop without a resolver.
DNS answers come through an injected `TxtLookup`, the one seam the tests replace. The
SMTP check talks to the real relay: connect, EHLO, STARTTLS, AUTH, QUIT, sending nothing.
"""

from __future__ import annotations

import base64
import enum
import ipaddress
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from cryptography.hazmat.primitives import serialization

from drip.dkim_signing import DkimSigner, txt_record
from drip.errors import ConfigError
from drip.headers import STDLIB_HEADERS_SAFE
from drip.settings import DEMO_POSTAL_ADDRESS, Settings
from drip.transports import _is_loopback as is_loopback

SMTP_TIMEOUT = 15
LOCAL_SUFFIXES = (".localhost", ".local", ".test", ".invalid", ".example", ".internal")


class Level(enum.StrEnum):
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Check:
    name: str
    level: Level
    detail: str
    fix: str = ""


class LookupFailed(Exception):
    """The resolver could not tell (no network, timeout): not the same as "no record"."""


class NoSuchName(LookupFailed):
    """NXDOMAIN: the name does not exist, as far as this machine's resolver says."""


TxtLookup = Callable[[str], list[str]]
"""TXT strings published at a name ([] when none); NoSuchName, or LookupFailed when the
resolver cannot tell."""


def examine(
    settings: Settings, *, lookup_txt: TxtLookup, tls: ssl.SSLContext | None = None
) -> list[Check]:
    """Every check, in the order an operator would fix them."""
    lookup_txt = _trusted(lookup_txt, settings.mail_domain)
    return [
        base_url(settings),
        secret_key(settings),
        postal_address(settings),
        alignment(settings),
        dkim_key(settings, lookup_txt),
        spf(settings, lookup_txt),
        dmarc(settings, lookup_txt),
        smtp_relay(settings, tls=tls),
        python_email_package(),
    ]


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
        return Check(name, Level.OK, f"{settings.base_url} (local use, mail goes to a Maildir)")
    if not settings.base_url.startswith("https://"):
        return Check(
            name,
            Level.ERROR if settings.production else Level.WARNING,
            f"{settings.base_url} is not https: unsubscribe links travel in the clear",
            "serve drip over TLS and set DRIP_BASE_URL=https://...",
        )
    return Check(name, Level.OK, settings.base_url)


def secret_key(settings: Settings) -> Check:
    generated = settings.instance_dir / "secret_key"
    if generated.is_file() and generated.read_text().strip() == settings.secret_key:
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


def dkim_key(settings: Settings, lookup_txt: TxtLookup) -> Check:
    name = "DKIM key"
    if settings.dkim_key is None:
        return Check(name, Level.WARNING, "no DKIM key configured", "see 'From and DKIM domains'")
    try:
        signer = DkimSigner.from_file(
            settings.dkim_selector, settings.dkim_domain, settings.dkim_key
        )
    except ConfigError as exc:
        return Check(
            name, Level.ERROR, str(exc), "point DRIP_DKIM_KEY at the PEM file keygen wrote"
        )
    ours = _public_key(signer.private_key)
    record = f"{signer.selector}._domainkey.{signer.domain}"
    publish = f"publish: {txt_record(signer.selector, signer.domain, ours)}"
    try:
        found = [_tags(txt) for txt in lookup_txt(record)]
    except LookupFailed as exc:
        return Check(name, Level.WARNING, f"could not look up {record} ({exc})", publish)
    keys = [tags.get("p", "") for tags in found if "p" in tags]
    if not keys:
        return Check(name, Level.ERROR, f"no DKIM record at {record}", publish)
    if ours not in keys:
        return Check(name, Level.ERROR, f"the key at {record} is not {settings.dkim_key}", publish)
    return Check(name, Level.OK, f"{settings.dkim_key} matches {record}")


def spf(settings: Settings, lookup_txt: TxtLookup) -> Check:
    domain = settings.mail_domain
    fix = f"publish one TXT record at {domain} with your provider's include, e.g. "
    fix += '"v=spf1 include:amazonses.com ~all"'
    try:
        records = [t for t in lookup_txt(domain) if t.lower().startswith("v=spf1")]
    except LookupFailed as exc:
        return Check("SPF", Level.WARNING, f"could not look up {domain} ({exc})", fix)
    if not records:
        return Check("SPF", Level.ERROR, f"no SPF record at {domain}", fix)
    if len(records) > 1:
        return Check("SPF", Level.ERROR, f"{len(records)} SPF records at {domain}", "merge them")
    if "+all" in records[0].split():
        return Check("SPF", Level.WARNING, f"{records[0]!r} lets anyone send as {domain}", fix)
    return Check("SPF", Level.OK, records[0])


def dmarc(settings: Settings, lookup_txt: TxtLookup) -> Check:
    """The From domain's policy, or its parent's, where DMARC looks next."""
    labels = settings.mail_domain.split(".")
    fix = f'publish at _dmarc.{settings.mail_domain}: "v=DMARC1; p=none; rua=mailto:you@..."'
    for domain in dict.fromkeys([".".join(labels), ".".join(labels[-2:])]):
        try:
            found = [_tags(t) for t in lookup_txt(f"_dmarc.{domain}")]
        except LookupFailed as exc:
            return Check("DMARC", Level.WARNING, f"could not look up _dmarc.{domain} ({exc})", fix)
        policies = [tags for tags in found if tags.get("v", "").upper() == "DMARC1"]
        if policies:
            policy = policies[0].get("p", "")
            if policy.lower() not in {"none", "quarantine", "reject"}:
                return Check("DMARC", Level.ERROR, f"_dmarc.{domain} has no valid p= tag", fix)
            return Check("DMARC", Level.OK, f"p={policy} at _dmarc.{domain}")
    return Check("DMARC", Level.ERROR, f"no DMARC record for {settings.mail_domain}", fix)


def smtp_relay(settings: Settings, *, tls: ssl.SSLContext | None = None) -> Check:
    """Log in the way the worker does, and say which step failed."""
    name = "SMTP relay"
    if not sends_real_mail(settings):
        return Check(name, Level.OK, "Maildir outbox: nothing is sent (a laptop setup)")
    parts = urlsplit(settings.mail_url)
    host, implicit_tls = parts.hostname or "localhost", parts.scheme == "smtps"
    port = parts.port or (465 if implicit_tls else 587)
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    context = tls or ssl.create_default_context()
    where = f"{host}:{port}"
    notes = []
    try:
        if implicit_tls:
            conn: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=SMTP_TIMEOUT, context=context)
        else:
            conn = smtplib.SMTP(host, port, timeout=SMTP_TIMEOUT)
        with conn:
            conn.ehlo()
            if not implicit_tls and conn.has_extn("starttls"):
                conn.starttls(context=context)
                conn.ehlo()
            elif not implicit_tls and is_loopback(host):
                notes.append("no STARTTLS (allowed only for a relay on this machine)")
            elif not implicit_tls:
                return Check(
                    name,
                    Level.ERROR,
                    f"{where} offers no STARTTLS; drip refuses to send in plaintext",
                    "use the relay's TLS port (587 with STARTTLS, or smtps:// on 465)",
                )
            if user:
                conn.login(user, password)
            elif not is_loopback(host):
                notes.append("no login in DRIP_MAIL_URL; most relays require one")
    except smtplib.SMTPAuthenticationError as exc:
        return Check(
            name,
            Level.ERROR,
            f"{where} refused the login for {user!r}: {exc.smtp_code} {_text(exc.smtp_error)}",
            "check the user and password in DRIP_MAIL_URL (URL-encode special characters)",
        )
    except smtplib.SMTPNotSupportedError:
        return Check(
            name, Level.ERROR, f"{where} offers no AUTH", "use the relay's submission port"
        )
    except ssl.SSLError as exc:
        return Check(
            name, Level.ERROR, f"TLS with {where} failed: {exc}", "check the relay's host name"
        )
    except (smtplib.SMTPException, OSError) as exc:
        return Check(
            name,
            Level.ERROR,
            f"cannot talk to {where}: {exc}",
            "check host and port in DRIP_MAIL_URL",
        )
    if notes:
        return Check(name, Level.WARNING, f"{where}: " + "; ".join(notes))
    return Check(name, Level.OK, f"{where}: TLS and login accepted")


def python_email_package() -> Check:
    if STDLIB_HEADERS_SAFE:
        return Check("Python email package", Level.OK, "has the CVE-2024-6923 fix")
    return Check(
        "Python email package",
        Level.WARNING,
        "predates the CVE-2024-6923 header-injection fix (drip validates headers itself)",
        "run drip on Python 3.11.10+, 3.12.5+ or newer",
    )


def dns_txt(name: str) -> list[str]:
    """TXT lookups through the system's resolver (dnspython)."""
    import dns.exception
    import dns.resolver

    try:
        answer = dns.resolver.resolve(name, "TXT", lifetime=5)
    except dns.resolver.NoAnswer:
        return []
    except dns.resolver.NXDOMAIN:
        raise NoSuchName("NXDOMAIN") from None
    except dns.exception.DNSException as exc:
        raise LookupFailed(str(exc) or type(exc).__name__) from None
    return [b"".join(rdata.strings).decode(errors="replace") for rdata in answer]


def _trusted(lookup_txt: TxtLookup, domain: str) -> TxtLookup:
    """The lookup, when DNS can see the From domain at all; else one that says why for
    every name. An offline or sandboxed resolver answers NXDOMAIN for everything, and a
    record must never be reported missing for lack of network."""
    try:
        lookup_txt(domain)
    except LookupFailed as exc:
        failure = LookupFailed(f"DNS cannot see {domain} from here: {exc}")

        def failing(_name: str) -> list[str]:
            raise failure

        return failing

    def lookup(name: str) -> list[str]:
        try:
            return lookup_txt(name)
        except NoSuchName:
            return []

    return lookup


def _public_key(pem: bytes) -> str:
    key = serialization.load_pem_private_key(pem, password=None)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def _tags(record: str) -> dict[str, str]:
    """DKIM and DMARC tag=value lists; whitespace inside a value (a folded p=) is dropped."""
    tags = {}
    for part in record.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags[name.strip().lower()] = "".join(value.split())
    return tags


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


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else reply

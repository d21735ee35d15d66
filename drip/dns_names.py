"""Domain names and DKIM selectors, checked wherever drip is given one.

A DKIM key's file is named after its selector and domain, and both go into the DNS
record an operator publishes and into every signature's s= and d= tags, so a name with
a space or a slash would write a file outside the key folder and a record no DNS server
takes. `drip dkim keygen` and the DRIP_DKIM_* settings use these same checks.
"""

from __future__ import annotations

import ipaddress
import re

import idna

LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
"""One DNS label as host names use it (RFC 1123): letters, digits and inner hyphens."""
DOMAIN = re.compile(rf"(?=.{{1,253}}$)(?:{LABEL}\.)+(?:[a-z]{{2,63}}|xn--[a-z0-9-]{{1,59}})")
"""A domain name of two labels or more whose last label is a top-level domain: letters,
or the A-label of an internationalised one (xn--p1ai is .рф)."""
SELECTOR = re.compile(rf"{LABEL}(?:\.{LABEL})*", re.IGNORECASE)
"""RFC 6376 3.1: a selector is one or more dot-separated labels of letters, digits and
hyphens, as a sub-domain is."""
MAX_NAME = 253


def domain_name(raw: str) -> str:
    """The domain as DNS and DKIM's d= tag carry it: lower case, with no final dot, an
    internationalised name as its A-label (punycode), as addresses are stored."""
    name = raw.strip().rstrip(".").lower()
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode()
        except idna.IDNAError:
            raise ValueError(f"{raw!r} is not a domain name such as example.com") from None
    if not DOMAIN.fullmatch(name):
        raise ValueError(f"{raw!r} is not a domain name such as example.com")
    return name


def dkim_selector(raw: str, *, domain: str) -> str:
    """The selector, which with the domain must make a name DNS can hold (253 characters)."""
    name = raw.strip()
    if not SELECTOR.fullmatch(name):
        raise ValueError(
            f"{raw!r} is not a DKIM selector: labels of letters, digits and hyphens, "
            "separated by dots, such as drip2026"
        )
    if len(record := f"{name}._domainkey.{domain}") > MAX_NAME:
        raise ValueError(f"{raw!r} is too long: {record} is over {MAX_NAME} characters")
    return name


def is_loopback(host: str) -> bool:
    """A host on this machine, whose traffic never crosses a network: plaintext SMTP to
    it exposes nothing."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

"""Reverse DNS of the relay (standards AUTH-03): the address mail leaves from should have
a PTR record naming a host that resolves back to that address (forward-confirmed
reverse DNS), which Gmail asks of every sender.

drip hands each email to the relay in DRIP_MAIL_URL and never learns which address
delivers it to the recipient's server. So the doctor checks the relay host's own
public addresses. For a relay that delivers mail itself (your own Postfix), those are
the sending addresses and the check is the real one. A provider's submission host (SES,
Postmark, Mailgun) delivers from other addresses, which the provider keeps right, and
its front door may well have no matching PTR: so a miss is a warning, never an error.
A relay on this machine or a private network is not checked: the public address it
delivers from is not known here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from urllib.parse import urlsplit

from drip.dns_names import is_loopback
from drip.doctor.config import sends_real_mail
from drip.doctor.records import LookupFailed, NoSuchName
from drip.doctor.report import Check, Level
from drip.settings import Settings

RecordLookup = Callable[[str, str], list[str]]
"""The records of one type ("A", "AAAA", "PTR") at a name, as text ([] when none);
NoSuchName, or LookupFailed when the resolver cannot tell."""

NAME = "reverse DNS"
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def reverse_dns(settings: Settings, lookup: RecordLookup) -> Check:
    """Each public address of the relay host has a PTR whose name resolves back to it."""
    if not sends_real_mail(settings):
        return Check(NAME, Level.OK, "Maildir outbox: nothing is sent")
    host = urlsplit(settings.mail_url).hostname or "localhost"
    fix = (
        f"if {host} delivers to recipients itself, ask whoever runs its network for a PTR "
        "record naming a host whose A/AAAA record is that address; a provider's relay "
        "sends from its own addresses, which it keeps right"
    )
    local = Check(
        NAME,
        Level.OK,
        f"not checked: {host} is on this machine or a private network; the public "
        "address it delivers from needs a PTR that resolves back to it",
    )
    if is_loopback(host):
        return local
    try:
        public = [a for a in _addresses(host, lookup) if a.is_global]
        if not public:
            return local
        findings = [_confirmed(address, lookup) for address in public]
    except LookupFailed as exc:
        return Check(NAME, Level.WARNING, f"could not look up {host} ({exc})", fix)
    missing = [problem for ok, problem in findings if not ok]
    if missing:
        return Check(NAME, Level.WARNING, f"{host}: " + "; ".join(missing), fix)
    return Check(NAME, Level.OK, "; ".join(found for _ok, found in findings))


def _confirmed(address: Address, lookup: RecordLookup) -> tuple[bool, str]:
    """Whether one of the address's PTR names resolves back to it, and what was found."""
    try:
        names = [name.rstrip(".") for name in lookup(address.reverse_pointer, "PTR")]
    except NoSuchName:
        names = []
    if not names:
        return False, f"{address} has no PTR record"
    for name in names:
        try:
            if address in _addresses(name, lookup):
                return True, f"{address} is {name}, which resolves back to it"
        except NoSuchName:
            continue
    return False, f"{address} is {', '.join(names)}, which does not resolve back to it"


def _addresses(host: str, lookup: RecordLookup) -> list[Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    return [ipaddress.ip_address(text) for rdtype in ("A", "AAAA") for text in lookup(host, rdtype)]

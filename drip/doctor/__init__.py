"""`drip doctor`: the configuration checks a new operator needs, each with how to fix it.

Each check returns ok, warning or error; only an error makes the command fail. The
network is optional: a DNS lookup that cannot be made is a warning that says the record
was not checked, never an error. The database, Redis and SMTP checks talk to the real
servers, changing nothing: the relay gets connect, EHLO, STARTTLS, AUTH, QUIT.
"""

from __future__ import annotations

import ssl

from drip.clock import Clock, SystemClock
from drip.doctor.config import (
    alignment,
    base_url,
    bounce_domain,
    inline_comments,
    postal_address,
    python_email_package,
    secret_key,
    sender,
    sends_real_mail,
)
from drip.doctor.forms import embedded_forms, unchecked
from drip.doctor.rdns import RecordLookup, reverse_dns
from drip.doctor.records import (
    LookupFailed,
    NoSuchName,
    TxtLookup,
    dkim_key,
    dmarc,
    dns_records,
    dns_txt,
    spf,
    trusted,
)
from drip.doctor.report import Check, Level
from drip.doctor.services import database, redis_server
from drip.doctor.smtp import smtp_relay
from drip.headers import PYTHON
from drip.settings import Settings

__all__ = [
    "Check",
    "Level",
    "LookupFailed",
    "NoSuchName",
    "RecordLookup",
    "TxtLookup",
    "alignment",
    "base_url",
    "bounce_domain",
    "database",
    "dkim_key",
    "dmarc",
    "dns_records",
    "dns_txt",
    "embedded_forms",
    "examine",
    "inline_comments",
    "postal_address",
    "python_email_package",
    "redis_server",
    "reverse_dns",
    "secret_key",
    "sender",
    "sends_real_mail",
    "smtp_relay",
    "spf",
]


def examine(
    settings: Settings,
    *,
    lookup_txt: TxtLookup,
    lookup_records: RecordLookup,
    tls: ssl.SSLContext | None = None,
    python: tuple[int, ...] = PYTHON,
    clock: Clock | None = None,
) -> list[Check]:
    """Every check, in the order an operator would fix them. The lookups are the network
    seam; `python` is the running version; the tests replace all three. The embedded
    forms are looked at only in a database the first check could read."""
    lookup_txt = trusted(lookup_txt, settings.mail_domain)
    store = database(settings)
    return [
        store,
        redis_server(settings),
        base_url(settings),
        secret_key(settings),
        sender(settings),
        postal_address(settings),
        inline_comments(settings),
        alignment(settings),
        bounce_domain(settings),
        dkim_key(settings, lookup_txt),
        spf(settings, lookup_txt),
        dmarc(settings, lookup_txt),
        smtp_relay(settings, tls=tls),
        reverse_dns(settings, lookup_records),
        python_email_package(python),
        unchecked("the database check failed")
        if store.level == Level.ERROR
        else embedded_forms(settings, now=(clock or SystemClock()).now()),
    ]

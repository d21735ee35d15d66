"""DNS checks: the DKIM key against its published record, SPF and DMARC (reverse DNS is
drip.doctor.rdns).

TXT lookups come through an injected `TxtLookup`, the seam the tests replace. When the
From domain itself does not resolve, every check is a warning that says it could not
look: an offline or sandboxed resolver answers NXDOMAIN for everything, and a record
must never be reported missing for lack of network.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import serialization

from drip.dkim_signing import DkimSigner, txt_record
from drip.doctor.report import Check, Level
from drip.errors import ConfigError
from drip.settings import Settings


class LookupFailed(Exception):
    """The resolver could not tell (no network, timeout): not the same as "no record"."""


class NoSuchName(LookupFailed):
    """NXDOMAIN: the name does not exist, as far as this machine's resolver says."""


TxtLookup = Callable[[str], list[str]]
"""TXT strings published at a name ([] when none); NoSuchName, or LookupFailed when the
resolver cannot tell."""


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
    """SPF is checked on the envelope sender: the bounce domain when VERP is on."""
    domain = settings.bounce_domain or settings.mail_domain
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


def dns_txt(name: str) -> list[str]:
    """TXT lookups through the system's resolver (dnspython)."""
    return [b"".join(rdata.strings).decode(errors="replace") for rdata in _resolve(name, "TXT")]


def dns_records(name: str, rdtype: str) -> list[str]:
    """A, AAAA or PTR lookups through the system's resolver, as text (a PTR's name
    keeps its final dot)."""
    return [rdata.to_text() for rdata in _resolve(name, rdtype)]


def _resolve(name: str, rdtype: str) -> list[Any]:
    import dns.exception
    import dns.resolver

    try:
        return list(dns.resolver.resolve(name, rdtype, lifetime=5))
    except dns.resolver.NoAnswer:
        return []
    except dns.resolver.NXDOMAIN:
        raise NoSuchName("NXDOMAIN") from None
    except dns.exception.DNSException as exc:
        raise LookupFailed(str(exc) or type(exc).__name__) from None


def trusted(lookup_txt: TxtLookup, domain: str) -> TxtLookup:
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

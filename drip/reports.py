"""Bounce and complaint reports from a mailbox: what one says, and about which email.

Delivery status notifications (RFC 3464) and abuse reports (ARF, RFC 5965) are read
here; each becomes a `Report`, as a provider's webhook's do (drip.webhooks), for
drip.bounces to apply.

A bounce that is not a machine-readable DSN is read by drip.plain_bounces; each address
it finds failed is tied to its email by the same marks as a DSN (those of the original
it returns, the VERP address, else the address and a date). What it cannot read is
attributed by its VERP address alone, as a soft bounce: three in a row stop the
subscriber anyway.

A message drip should have read and could not is "held" (`parse` gives None) for the
caller to keep for a person: a multipart/report with nothing readable in it, a bounce
whose detectors failed and that no VERP address ties, a message larger than MAX_SIZE,
one that names an address or Message-ID with a NUL (`Report` refuses it: PostgreSQL
cannot look it up), and any message whose reading raised (a bug, or input no one
foresaw, such as parts nested a thousand deep, on which Python's parser raises
RecursionError: drip cannot tell what it was). Messages that are none of these and hold
no report are "not a report" (an auto-reply, or a DSN that reports only successes). No
input raises: one that did would roll its transaction back, leave the message in the
Maildir, and stop every later run on it; so the message is parsed only inside `parse`'s
guard.
"""

from __future__ import annotations

import email
import logging
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.policy import default as default_policy
from email.utils import getaddresses, parsedate_to_datetime

from drip import plain_bounces, verp
from drip.errors import InvalidInput

log = logging.getLogger(__name__)
MESSAGE_ID = re.compile(r"^Message-ID:\s*(<[^>]+>)", re.IGNORECASE | re.MULTILINE)
UNSUBSCRIBE_TOKEN = re.compile(
    r"^List-Unsubscribe:\s*<[^>\s]*/unsubscribe/([\w.-]+)>", re.IGNORECASE | re.MULTILINE
)
ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "To", "Return-Path")
"""Where a bounce shows the address it was returned to (a VERP address, if drip used one)."""
REPORT_PARTS = ("message/delivery-status", "message/feedback-report")
FAILED = ("fail", "error")
"""How a DSN's Action starts for a recipient it failed: RFC 3464's "failed" (some MTAs add
a comment) and OpenSMTPD's "error", as flufl.bounce's DSN detector reads them."""
DELAYED = "delayed"
SUCCEEDED = ("delivered", "relayed", "expanded")
"""The Actions of RFC 3464 section 2.3.3 that report no failure: a receipt asked for with
NOTIFY=SUCCESS, a relay to a system that sends no DSNs, a mailing list expanded. They
are no bounce: three read as soft bounces in a row would stop a reader whose mail
arrives (DEL-05)."""
MAX_SIZE = 10 * 1024 * 1024
"""The largest message drip reads; a larger one is held unread. A bounce returns little
of the original (Postfix its first 50 KB, Exim 100 KB, by default), and a complaint at
most the whole of drip's email, whose rendered parts drip.rendering caps at 1 MiB each;
anything larger is no report about drip's mail. Parsing it would take seconds and
hundreds of MB for each message (one of 50 MB: 5 s and 600 MB), on every run that
reads the Maildir."""


@dataclass(frozen=True)
class Report:
    kind: str  # "hard", "soft" or "complaint"
    recipient: str
    message_id: str | None
    detail: str
    envelope: tuple[str, ...] = ()
    """Addresses the report was returned to, or the original envelope sender."""
    unsubscribe_token: str | None = None
    """The token of the original message's List-Unsubscribe link, when it is embedded."""
    dated: datetime | None = None
    """When the report, or the original it quotes, was made, at the latest: the original
    was sent before it."""
    original_recipient: str = ""
    """A DSN's Original-Recipient: the address as it was given, where a server may have
    rewritten it (an alias) into `recipient`, its Final-Recipient."""
    forgeable: bool = False
    """Came by mail, which anyone can send (a provider's webhook is verified): the address
    it names is no proof of a failure or a complaint, only a mark drip signed is
    (drip.bounces)."""

    def __post_init__(self) -> None:
        """Refuse a NUL in what drip.bounces looks up: PostgreSQL refuses one in a text
        parameter, so the query would raise and roll the report's transaction back, and a
        message in the Maildir, read again, would stop every later run. Raised inside
        `parse`'s guard, it holds the message; from a webhook, it answers 400."""
        marks = (self.recipient, self.original_recipient, self.message_id or "", *self.envelope)
        if any("\x00" in mark for mark in marks):
            raise InvalidInput("a report names an address or Message-ID with a NUL character")


def parse(raw: bytes) -> list[Report] | None:
    """The reports in one message: from a DSN or ARF report, or from a bounce in a format
    of its own (`_plain_bounce`); empty for anything else; None for one to hold (a report
    or bounce drip cannot read, or a message over MAX_SIZE)."""
    if len(raw) > MAX_SIZE:
        log.warning("message of %d bytes held unread: over %d", len(raw), MAX_SIZE)
        return None
    try:
        msg = email.message_from_bytes(raw, policy=default_policy)
        envelope = _envelope(msg)
        if msg.get_content_type() == "multipart/report":
            reports = _report(msg, envelope)
        else:
            reports = _plain_bounce(raw, msg, envelope)
    except Exception as exc:  # RecursionError too: a message must not stop the batch behind it
        log.warning("unreadable report or bounce held (%s: %s)", type(exc).__name__, exc)
        return None
    return None if reports is None else [replace(r, forgeable=True) for r in reports]


def _report(msg: EmailMessage, envelope: tuple[str, ...]) -> list[Report] | None:
    """The failures or complaint a multipart/report gives; None (held) for one with nothing
    drip can read in it."""
    report_type = msg.get_param("report-type", "")
    original, token = _marks(_original_headers(msg))
    if report_type == "delivery-status":
        reports = _delivery_status(msg, original)
    elif report_type == "feedback-report":
        reports = _feedback(msg, original) or None
    else:
        reports = None
    if reports is None:
        return None
    dated = _dated(msg)
    return [
        replace(r, envelope=envelope + r.envelope, unsubscribe_token=token, dated=dated)
        for r in reports
    ]


def _plain_bounce(raw: bytes, msg: EmailMessage, envelope: tuple[str, ...]) -> list[Report] | None:
    """A bounce in a format of its own: the addresses drip.plain_bounces finds in it, else
    one soft bounce if it came back to a VERP address; None (held) if its detectors failed
    and no VERP address ties it, since it is a bounce that says something drip could not
    read, about someone drip cannot tell.

    Each is tied to its email by the marks a DSN gives: the Message-ID and unsubscribe
    link of the original it returns (attached, or quoted after its text, as qmail and
    Exim do), and the original's own date where it gives that instead (Exim's delay
    warning). Without them, a bounce repeated about one email (a warning every day) would
    be tied by its own date to the email sent before each, and count several times."""
    if not plain_bounces.looks_like_a_bounce(msg):
        return []
    subject = str(msg.get("Subject", ""))[:200]
    detail = f"plain-text bounce: {subject}"
    failed = plain_bounces.failures(raw, msg)
    if failed:
        original, token = _marks(_original_headers(msg) or plain_bounces.quoted_headers(msg))
        dated = _dated(msg, plain_bounces.original_date(msg))
        return [
            Report(kind, rcpt, original, detail, envelope, token, dated) for rcpt, kind in failed
        ]
    returned_to = tuple(a for a in envelope if a.lower().startswith(verp.PREFIX))
    if returned_to:
        return [Report("soft", "", None, detail, returned_to)]
    return None if failed is None else []


def _delivery_status(msg: EmailMessage, original: str | None) -> list[Report] | None:
    """A report for each recipient's block that says delivery failed or is delayed (soft),
    none for one that says it succeeded; None (held) if no block names a recipient and
    one of these Actions.

    `Action: failed` with a 5.x.x Status is hard only if the Status and Diagnostic-Code
    show a permanent code and no transient one, the rule for plain text too
    (plain_bounces.permanent): Exim says Status: 5.0.0 of every failure, also of an
    address it gave up on after days of 4xx deferrals (a mailbox full for a week, its 452
    in the Diagnostic-Code) or of failed connections (no Diagnostic-Code), and that
    address may well work."""
    reports = []
    read = False
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        for block in _blocks(part):
            original_recipient = _address(block.get("Original-Recipient") or "")
            recipient = _address(block.get("Final-Recipient") or "") or original_recipient
            action = _action(block)
            if not recipient or action is None:
                continue
            read = True
            if action == "succeeded":
                continue
            status = str(block.get("Status", "")).strip()
            diagnostic = str(block.get("Diagnostic-Code", ""))
            words = f"{status}\n{diagnostic}"
            hard = action == "failed" and status.startswith("5") and plain_bounces.permanent(words)
            detail = f"{action} {status} {diagnostic}".strip()
            kind = "hard" if hard else "soft"
            reports.append(
                Report(kind, recipient, original, detail, original_recipient=original_recipient)
            )
    return reports if read else None


def _action(block: Message) -> str | None:
    """What a recipient's block says of its delivery, by its Action: "failed", "delayed"
    or "succeeded"; None for any other Action, or none."""
    action = str(block.get("Action", "")).strip().lower()
    if action.startswith(FAILED):
        return "failed"
    if action.startswith(DELAYED):
        return "delayed"
    if action.startswith(SUCCEEDED):
        return "succeeded"
    return None


def _feedback(msg: EmailMessage, original: str | None) -> list[Report]:
    for part in msg.walk():
        if part.get_content_type() != "message/feedback-report":
            continue
        fields = _fields(part)
        if fields.get("feedback-type", "").lower() in ("abuse", "fraud"):
            recipient = _address(fields.get("original-rcpt-to", ""))
            mail_from = _address(fields.get("original-mail-from", ""))
            kind = fields.get("feedback-type", "abuse")
            return [
                Report("complaint", recipient, original, kind, (mail_from,) if mail_from else ())
            ]
    return []


def _dated(msg: EmailMessage, *others: str) -> datetime | None:
    """The earliest date a report gives: its own Date, the Arrival-Date of the original
    at the server reporting on it, or `others` it quotes. The original was sent before
    any of them (give or take drip.bounces.CLOCK_SKEW)."""
    stamps = [_own_date(msg), *others]
    for part in msg.walk():
        if part.get_content_type() in REPORT_PARTS:
            stamps.append(_fields(part).get("arrival-date", ""))
    dates = [when for when in map(_date, stamps) if when is not None]
    return min(dates, default=None)


def _own_date(msg: EmailMessage) -> str:
    """The report's Date header; "" for one Python cannot read: its parser turns an absurd
    date ("+99999999999999999999") into an OverflowError when the header is read, not
    into a defect as it does other bad dates."""
    try:
        return str(msg.get("Date", ""))
    except OverflowError:
        return ""


def _date(text: str) -> datetime | None:
    """An RFC 5322 date; one without a zone ("-0000") is taken as UTC. Anyone can write a
    bounce, so any text may come: one too large for a C integer raises OverflowError."""
    try:
        when = parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, OverflowError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _envelope(msg: EmailMessage) -> tuple[str, ...]:
    values = [str(v) for name in ENVELOPE_HEADERS for v in msg.get_all(name, [])]
    return tuple(address for _, address in getaddresses(values) if address)


def _blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    return [b for b in payload if isinstance(b, Message)] if isinstance(payload, list) else []


def _fields(part: Message) -> dict[str, str]:
    """An ARF report's fields, whether the parser gave blocks or text."""
    fields: dict[str, str] = {}
    for block in _blocks(part):
        fields.update({k.lower(): str(v) for k, v in block.items()})
    if not fields:
        text = part.get_payload(decode=True) or b""
        for line in text.decode(errors="replace").splitlines():
            name, _, value = line.partition(":")
            if value:
                fields[name.strip().lower()] = value.strip()
    return fields


def _original_headers(msg: EmailMessage) -> str:
    """The header section of the original message a report embeds, as text; "" if none."""
    for part in msg.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            inner = part.get_payload()
            embedded = inner[0] if isinstance(inner, list) and inner else None
            if isinstance(embedded, Message):
                fields = embedded.items()
                return "".join(f"{name}: {str(value).strip()}\n" for name, value in fields)
        if kind == "text/rfc822-headers":
            return part.get_payload(decode=True).decode(errors="replace")
    return ""


def _marks(headers: str) -> tuple[str | None, str | None]:
    """The Message-ID and List-Unsubscribe token in the original's header section."""
    return _first(MESSAGE_ID, headers), _first(UNSUBSCRIBE_TOKEN, headers)


def _first(pattern: re.Pattern[str], text: str) -> str | None:
    found = pattern.search(text)
    return found.group(1) if found else None


def _address(field: object) -> str:
    """The address in a "rfc822; someone@example.com" field."""
    text = str(field).strip()
    return text.split(";", 1)[1].strip().strip("<>") if ";" in text else text.strip("<>")

"""Bounces and complaints: what a report says, and what drip does about it.

Reports come from a mailbox, as delivery status notifications (RFC 3464) and abuse
reports (ARF, RFC 5965) parsed here, or from a provider's webhook (drip.webhooks); all
become the same `Report`s and go through `apply`.

A report is tied to what it is about by the surest mark it carries (standards BNC-04):
the Message-ID of the original message (keyed to its delivery and stored with it), then
the subscriber its List-Unsubscribe link names (signed), then the VERP envelope sender
it was returned to (keyed); only when none is there does the reported address decide.
Without a delivery, a report is about the last email sent to the subscriber before the
report's own date (its Arrival-Date or Date, give or take CLOCK_SKEW), never about one
sent after it; an undated one is about no email. So a report applied again (a crash
before its message was deleted, two runs at once) lands on the same email and changes
nothing more, and a late one cannot count against an email that never bounced. A hard
bounce known only by its address that is about no email bars nothing (`apply`).
The kinds:

- hard (Action: failed with a 5.x.x status, a provider's "Permanent"/"HardBounce"): the
  subscriber stops at once and the address goes on the suppression list;
- complaint (ARF abuse, "Complaint"/"SpamComplaint"): unsubscribed, address suppressed;
  the delivery keeps when drip learned of it, which the complaint-rate guard counts by;
- soft (delayed, 4.x.x, "Transient"/"SoftBounce"): marks the delivery only. When the
  subscriber's last three sent emails all soft-bounced, it counts as a hard bounce
  (stopped, address suppressed: providers hold repeated bounces against the sender). Any
  later email that is not reported bouncing breaks the run. The mark is per delivery,
  so a report received twice (providers retry) counts once.

A bounce that is not a machine-readable DSN is read by drip.plain_bounces; each address
it finds failed is tied to its email by the same marks as a DSN (those of the original
it returns, the VERP address, else the address and a date). What it cannot read is
attributed by its VERP address alone, as a soft bounce: three in a row stop the
subscriber anyway.

A multipart/report that cannot be read is "held" (`is_report` true, nothing parsed) for
the caller to keep and flag; messages that are none of these are counted as unreadable
(not a report). No input raises.

A Maildir is read once (`process_maildir`): each message is applied in its own
transaction and deleted once that commits, whether it was a report or not (an
auto-reply): kept, it would be read again on every run, and it holds an address that an
erasure (drip.privacy.erase) cannot reach. Only held reports stay, marked Seen and
Flagged for a person to read, skipped by later runs, and deleted HELD_FOR after they
arrived, so an erased address is gone from the Maildir within a month.
"""

from __future__ import annotations

import email
import logging
import mailbox
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage, Message
from email.policy import default as default_policy
from email.utils import getaddresses, parsedate_to_datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drip import plain_bounces, verp
from drip.clock import Clock
from drip.db import FOR_NO_KEY_UPDATE, SessionFactory, transaction
from drip.errors import DripError
from drip.models import ConsentMethod, Delivery, DeliveryStatus, Subscriber
from drip.privacy import suppress
from drip.subscriptions import mark_bounced, stop_bouncing, unsubscribe
from drip.tokens import UNSUBSCRIBE, Tokens

log = logging.getLogger(__name__)
MESSAGE_ID = re.compile(r"^Message-ID:\s*(<[^>]+>)", re.IGNORECASE | re.MULTILINE)
UNSUBSCRIBE_TOKEN = re.compile(
    r"^List-Unsubscribe:\s*<[^>\s]*/unsubscribe/([\w.-]+)>", re.IGNORECASE | re.MULTILINE
)
ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "To", "Return-Path")
"""Where a bounce shows the address it was returned to (a VERP address, if drip used one)."""
SOFT_RUN = 3
CLOCK_SKEW = timedelta(minutes=5)
"""How far a report's date may fall before drip recorded the email it is about: the
reporting server's clock may be behind drip's, and its Arrival-Date (whole seconds) is
taken before drip records the send."""
HELD_FOR = timedelta(days=30)
"""How long a held report stays in the Maildir: time for a person to read it, and within
the month an erasure may take (GDPR Art. 12(3)), since drip cannot find the address in it."""
REPORT_PARTS = ("message/delivery-status", "message/feedback-report")


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


@dataclass
class Tally:
    hard: int = 0
    soft: int = 0
    complaints: int = 0
    unmatched: int = 0
    unreadable: int = 0
    held: int = 0
    stopped: int = 0
    expired: int = 0

    def count(self, kind: str) -> None:
        if kind == "hard":
            self.hard += 1
        elif kind == "complaint":
            self.complaints += 1
        else:
            self.soft += 1


def parse(raw: bytes) -> list[Report]:
    """The reports in one message: from a DSN or ARF report, or from a bounce in a format
    of its own (`_plain_bounce`); empty for anything else."""
    msg = email.message_from_bytes(raw, policy=default_policy)
    envelope = _envelope(msg)
    if msg.get_content_type() != "multipart/report":
        return _plain_bounce(raw, msg, envelope)
    try:
        reports = _report(msg)
    except Exception as exc:  # a malformed report must not stop the batch behind it
        log.warning("unparseable report (%s: %s); held", type(exc).__name__, exc)
        return []
    return [replace(r, envelope=envelope + r.envelope) for r in reports]


def is_report(raw: bytes) -> bool:
    """Whether a message claims to be a DSN or ARF report (so, if `parse` found nothing
    in it, one to keep for a person to read rather than drop)."""
    msg = email.message_from_bytes(raw, policy=default_policy)
    return msg.get_content_type() == "multipart/report"


def _report(msg: EmailMessage) -> list[Report]:
    report_type = msg.get_param("report-type", "")
    original, token = _marks(_original_headers(msg))
    if report_type == "delivery-status":
        reports = _delivery_status(msg, original)
    elif report_type == "feedback-report":
        reports = _feedback(msg, original)
    else:
        return []
    dated = _dated(msg)
    return [replace(r, unsubscribe_token=token, dated=dated) for r in reports]


def _plain_bounce(raw: bytes, msg: EmailMessage, envelope: tuple[str, ...]) -> list[Report]:
    """A bounce in a format of its own: the addresses drip.plain_bounces finds in it, else
    one soft bounce if it came back to a VERP address.

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
    return [Report("soft", "", None, detail, returned_to)] if returned_to else []


def process_maildir(
    box: mailbox.Maildir,
    sessions: SessionFactory,
    *,
    secret: str,
    tokens: Tokens,
    clock: Clock,
    tally: Tally,
) -> None:
    """Each message not yet Seen, once: applied and committed, then deleted (held ones
    marked Seen and Flagged instead). A crash between the commit and the delete leaves
    the message to the next run, which applies it again to the same email, to no effect."""
    for key in list(box.iterkeys()):  # iterating a Maildir yields messages, not keys
        try:
            message = box.get_message(key)
            raw = box.get_bytes(key)
        except (KeyError, FileNotFoundError):  # a run alongside took it
            continue
        if "S" in message.get_flags():
            if "F" in message.get_flags() and _expired(message, clock.now()):
                box.discard(key)
                tally.expired += 1
            continue
        with transaction(sessions) as session:
            done = process_message(
                session, raw, secret=secret, tokens=tokens, now=clock.now(), tally=tally
            )
        if done:
            box.discard(key)
        else:
            message.set_subdir("cur")
            message.add_flag("FS")
            box[key] = message


def _expired(message: mailbox.MaildirMessage, now: datetime) -> bool:
    """Held for HELD_FOR since it arrived (its file's time, which holding it keeps)."""
    return now.timestamp() - message.get_date() > HELD_FOR.total_seconds()


def process_message(
    session: Session,
    raw: bytes,
    *,
    secret: str,
    tokens: Tokens,
    now: datetime,
    tally: Tally,
) -> bool:
    """Apply the reports in one message; False for a report that cannot be read, to be
    held for a person rather than dropped."""
    reports = parse(raw)
    if not reports:
        if is_report(raw):
            tally.held += 1
            return False
        tally.unreadable += 1
    apply(session, reports, secret=secret, tokens=tokens, now=now, tally=tally)
    return True


def apply(
    session: Session,
    reports: Iterable[Report],
    *,
    secret: str,
    tokens: Tokens,
    now: datetime,
    tally: Tally,
) -> None:
    """Record each report against the subscribers and email it is about.

    A hard bounce known only by its address bars it only for a subscriber drip had mailed
    before the report was made (an email it is tied to). Without VERP, bounces come back
    to the From mailbox, which is also the sender's own: a bounce of their personal mail
    to an address drip had not mailed yet (or an undated one) is no sign about drip's.
    """
    for report in reports:
        delivery, subscriber_id = _attribute(session, report, secret=secret, tokens=tokens)
        targets = [
            (subscriber, delivery or _sent_before(session, subscriber.id, report.dated))
            for subscriber in _subscribers(session, report, subscriber_id)
        ]
        if report.kind == "hard" and subscriber_id is None:
            targets = [(subscriber, target) for subscriber, target in targets if target is not None]
        if not targets:
            tally.unmatched += 1
            continue
        for subscriber, target in targets:
            if _record(session, subscriber, target, report, secret=secret, now=now):
                tally.stopped += 1
        tally.count(report.kind)


def _record(
    session: Session,
    subscriber: Subscriber,
    delivery: Delivery | None,
    report: Report,
    *,
    secret: str,
    now: datetime,
) -> bool:
    """Apply one report to one subscriber; True when a soft bounce stopped them. A late
    soft report never downgrades a delivery already marked hard or complained about, and
    one tied to no email counts toward no run.

    A complaint is dated `now`, when drip learns of it, not by the report's own date: one
    read after midnight about the evening before then counts on a day the guard still
    judges (drip.complaints). The first report of it keeps its date: a repeat (a provider
    retrying, a report read again) moved to a later day would count there again.
    """
    if delivery is not None and (report.kind != "soft" or delivery.bounce in (None, "soft")):
        delivery.bounce = report.kind
    if delivery is not None and report.kind == "complaint" and delivery.complained_at is None:
        delivery.complained_at = now
    if report.kind == "hard":
        mark_bounced(session, subscriber, now, secret=secret)
    elif report.kind == "complaint":
        unsubscribe(session, subscriber.id, now, method=ConsentMethod.COMPLAINT)
        suppress(session, secret, subscriber.email, "complaint", now=now)
    elif delivery is not None and _soft_run(session, subscriber.id):
        return stop_bouncing(session, subscriber, now, secret=secret)
    return False


def _attribute(
    session: Session, report: Report, *, secret: str, tokens: Tokens
) -> tuple[Delivery | None, int | None]:
    """The delivery and subscriber a report is about, by its surest mark (BNC-04);
    (None, None) leaves it to the reported address."""
    if report.message_id:
        delivery = session.scalars(
            sa.select(Delivery).where(Delivery.message_id == report.message_id)
        ).first()
        if delivery is not None:
            return delivery, delivery.subscriber_id
    subscriber_id = _named_by_link(report, tokens)
    if subscriber_id is not None:
        return None, subscriber_id
    delivery = _by_verp(session, report, secret)
    return delivery, delivery.subscriber_id if delivery else None


def _named_by_link(report: Report, tokens: Tokens) -> int | None:
    """The subscriber the original's List-Unsubscribe link names, if it is genuine."""
    if not report.unsubscribe_token:
        return None
    try:
        payload = tokens.read(UNSUBSCRIBE, report.unsubscribe_token)
    except DripError:
        log.warning("unsubscribe_token_rejected: a report embeds a link that does not verify")
        return None
    return payload[0] if len(payload) == 1 else None


def _by_verp(session: Session, report: Report, secret: str) -> Delivery | None:
    for address in report.envelope:
        delivery_id = verp.delivery_id(secret, address)
        if delivery_id is not None:
            return session.get(Delivery, delivery_id)
        if address.lower().startswith(verp.PREFIX):
            log.warning("verp_token_rejected: a report came back to a token that does not verify")
    return None


def _subscribers(session: Session, report: Report, subscriber_id: int | None) -> list[Subscriber]:
    """Locked, first (drip's lock order is subscriber, then delivery), and an address's
    several in id order, as an erasure locks them (drip.privacy.erase): in the order a
    scan happens to read them, this could hold one the erasure waits for while waiting
    for one it holds."""
    query = sa.select(Subscriber).order_by(Subscriber.id).with_for_update(**FOR_NO_KEY_UPDATE)
    if subscriber_id is not None:
        return list(session.scalars(query.where(Subscriber.id == subscriber_id)))
    if not report.recipient:
        return []
    address = report.recipient.strip().lower()
    return list(session.scalars(query.where(Subscriber.email == address)))


def _sent_before(session: Session, subscriber_id: int, dated: datetime | None) -> Delivery | None:
    """The email a report naming only an address is about: the last one sent before the
    report was made. Not the last one sent before it is read, which may be newer and fine
    (a report read again, or late); so an undated report is about none."""
    if dated is None:
        return None
    sent_before = _sent(subscriber_id).where(Delivery.sent_at <= dated + CLOCK_SKEW)
    return session.scalars(sent_before.limit(1)).first()


def _soft_run(session: Session, subscriber_id: int) -> bool:
    """Did the subscriber's last SOFT_RUN sent emails all soft-bounce?"""
    recent = session.scalars(_sent(subscriber_id).limit(SOFT_RUN)).all()
    return len(recent) == SOFT_RUN and all(d.bounce == "soft" for d in recent)


def _sent(subscriber_id: int) -> sa.Select[tuple[Delivery]]:
    return (
        sa.select(Delivery)
        .where(Delivery.subscriber_id == subscriber_id, Delivery.status == DeliveryStatus.SENT)
        .order_by(Delivery.sent_at.desc(), Delivery.id.desc())
    )


def _delivery_status(msg: EmailMessage, original: str | None) -> list[Report]:
    reports = []
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        for block in _blocks(part):
            recipient = _address(
                block.get("Final-Recipient") or block.get("Original-Recipient") or ""
            )
            action = str(block.get("Action", "")).strip().lower()
            status = str(block.get("Status", "")).strip()
            if not recipient or not action:
                continue
            hard = action == "failed" and status.startswith("5")
            detail = f"{action} {status} {block.get('Diagnostic-Code', '')}".strip()
            reports.append(Report("hard" if hard else "soft", recipient, original, detail))
    return reports


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
    any of them (give or take CLOCK_SKEW)."""
    stamps = [str(msg.get("Date", "")), *others]
    for part in msg.walk():
        if part.get_content_type() in REPORT_PARTS:
            stamps.append(_fields(part).get("arrival-date", ""))
    dates = [when for when in map(_date, stamps) if when is not None]
    return min(dates, default=None)


def _date(text: str) -> datetime | None:
    """An RFC 5322 date; one without a zone ("-0000") is taken as UTC."""
    try:
        when = parsedate_to_datetime(text.strip())
    except (TypeError, ValueError):
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

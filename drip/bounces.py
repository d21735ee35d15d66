"""Bounces and complaints from a mailbox: delivery status notifications (RFC 3464) and
abuse reports (ARF, RFC 5965).

A report is tied to its delivery by the Message-ID of the original message (drip's own,
so it is trustworthy); only when that is missing does the reported address decide. A
hard bounce (Action: failed, Status 5.x.x) stops the subscriber and bars the address; a
complaint unsubscribes and bars it; a delayed or 4.x.x report changes nothing. Reports
that are not DSN or ARF are counted as unreadable and left alone; none raises.
"""

from __future__ import annotations

import email
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage, Message
from email.policy import default as default_policy

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drip.models import Delivery, Subscriber
from drip.privacy import suppress
from drip.subscriptions import mark_bounced, unsubscribe

MESSAGE_ID = re.compile(r"^Message-ID:\s*(<[^>]+>)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Report:
    kind: str  # "hard", "soft" or "complaint"
    recipient: str
    message_id: str | None
    detail: str


@dataclass
class Tally:
    hard: int = 0
    soft: int = 0
    complaints: int = 0
    unmatched: int = 0
    unreadable: int = 0


def parse(raw: bytes) -> list[Report]:
    """The reports in one message; empty when it is neither a DSN nor an ARF report."""
    msg = email.message_from_bytes(raw, policy=default_policy)
    if msg.get_content_type() != "multipart/report":
        return []
    report_type = msg.get_param("report-type", "")
    original = _original_message_id(msg)
    if report_type == "delivery-status":
        return _delivery_status(msg, original)
    if report_type == "feedback-report":
        return _feedback(msg, original)
    return []


def apply(
    session: Session, reports: Iterable[Report], *, secret: str, now: datetime, tally: Tally
) -> None:
    for report in reports:
        if report.kind == "soft":
            tally.soft += 1
            continue
        subscribers = _subscribers(session, report)
        if not subscribers:
            tally.unmatched += 1
            continue
        for subscriber in subscribers:
            if report.kind == "hard":
                mark_bounced(session, subscriber, now, secret=secret)
            else:
                unsubscribe(session, subscriber.id, now)
                suppress(session, secret, subscriber.email, "complaint", now=now)
        if report.kind == "hard":
            tally.hard += 1
        else:
            tally.complaints += 1


def _subscribers(session: Session, report: Report) -> list[Subscriber]:
    if report.message_id:
        subscriber_id = session.scalar(
            sa.select(Delivery.subscriber_id).where(Delivery.message_id == report.message_id)
        )
        if subscriber_id is not None:
            return [session.get_one(Subscriber, subscriber_id)]
    if not report.recipient:
        return []
    return list(
        session.scalars(sa.select(Subscriber).where(Subscriber.email == report.recipient.lower()))
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
            return [Report("complaint", recipient, original, fields.get("feedback-type", "abuse"))]
    return []


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


def _original_message_id(msg: EmailMessage) -> str | None:
    for part in msg.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            inner = part.get_payload()
            embedded = inner[0] if isinstance(inner, list) and inner else None
            if isinstance(embedded, Message) and embedded.get("Message-ID"):
                return str(embedded["Message-ID"]).strip()
        if kind == "text/rfc822-headers":
            found = MESSAGE_ID.search(part.get_payload(decode=True).decode(errors="replace"))
            if found:
                return found.group(1)
    return None


def _address(field: object) -> str:
    """The address in a "rfc822; someone@example.com" field."""
    text = str(field).strip()
    return text.split(";", 1)[1].strip().strip("<>") if ";" in text else text.strip("<>")

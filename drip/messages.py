"""Building the MIME message for a rendered email, with the headers mailbox providers expect.

multipart/alternative with the text part first and the HTML part last (RFC 2046: in
increasing order of preference); a Message-ID derived from the delivery id, so a retry
of one delivery reuses it and bounces map back to it; RFC 8058 one-click unsubscribe.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage

from drip.email_policy import POLICY
from drip.headers import check_header_text
from drip.rendering import RenderedEmail


@dataclass(frozen=True)
class Envelope:
    """Who the message is from and to, and the per-delivery identifiers."""

    sender: Address
    recipient: Address
    list_id: str
    feedback_id: str
    unsubscribe_url: str
    date: datetime


BOUNDARY = "=_drip_alternative"
"""The multipart boundary of every message. Both parts are quoted-printable, where "=" only
ever starts a hex pair or ends a line (RFC 2045 6.7), so "=_" cannot occur in a body: no
random boundary to check against each body, and one Content-Type header shared by all."""


def message_id(delivery_id: int, *, secret: str, domain: str) -> str:
    """A Message-ID stable per delivery, on the sending domain (never the host's FQDN)."""
    tag = hmac.new(secret.encode(), f"d{delivery_id}".encode(), hashlib.sha256).hexdigest()[:10]
    return f"<d{delivery_id}.{tag}@{domain}>"


def recipient_address(email: str, first_name: str) -> Address:
    check_header_text(first_name, what="first_name")
    local, _, domain = email.rpartition("@")
    return Address(display_name=first_name, username=local, domain=domain)


def build_message(email: RenderedEmail, envelope: Envelope, *, msgid: str) -> EmailMessage:
    """The message for one email. Values that repeat across emails go in as text, the
    sender too, so POLICY parses each once; the date goes in as a datetime, which the
    Date header would otherwise parse back out of its own text."""
    msg = EmailMessage(policy=POLICY)
    msg["From"] = str(envelope.sender)
    msg["To"] = envelope.recipient
    msg["Subject"] = email.subject
    msg["Date"] = envelope.date
    msg["Message-ID"] = msgid
    msg["Auto-Submitted"] = "auto-generated"
    msg["List-Id"] = envelope.list_id
    msg["Feedback-ID"] = envelope.feedback_id
    msg["List-Unsubscribe"] = f"<{envelope.unsubscribe_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(email.text + "\n", subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.make_alternative(boundary=BOUNDARY)
    msg.add_alternative(email.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg

"""Building the wire bytes of a rendered email, with the headers mailbox providers expect.

multipart/alternative with the text part first and the HTML part last (RFC 2046: in
increasing order of preference); a Message-ID derived from the delivery id, so a retry
of one delivery reuses it and bounces map back to it; RFC 8058 one-click unsubscribe.

drip sends this one structure only, so it writes the bodies and the MIME structure
itself: the generator writes a body in hundreds of small pieces and the standard library
encodes quoted-printable in pure Python, together about a millisecond per email. Every
header is still set on an EmailMessage and written by the standard library's header
objects (drip.email_policy.written_headers, SEC-07), and tests compare the whole with
what EmailMessage writes.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage

from drip.email_policy import POLICY, written_headers
from drip.headers import FIRST_NAME, check_header_text
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

_MULTIPART = f'multipart/alternative; boundary="{BOUNDARY}"'


def _part(subtype: str, *, mime_version: bool = False) -> bytes:
    """The boundary line and headers of a part, as EmailMessage wrote them, once."""
    part = EmailMessage(policy=POLICY)
    part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
    part["Content-Transfer-Encoding"] = "quoted-printable"
    if mime_version:
        part["MIME-Version"] = "1.0"
    return f"\r\n--{BOUNDARY}\r\n".encode() + written_headers(part) + b"\r\n"


_TEXT_PART = _part("plain")
_HTML_PART = _part("html", mime_version=True)
"""The HTML part carries the MIME-Version header EmailMessage.add_alternative gave it
(harmless in a part, RFC 2045 4), so the bytes stay what they were."""
_END = f"\r\n--{BOUNDARY}--\r\n".encode()
_LONG_LINE = re.compile(rb"(?m)^(.{74})(=20\r\n|=09\r\n)")
"""A 77-character line: binascii encodes a space or tab before a line end after it has
counted the line as full."""


def message_id(delivery_id: int, *, secret: str, domain: str) -> str:
    """A Message-ID stable per delivery, on the sending domain (never the host's FQDN)."""
    tag = hmac.new(secret.encode(), f"d{delivery_id}".encode(), hashlib.sha256).hexdigest()[:10]
    return f"<d{delivery_id}.{tag}@{domain}>"


def recipient_address(email: str, first_name: str) -> Address:
    check_header_text(first_name, field="first_name", label=FIRST_NAME)
    local, _, domain = email.rpartition("@")
    return Address(display_name=first_name, username=local, domain=domain)


def build_message(
    email: RenderedEmail, envelope: Envelope, *, msgid: str, idempotency_header: str = ""
) -> bytes:
    """The message for one email as it goes on the wire (CRLF line ends), unsigned. With
    `idempotency_header` named, that header closes the top-level headers. Values that
    repeat across emails go in as text, the sender too, so POLICY parses each once; the
    date goes in as a datetime, which the Date header would otherwise parse back out of
    its own text."""
    head = EmailMessage(policy=POLICY)
    head["From"] = str(envelope.sender)
    head["To"] = str(envelope.recipient)
    head["Subject"] = email.subject
    head["Date"] = envelope.date
    head["Message-ID"] = msgid
    head["Auto-Submitted"] = "auto-generated"
    head["List-Id"] = envelope.list_id
    head["Feedback-ID"] = envelope.feedback_id
    head["List-Unsubscribe"] = f"<{envelope.unsubscribe_url}>"
    head["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    head["MIME-Version"] = "1.0"
    head["Content-Type"] = _MULTIPART
    if idempotency_header:
        head[idempotency_header] = idempotency_key(msgid)
    return b"".join(
        (
            written_headers(head),
            _TEXT_PART,
            quoted_printable(email.text + "\n"),
            _HTML_PART,
            quoted_printable(email.html),
            _END,
        )
    )


def idempotency_key(msgid: str) -> str:
    """The DRIP_IDEMPOTENCY_HEADER value: the same on every attempt of one delivery, so a
    relay that dedupes (Resend-Idempotency-Key, X-EE-Idempotency-Key...) drops a resend
    after an ambiguous outcome. The Message-ID's signed part, not the bare delivery id:
    two installations sharing one provider account must never collide."""
    return msgid.strip("<>")


def quoted_printable(text: str) -> bytes:
    """`text` in UTF-8 as a quoted-printable body (RFC 2045 6.7), ending in a line end.

    Lines are split where EmailMessage split them (CR, LF or CRLF, so a lone CR ends a
    line too) and end in CRLF; binascii (C) encodes "=", bytes outside printable ASCII
    and whitespace before a line end, and keeps lines to 76 characters once _LONG_LINE
    is split. "=" only ever starts a hex pair or a soft line break, so no line can be
    the boundary. A line starting with "From " stays as it is, as EmailMessage left it
    (mbox quoting is the mailbox's business); a leading "." is the SMTP client's
    (smtplib doubles it) and binascii encodes a line that is only ".".
    """
    body = binascii.b2a_qp(b"\r\n".join(text.encode().splitlines()) + b"\r\n")
    if b"=20\r\n" in body or b"=09\r\n" in body:
        body = _LONG_LINE.sub(rb"\1=\r\n\2", body)
    return body

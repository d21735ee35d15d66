"""Building the MIME message for a rendered email, with the headers mailbox providers expect.

multipart/alternative with the text part first and the HTML part last (RFC 2046: in
increasing order of preference); a Message-ID derived from the delivery id, so a retry
of one delivery reuses it and bounces map back to it; RFC 8058 one-click unsubscribe.

The bytes are written directly rather than through `email.message.EmailMessage`: its
header parsing and pure-Python quoted-printable cost ~1.5 ms a message, more than
rendering, the database and the SMTP hand-over together (docs/performance.md). What
stays the standard library's: RFC 2047 encoded words (`email.header.Header`), address
quoting (`Address`), dates (`format_datetime`) and quoted-printable (`binascii.b2a_qp`,
in C). Every header value is checked for line breaks before it is written, on top of
the checks names and subjects already passed (drip.headers).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.headerregistry import Address
from email.utils import format_datetime

from drip.headers import check_header_text
from drip.rendering import RenderedEmail

CRLF = "\r\n"


@dataclass(frozen=True)
class Envelope:
    """Who the message is from and to, and the per-delivery identifiers."""

    sender: Address
    recipient: Address
    list_id: str
    feedback_id: str
    unsubscribe_url: str
    date: datetime


@dataclass(frozen=True)
class Message:
    """A built message: its Message-ID, and its bytes as they go on the wire (CRLF line
    ends, 7-bit, not yet DKIM-signed)."""

    message_id: str
    raw: bytes


def message_id(delivery_id: int, *, secret: str, domain: str) -> str:
    """A Message-ID stable per delivery, on the sending domain (never the host's FQDN)."""
    tag = hmac.new(secret.encode(), f"d{delivery_id}".encode(), hashlib.sha256).hexdigest()[:10]
    return f"<d{delivery_id}.{tag}@{domain}>"


def recipient_address(email: str, first_name: str) -> Address:
    check_header_text(first_name, what="first_name")
    local, _, domain = email.rpartition("@")
    return Address(display_name=first_name, username=local, domain=domain)


def build_message(email: RenderedEmail, envelope: Envelope, *, msgid: str) -> Message:
    boundary = f"=={secrets.token_hex(12)}=="
    headers = [
        ("From", _address(envelope.sender, "From")),
        ("To", _address(envelope.recipient, "To")),
        ("Subject", _text(email.subject, "Subject")),
        ("Date", format_datetime(envelope.date)),
        ("Message-ID", msgid),
        ("Auto-Submitted", "auto-generated"),
        ("List-Id", envelope.list_id),
        ("Feedback-ID", envelope.feedback_id),
        ("List-Unsubscribe", f"<{envelope.unsubscribe_url}>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
    ]
    head = "".join(f"{name}: {_checked(name, value)}{CRLF}" for name, value in headers)
    body = b"".join(
        (
            _part(boundary, "text/plain", email.text + "\n"),
            _part(boundary, "text/html", email.html),
            f"--{boundary}--{CRLF}".encode(),
        )
    )
    # encode("ascii") refuses any header value that was neither ASCII nor encoded above
    return Message(msgid, head.encode("ascii") + CRLF.encode() + body)


def _address(address: Address, header: str) -> str:
    """`Name <local@domain>`: specials quoted, a non-ASCII name as RFC 2047 encoded words,
    an internationalised domain in its ASCII (IDNA) form."""
    _checked(header, address.display_name)
    spec = f"{address.username}@{address.domain.encode('idna').decode('ascii')}"
    if not address.display_name:
        return spec
    if address.display_name.isascii():
        return str(Address(display_name=address.display_name, addr_spec=spec))
    return f"{_encoded(address.display_name, header)} <{spec}>"


def _text(value: str, header: str) -> str:
    """Unstructured text: as it is when ASCII, else encoded words; folded under 78 columns."""
    _checked(header, value)
    if value.isascii():
        return Header(value, "us-ascii", header_name=header).encode(linesep=CRLF)
    return _encoded(value, header)


def _encoded(value: str, header: str) -> str:
    return Header(value, "utf-8", header_name=header).encode(linesep=CRLF)


def _checked(name: str, value: str) -> str:
    """Refuse a value that would end its header line early (folds we add are fine)."""
    unfolded = value.replace(CRLF + " ", " ")
    if "\r" in unfolded or "\n" in unfolded:
        raise ValueError(f"{name}: not a safe header value")
    return value


def _part(boundary: str, content_type: str, text: str) -> bytes:
    """One quoted-printable UTF-8 part, ending with a line break as the standard library's
    parts do. QP keeps every line under 77 characters and turns every "=" into "=3D", so
    no line of it can look like the boundary. The CRLF after it belongs to the next
    boundary line (RFC 2046 5.1.1)."""
    normalised = text.replace("\r\n", "\n").replace("\r", "\n")
    if not normalised.endswith("\n"):
        normalised += "\n"
    encoded = binascii.b2a_qp(normalised.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")
    head = (
        f"--{boundary}{CRLF}"
        f'Content-Type: {content_type}; charset="utf-8"{CRLF}'
        f"Content-Transfer-Encoding: quoted-printable{CRLF}{CRLF}"
    )
    return head.encode("ascii") + encoded + b"\r\n"

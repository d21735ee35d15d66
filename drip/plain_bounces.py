"""Bounces written for people: whether a message is one, and what its text says failed.

A bounce that is not a machine-readable DSN (a plain-text "undeliverable" note, as qmail,
older Exim and Postfix and some providers still send) must first look like a bounce (from
MAILER-DAEMON or postmaster, or a bounce-like subject on a message not marked
Auto-Submitted), because vacation replies and human answers go back to the return path
too and must never count against anyone. Then flufl.bounce, Mailman's detectors for such
formats, names the addresses that failed, permanently or not, as standards BNC-02 asks.
A permanent one is a hard bounce only when the server's own words about it show a
permanent SMTP code and no transient one (`_permanent`).
"""

from __future__ import annotations

import email
import logging
import re
from collections.abc import Iterable, Iterator
from email.message import EmailMessage, Message
from email.utils import getaddresses

from flufl.bounce import all_failures

log = logging.getLogger(__name__)
BOUNCE_SENDERS = ("mailer-daemon", "postmaster")
BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (status notification|failure|has failed)|returned mail"
    r"|failure notice|mail delivery (failed|subsystem)|could not be delivered|non-?delivery",
    re.IGNORECASE,
)
WARNING_SUBJECT = re.compile(
    r"^\s*(?:(?:returned mail:\s*)?warning:|delayed\b|(?:mail |message )?delivery delayed\b"
    r"|delivery status notification \(delay\))",
    re.IGNORECASE,
)
"""A delay warning's subject (Exim's "Warning: message ... delayed 24 hours", Sendmail's
"Warning: could not send message for past 4 hours", Postfix's "Delayed Mail (still being
retried)", Exchange's "Delivery delayed:", Gmail's "Delivery Status Notification
(Delay)"): the detectors take some warnings for failures. Only at its start: a failure's
subject may quote the original's ("Undeliverable: Warning signs of burnout"), and every
failure of that lesson would count as soft."""
_REPLY = r"[45][0-5]\d"
_STATUS = r"[45]\.[0-7]\.\d{1,3}"
SMTP_CODES = re.compile(
    r"(?:^[ \t]*(?:<<<[ \t]*)?|[;#'][ \t]*|:[ \t]+)"
    rf"((?:{_REPLY}(?:[ \t]+|-))?{_STATUS}|{_REPLY})"
    r"(?![\w@]|[.-]\d|[ \t]+\d)",
    re.MULTILINE,
)
"""A failed reply as mail systems quote it, in group 1: an SMTP reply code ("550", Gmail's
"550-" of a reply of several lines), an enhanced status code ("5.1.1"), or both ("550
5.1.1", "550-5.1.1"). Only where a reply is quoted: at the start of a line (Exim's and
Gmail's; Sendmail's transcript marks it "<<<"), after "said:" (Postfix, qmail) or any
colon and a space (Exim's "after RCPT TO:<x>: 550", Sendmail's "(reason: 550"), after
";" (a DSN's "smtp; 550"), "#" (qmail's "(#5.1.1)") or a quote (Exchange's "returned
'550"). A number anywhere else is no reply: "(after 450 seconds)", "size 512", "(555)",
"415-555-0100" or "415 555 0100" (a number that another follows), "user@452.pl" or a
date "4.5.24" would make a 550 soft (a 4), or a failure with no code hard (a 5)."""
COPY_MARK = re.compile(
    r"^[ \t]*-{2,}[ \t]*(?:.*\bcopy\b|(?:original|unsent) message follows"
    r"|message header follows|(?:start of )?returned (?:message|mail)\b)",
    re.IGNORECASE | re.MULTILINE,
)
"""The line a mail system puts before the original it returns: qmail's "--- Below this
line is a copy of the message.", Exim's "------ This is a copy of the message, including
all the headers. ------", Sendmail's "----- Original message follows -----" (or "Message
header follows", or "Unsent message follows" in version 5), Lotus Domino's "-------
Returned Message --------". What follows is drip's own email, not the server's words.
Sendmail's "----- Transcript of session follows -----" is not one: the transcript holds
the receiving server's replies."""
ORIGINAL_DATE = re.compile(r"^\s*The date of the message is:\s*(.+)$", re.MULTILINE)
"""Exim's delay warning returns no copy of the original, only its Date header's value."""


def failures(raw: bytes, msg: EmailMessage) -> list[tuple[str, str]] | None:
    """BNC-02's fallback: the addresses flufl.bounce's detectors find failed, each "hard"
    (a permanent failure) or "soft"; None if the detectors failed on the message.

    They are written for the compat32 `Message`, so they get their own parse. Some take a
    delay warning for a failure (Exim's quotes the "RCPT TO:<...>" it was deferred at), so
    under a warning's subject every address is soft: a false hard bounce bars an address
    for good, a false soft one only counts toward a run. For the same reason only a
    message from a mail system may give a hard bounce: one known by its subject alone may
    be a person forwarding someone else's bounce. A detector that fails on some odd
    message must not stop the batch: that message is left to the VERP rule, or held for a
    person to read (drip.reports).
    """
    try:
        temporary, permanent = all_failures(email.message_from_bytes(raw))
    except Exception as exc:
        log.warning("bounce detectors failed (%s: %s)", type(exc).__name__, exc)
        return None
    if not from_mail_system(msg) or WARNING_SUBJECT.search(str(msg.get("Subject", ""))):
        temporary, permanent = temporary | permanent, frozenset()
    kinds = {address: "soft" for address in temporary} | dict.fromkeys(permanent, "hard")
    found = {address.decode(errors="replace"): kind for address, kind in kinds.items()}
    said = _written(msg)[0]
    return [
        (address, "hard" if kind == "hard" and _permanent(address, said, found) else "soft")
        for address, kind in sorted(found.items())
    ]


def _permanent(address: str, said: str, failed: Iterable[str]) -> bool:
    """Whether the server's words about `address` show a permanent SMTP code (5yz, 5.x.x)
    and no transient one (4yz, 4.x.x).

    flufl.bounce's Exim and qmail detectors call every address they find permanent, but
    both servers send that same "permanent error" bounce when they give up on an address
    after days of 4xx deferrals (Exim's "retry timeout exceeded", qmail's "this message
    has been in the queue too long"): a full mailbox, a host down for a week. Barring it
    for good would drop a reader whose address works, so it is soft, as the DSN reader
    counts `Action: failed` with a 4.x.x status; so is a failure that gives no code at
    all (Exim's "Unrouteable address"), since three soft ones in a row still stop the
    subscriber. The words about an address run from its first mention to the next
    failed address's, so that another recipient's 550 cannot make its failure hard.
    """
    return permanent(_about(address, said, failed))


def permanent(text: str) -> bool:
    """Whether a mail system's words show a permanent SMTP code (5yz, 5.x.x) and no
    transient one (4yz, 4.x.x): the one rule for a failure in plain text and in a DSN.

    The generic 5.0.0 says only that delivery failed, not why: Exim's DSN gives it for
    every failure, also for an address it gave up on after days of failed connections
    (with no Diagnostic-Code), which may well work again. Alone it is no sign of a dead
    address, just as the same bounce in plain text, with no code at all, is soft.
    """
    codes = smtp_codes(text)
    if any(code.startswith("4") for code in codes):
        return False
    return any(code.startswith("5") and code != "5.0.0" for code in codes)


def smtp_codes(text: str) -> list[str]:
    """The SMTP reply and enhanced status codes a mail system quotes in `text`."""
    return [code for reply in SMTP_CODES.finditer(text) for code in re.split(r"[ \t-]+", reply[1])]


def _about(address: str, said: str, failed: Iterable[str]) -> str:
    """The part of `said` about `address`; all of it if the address is not in it."""
    starts = {other: _mention(other, said) for other in failed}
    start = starts[address]
    if start is None:
        return said
    later = [at for at in starts.values() if at is not None and at > start]
    return said[start : min(later, default=len(said))]


def _mention(address: str, text: str) -> int | None:
    """Where `text` first names `address` (not as the tail of a longer one)."""
    found = re.search(r"(?<![\w.+-])" + re.escape(address), text, re.IGNORECASE)
    return found.start() if found else None


def quoted_headers(msg: EmailMessage) -> str:
    """The header section of the original the bounce returns after its copy mark, where
    qmail and Exim keep its Message-ID and List-Unsubscribe link; "" if it returns none."""
    copy = _written(msg)[1].split("\n", 1)[-1].lstrip("\n")
    return copy.split("\n\n", 1)[0]


def original_date(msg: EmailMessage) -> str:
    """The original's date as the bounce gives it (Exim's delay warning); "" if it does
    not. A warning repeated each day about one email then dates that email, not the day."""
    found = ORIGINAL_DATE.search(_written(msg)[0])
    return found.group(1) if found else ""


def _written(msg: EmailMessage) -> tuple[str, str]:
    """The mail system's own words, before its copy mark, and from the mark on the copy of
    the original it returns ("" if none), whose headers and text may hold any number."""
    text = "\n".join(_plain_text(msg))
    mark = COPY_MARK.search(text)
    return (text[: mark.start()], text[mark.start() :]) if mark else (text, "")


def _plain_text(part: Message) -> Iterator[str]:
    """The text/plain parts, not those of a message attached as message/rfc822. Decoded
    as UTF-8 whatever the charset: the codes and addresses sought are ASCII."""
    if part.get_content_maintype() == "multipart":
        for inner in part.get_payload():
            if isinstance(inner, Message):
                yield from _plain_text(inner)
    elif part.get_content_type() == "text/plain":
        payload = part.get_payload(decode=True)
        text = payload.decode(errors="replace") if isinstance(payload, bytes) else ""
        yield text.replace("\r\n", "\n")


def looks_like_a_bounce(msg: EmailMessage) -> bool:
    """From a mail system (Exim's plain-text bounces also say Auto-Submitted: auto-replied,
    so that header cannot rule them out), or with a bounce's subject and not an auto-reply
    (a vacation notice may well quote "undeliverable")."""
    if from_mail_system(msg):
        return True
    if str(msg.get("Auto-Submitted", "no")).strip().lower() != "no":
        return False
    return BOUNCE_SUBJECT.search(str(msg.get("Subject", ""))) is not None


def from_mail_system(msg: EmailMessage) -> bool:
    senders = [address.lower() for _, address in getaddresses([str(msg.get("From", ""))])]
    return any(a.partition("@")[0] in BOUNCE_SENDERS for a in senders)

"""Bounces written for people: whether a message is one, and what its text says failed.

A bounce that is not a machine-readable DSN (a plain-text "undeliverable" note, as qmail,
older Exim and Postfix and some providers still send) must first look like a bounce (from
MAILER-DAEMON or postmaster, or a bounce-like subject on a message not marked
Auto-Submitted), because vacation replies and human answers go back to the return path
too and must never count against anyone. Then flufl.bounce, Mailman's detectors for such
formats, names the addresses that failed, permanently (a hard bounce) or not (soft), as
standards BNC-02 asks.
"""

from __future__ import annotations

import email
import logging
import re
from email.message import EmailMessage
from email.utils import getaddresses

from flufl.bounce import all_failures

log = logging.getLogger(__name__)
BOUNCE_SENDERS = ("mailer-daemon", "postmaster")
BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (status notification|failure|has failed)|returned mail"
    r"|failure notice|mail delivery (failed|subsystem)|could not be delivered|non-?delivery",
    re.IGNORECASE,
)
WARNING_SUBJECT = re.compile(r"delay|warning|still being retried", re.IGNORECASE)
"""A delay warning's subject (Exim's "Warning: message ... delayed 24 hours", Postfix's
"Delayed Mail (still being retried)"): the detectors take some warnings for failures."""


def failures(raw: bytes, subject: str, *, trusted: bool) -> list[tuple[str, str]]:
    """BNC-02's fallback: the addresses flufl.bounce's detectors find failed, each "hard"
    (a permanent failure) or "soft".

    They are written for the compat32 `Message`, so they get their own parse. Some take a
    delay warning for a failure (Exim's quotes the "RCPT TO:<...>" it was deferred at), so
    under a warning's subject every address is soft: a false hard bounce bars an address
    for good, a false soft one only counts toward a run. For the same reason only a
    message from a mail system (`trusted`) may give a hard bounce: one known by its
    subject alone may be a person forwarding someone else's bounce. A detector that fails
    on some odd message must not stop the batch: that message is left to the VERP rule.
    """
    try:
        temporary, permanent = all_failures(email.message_from_bytes(raw))
    except Exception as exc:
        log.warning("bounce detectors failed (%s: %s)", type(exc).__name__, exc)
        return []
    if not trusted or WARNING_SUBJECT.search(subject):
        temporary, permanent = temporary | permanent, frozenset()
    kinds = {address: "soft" for address in temporary} | dict.fromkeys(permanent, "hard")
    return [(address.decode(errors="replace"), kind) for address, kind in sorted(kinds.items())]


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

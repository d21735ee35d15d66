"""The local Maildir outbox: where DRIP_MAIL_URL=maildir: puts mail instead of sending it
(drip.transports.MaildirTransport), and what the admin's Outbox page reads.

Those are copies drip itself keeps, so an erasure deletes the ones sent to the erased
address along with its rows (drip.privacy.erase_address): the right to erasure covers
every copy drip holds. Mail that went out over SMTP is the relay's and the reader's,
out of drip's reach.
"""

from __future__ import annotations

import mailbox
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from email.utils import getaddresses
from pathlib import Path

from drip.settings import Settings
from drip.transports import maildir_path

_HEADERS = BytesHeaderParser(policy=default_policy)


def location(settings: Settings) -> Path | None:
    """The Maildir mail goes to, or None when it goes to an SMTP relay."""
    return maildir_path(settings.mail_url, outbox=settings.outbox_dir)


def addressed_to(outbox: Path, email: str) -> list[str]:
    """Keys of the outbox's messages whose To names `email`. drip stores addresses in
    lower case (drip.signup.normalise_email) and writes To from the stored address, so
    the comparison ignores case; a display name around the address does not matter."""
    box = _open(outbox)
    return [] if box is None else _keys_to(box, email)


def delete_addressed_to(outbox: Path, email: str) -> int:
    """Delete the outbox's messages to `email`; returns how many were found. One gone
    meanwhile (the admin's mail client moved it, another erasure took it) is no error."""
    box = _open(outbox)
    if box is None:
        return 0
    keys = _keys_to(box, email)
    for key in keys:
        box.discard(key)
    return len(keys)


def _open(outbox: Path) -> mailbox.Maildir | None:
    """The Maildir, or None before anything was ever written to it."""
    try:
        return mailbox.Maildir(outbox, create=False)
    except mailbox.NoSuchMailboxError:
        return None


def _keys_to(box: mailbox.Maildir, email: str) -> list[str]:
    wanted = email.lower()
    return [key for key in box.iterkeys() if wanted in _recipients(box, key)]


def _recipients(box: mailbox.Maildir, key: str) -> set[str]:
    try:
        raw = box.get_bytes(key)
    except (KeyError, FileNotFoundError):
        return set()
    to = _HEADERS.parsebytes(raw).get_all("To", [])
    return {address.lower() for _, address in getaddresses([str(h) for h in to])}

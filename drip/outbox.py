"""The local Maildir outbox: where DRIP_MAIL_URL=maildir: puts mail instead of sending it
(drip.transports.MaildirTransport), and what the admin's Outbox page reads (`newest`).

Those are copies drip itself keeps, so an erasure deletes the ones sent to the erased
address along with its rows (drip.privacy.erase_address): the right to erasure covers
every copy drip holds. Mail that went out over SMTP is the relay's and the reader's,
out of drip's reach.
"""

from __future__ import annotations

import heapq
import mailbox
import os
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from email.utils import getaddresses
from pathlib import Path
from typing import NamedTuple

from drip.digits import whole_number
from drip.errors import InvalidInput
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


class Place(NamedTuple):
    """Where a message stands in the outbox, newest first: by the time its file was
    written, then by its key, so that two written in the same instant keep an order. A
    page ends at a Place, and the next begins after it, so mail that arrives meanwhile
    (always newer) does not shift what the older pages hold."""

    written_ns: int
    key: str

    def __str__(self) -> str:
        return f"{self.written_ns}.{self.key}"

    @classmethod
    def parse(cls, text: str) -> Place:
        """The Place `str()` wrote, as a link carries it; InvalidInput for anything else."""
        written, _, key = text.partition(".")
        written_ns = whole_number(written)
        if written_ns is None or not key:
            raise InvalidInput("that is not a place in the outbox", field="older")
        return cls(written_ns, key)


@dataclass(frozen=True)
class Listed:
    """A message as the list shows it: its key, to open it by, and its headers."""

    key: str
    headers: EmailMessage


@dataclass(frozen=True)
class Page:
    """Up to a page of the outbox's messages, newest first, and where they stand."""

    messages: list[Listed]
    total: int
    newer: int
    """How many messages are newer than this page's first."""
    older: Place | None
    """Where the next page begins, or None when this one holds the oldest."""


def newest(outbox: Path, *, limit: int, older_than: Place | None = None) -> Page:
    """The `limit` newest messages of the outbox (older than `older_than`, if given).

    Only the names and times of the files are read for the whole outbox, and headers
    only for the page's messages: the page must stay quick with 10,000 in the outbox.
    A message deleted while the page is made (an erasure) is left out."""
    found = list(_files(outbox))
    candidates = found if older_than is None else [f for f in found if f.place < older_than]
    shown = heapq.nlargest(limit + 1, candidates)
    messages = [
        Listed(file.place.key, headers)
        for file in shown[:limit]
        if (headers := _headers_of(file.path)) is not None
    ]
    return Page(
        messages,
        total=len(found),
        newer=len(found) - len(candidates),
        older=shown[limit - 1].place if len(shown) > limit else None,
    )


class _File(NamedTuple):
    place: Place
    path: str


def _files(outbox: Path) -> Iterator[_File]:
    """Each message's file in the Maildir's new/ and cur/, as mailbox.Maildir lists them
    (the key is the name up to the flags), with one stat each and no file opened."""
    for folder in ("new", "cur"):
        try:
            entries = list(os.scandir(outbox / folder))
        except FileNotFoundError:
            continue
        for entry in entries:
            try:
                if entry.is_dir():
                    continue
                written = entry.stat().st_mtime_ns
            except FileNotFoundError:
                continue
            key = entry.name.split(mailbox.Maildir.colon)[0]
            yield _File(Place(written, key), entry.path)


def _headers_of(path: str) -> EmailMessage | None:
    """The message's headers, read up to the blank line that ends them: its body is
    neither read nor parsed, however large, or nested too deep for Python's parser."""
    head = b""
    try:
        with open(path, "rb") as file:
            while chunk := file.read(8192):
                head += chunk
                if b"\n\n" in head or b"\r\n\r\n" in head:
                    break
    except FileNotFoundError:
        return None
    headers = _HEADERS.parsebytes(head)
    assert isinstance(headers, EmailMessage)
    return headers

"""A Maildir whose messages are their files, parsed only where a failure is guarded.

`mailbox.Maildir.get_message` parses the whole message to give its flags, folder and
time, which come from its file's name and the file alone. A message Python's parser
raises on (parts nested a thousand deep: RecursionError), which anyone can mail to the
bounce address, then breaks whatever only wanted those, and a huge one costs seconds.
"""

from __future__ import annotations

import mailbox
from pathlib import Path
from typing import BinaryIO


class MessageFile(mailbox.MaildirMessage):
    """A message in a Maildir as its file, not its content: `Maildir.get_message` gives
    it the flags and folder from the file's name and the time from the file."""

    def __init__(self, file: BinaryIO) -> None:
        super().__init__()
        self.path = Path(file.name)


def open_maildir(path: Path, *, create: bool = False) -> mailbox.Maildir:
    """A Maildir whose `get_message` gives a MessageFile; `get_bytes` gives the content."""
    return mailbox.Maildir(path, factory=MessageFile, create=create)

"""Files and folders that hold personal data or keys, kept to the account that runs drip.

Under the usual umask (022) a new file is readable by every account on the machine. The
subscriber list, its exports and the DKIM keys are as private as the generated secret
key, so each is created for its owner alone. (The Maildir outbox already is: Python's
mailbox module makes its folders 0700.)
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import IO, Any

PRIVATE_FOLDER = 0o700
PRIVATE_FILE = 0o600


def make_private_folder(path: Path) -> None:
    """Create the folder for its owner alone, with any missing parents as usual.

    A folder that exists keeps its mode: it may be one the operator made and shares on
    purpose (a backup group, a mounted volume), and the database, keys and exports drip
    writes inside are private whatever the folder's mode.
    """
    path.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)


def create_private(path: Path) -> None:
    """Create an empty file for its owner alone, unless there is one already: for a file
    another program fills in, such as SQLite's database. A file that cannot be created
    is left to that program, whose error says why."""
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))


def open_private(path: Path, mode: str = "w", *, exclusive: bool = False, **kwargs: Any) -> IO[Any]:
    """Open `path` to write, as `open` does, created for its owner alone.

    What is written is private, so an existing file of ours is made private too (one of
    another account's is that account's to guard); `exclusive` refuses an existing file
    instead, with FileExistsError. Only regular files change mode: `/dev/stdout` is a
    terminal's, not the export's.
    """
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE_FILE)
    try:
        found = os.fstat(fd)
        if stat.S_ISREG(found.st_mode) and found.st_uid == os.geteuid():
            os.fchmod(fd, PRIVATE_FILE)
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise

"""Rotating the signing keys (standards SEC-11) without breaking a link in old mail.

DRIP_SECRET_KEYS lists keys oldest to newest; the newest signs, every one verifies.
Rotating appends a fresh key. Retiring drops the oldest, but only once it has not
signed anything for 60 days: unsubscribe links never expire, and CASL wants one to work
60 days after its mail was sent (CAN-SPAM, 30).

The keys themselves live in the environment, so drip cannot see a deploy happen. What it
can see is a process starting with a newer key: the mailer (the one signer of
unsubscribe links) notes, the first time it runs with a key that is no longer the
newest, that this key stopped signing then. The notes are fingerprints and dates in a
small JSON file in the instance folder, never the keys. A machine without a note for a
key has no proof of its age, so it refuses to retire it (and starts counting).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from drip.errors import DripError

RETIRE_AFTER = timedelta(days=60)
HISTORY_FILE = "signing_keys.json"


class KeyStillNeeded(DripError):
    """The oldest key may still verify an unsubscribe link in mail that must keep working."""


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def rotated(keys: Sequence[str]) -> tuple[str, ...]:
    """The list with a fresh newest key, which signs from the next start on."""
    return (*keys, secrets.token_urlsafe(48))


def note_stopped_signing(instance_dir: Path, keys: Sequence[str], now: datetime) -> None:
    """Record, for each key older than the newest, the first time a process saw it stop
    signing. Processes starting together may each write: they write the same notes,
    and a rename makes each write whole."""
    history = _history(instance_dir)
    missing = [fingerprint(key) for key in keys[:-1] if fingerprint(key) not in history]
    if not missing:
        return
    history.update(dict.fromkeys(missing, now.isoformat()))
    draft = instance_dir / f".{HISTORY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    draft.write_text(json.dumps(history, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(draft, instance_dir / HISTORY_FILE)


def retired(instance_dir: Path, keys: Sequence[str], now: datetime) -> tuple[str, ...]:
    """The list without its oldest key; KeyStillNeeded while that key may still verify
    a link that has to work."""
    if len(keys) < 2:
        raise KeyStillNeeded("only one key is configured: rotate first, retire 60 days later")
    note_stopped_signing(instance_dir, keys, now)
    stopped = datetime.fromisoformat(_history(instance_dir)[fingerprint(keys[0])])
    if now - stopped < RETIRE_AFTER:
        raise KeyStillNeeded(
            f"the oldest key ({fingerprint(keys[0])}) stopped signing on {stopped:%Y-%m-%d}: "
            f"unsubscribe links it signed must work for 60 days, so retire it on or after "
            f"{stopped + RETIRE_AFTER:%Y-%m-%d}"
        )
    return tuple(keys[1:])


def _history(instance_dir: Path) -> dict[str, str]:
    path = instance_dir / HISTORY_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

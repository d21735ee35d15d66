"""An SMTP server, run as its own process, that behaves like a moody relay and keeps a record.

It answers 451 to a share of mail transactions at random (the sender must retry), 550 to
every recipient whose address starts with REFUSED_PREFIX (the sender must give up and
stop mailing that address), and accepts the rest. Each accepted message is written to a
SQLite file before the "250" reply, so a client killed while waiting for that reply
leaves exactly the trace a real relay would: a message delivered that its sender never
heard about.

    python -m bench.refusing_sink --port 2525 --record sink.db --temporary 0.10
"""

from __future__ import annotations

import argparse
import random
import signal
import sqlite3
import threading
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

REFUSED_PREFIX = "gone-"
SCHEMA = "CREATE TABLE IF NOT EXISTS received (rcpt TEXT, message_id TEXT, feedback_id TEXT)"


@dataclass(frozen=True)
class Accepted:
    rcpt: str
    message_id: str
    feedback_id: str


class RefusingHandler:
    def __init__(self, record: Path, temporary: float, seed: int) -> None:
        self.db = sqlite3.connect(record, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(SCHEMA)
        self.temporary = temporary
        self.random = random.Random(seed)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.startswith(REFUSED_PREFIX):
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.random.random() < self.temporary:
            return "451 4.3.0 Busy; try again later"
        headers = BytesHeaderParser().parsebytes(envelope.content)
        self.db.executemany(
            "INSERT INTO received VALUES (?, ?, ?)",
            [
                (rcpt, str(headers["Message-ID"]), str(headers["Feedback-ID"]))
                for rcpt in envelope.rcpt_tos
            ],
        )
        return "250 Message accepted"


def read_record(record: Path) -> list[Accepted]:
    """Everything the sink accepted, in order."""
    with sqlite3.connect(record) as db:
        db.execute(SCHEMA)
        return [Accepted(*row) for row in db.execute("SELECT * FROM received ORDER BY rowid")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--temporary", type=float, default=0.10, help="share answered 451")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    handler = RefusingHandler(args.record, args.temporary, args.seed)
    controller = Controller(handler, hostname="127.0.0.1", port=args.port)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    controller.start()
    try:
        stopping.wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()

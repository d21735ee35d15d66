"""An SMTP sink in a process of its own: accepts every message and throws it away.

`python -m bench.sink PORT` prints "ready" once it listens. Running it apart from the
senders keeps its CPU (aiosmtpd is the bottleneck of a loopback SMTP test, stack-notes
3b) out of the process being measured.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from aiosmtpd.controller import Controller


class Discard:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


def main() -> None:
    controller = Controller(
        Discard(), hostname="127.0.0.1", port=int(sys.argv[1]), data_size_limit=0
    )
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()

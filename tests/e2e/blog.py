"""A writer's own static site on another localhost port, where drip's form is embedded."""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title><link rel="icon" href="data:,">{head}</head>
<body><h1>{title}</h1>
{body}
</body>
</html>
"""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output for the tests."""


class Blog:
    """Static files served from a folder, as any web host would serve them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://localhost:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def publish(self, name: str, title: str, body: str, *, head: str = "") -> str:
        """Write a page, with `head` added to its head, and return its address."""
        (self.folder / name).write_text(PAGE.format(title=title, body=body, head=head))
        return f"{self.url}/{name}"

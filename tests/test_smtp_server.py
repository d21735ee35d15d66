"""The suite's SMTP server: it must not fail a run for losing a race for its port."""

from __future__ import annotations

import smtplib
import socket

import pytest

from tests import helpers
from tests.helpers import SMTPServer


def test_a_port_taken_after_it_was_found_free_means_another_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = iter([port])
        real = helpers.free_port
        monkeypatch.setattr(helpers, "free_port", lambda: next(ports, None) or real())
        server = SMTPServer(ready_timeout=1.0)
        assert server.port == port

        server.start()
        try:
            assert server.port != port
            with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as client:
                assert client.noop()[0] == 250
        finally:
            server.stop()

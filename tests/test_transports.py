"""The pooled SMTP transport against a real server: connections are reused up to a cap,
a dead one is replaced without losing or repeating the message, and "slow down" is told
apart from other refusals."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from drip.errors import TransportError
from drip.transports import SMTPTransport
from tests.helpers import SMTPServer, self_signed, this_machine

RAW = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.fixture
def transport(smtp_server: SMTPServer) -> Iterator[SMTPTransport]:
    pooled = SMTPTransport(f"smtp://127.0.0.1:{smtp_server.port}", max_per_connection=3)
    yield pooled
    pooled.close()


def send(transport: SMTPTransport, rcpt_to: str = "b@example.com") -> None:
    transport.send(RAW, mail_from="a@example.com", rcpt_to=rcpt_to)


def test_a_connection_carries_at_most_the_configured_number_of_messages(
    transport: SMTPTransport, smtp_server: SMTPServer
) -> None:
    for _ in range(7):
        send(transport)
    assert len(smtp_server.received) == 7
    assert smtp_server.connections == 3, "3 + 3 + 1 messages"
    assert smtp_server.noops == 0, "a busy connection is not checked before each message"


def test_a_connection_the_relay_dropped_is_replaced_and_the_message_sent_once(
    transport: SMTPTransport, smtp_server: SMTPServer
) -> None:
    send(transport, "first@example.com")
    smtp_server.drop_connections()
    send(transport, "second@example.com")
    assert [r.rcpt_tos for r in smtp_server.received] == [
        ["first@example.com"],
        ["second@example.com"],
    ]
    assert smtp_server.connections == 2


def test_an_idle_connection_is_checked_before_use_and_replaced_if_closed(
    smtp_server: SMTPServer,
) -> None:
    checking = SMTPTransport(f"smtp://127.0.0.1:{smtp_server.port}", idle_check=0)
    send(checking, "first@example.com")
    send(checking, "second@example.com")
    assert (smtp_server.noops, smtp_server.connections) == (1, 1)
    smtp_server.drop_connections()
    send(checking, "third@example.com")
    checking.close()
    assert len(smtp_server.received) == 3
    assert smtp_server.connections == 2


def test_a_fresh_connection_that_fails_is_not_retried_in_a_loop(
    smtp_server: SMTPServer,
) -> None:
    unreachable = SMTPTransport("smtp://127.0.0.1:9")
    with pytest.raises(TransportError) as failed:
        send(unreachable)
    assert not failed.value.permanent


def test_a_message_whose_acceptance_was_not_heard_is_never_resent_at_once(
    transport: SMTPTransport, smtp_server: SMTPServer
) -> None:
    smtp_server.hang_up_after_data()
    with pytest.raises(TransportError) as failed:
        send(transport)
    assert not failed.value.permanent, "the database retries it later"
    assert failed.value.ambiguous, "the relay may have it: a retry may deliver it twice"
    assert len(smtp_server.received) == 1


def test_a_message_the_relay_never_answers_is_ambiguous(smtp_server: SMTPServer) -> None:
    smtp_server.hang_on_data()
    waiting = SMTPTransport(f"smtp://127.0.0.1:{smtp_server.port}", timeout=0.5)
    with pytest.raises(TransportError, match="timed out") as failed:
        send(waiting)
    waiting.close()
    assert (failed.value.permanent, failed.value.ambiguous) == (False, True)


def test_a_refusal_of_the_message_is_not_ambiguous(
    transport: SMTPTransport, smtp_server: SMTPServer
) -> None:
    smtp_server.script("b@example.com", "451 4.7.1 Try again later")
    with pytest.raises(TransportError) as failed:
        send(transport)
    assert not failed.value.ambiguous


def test_a_message_cut_off_before_its_end_is_not_ambiguous() -> None:
    """A relay that hangs up while the message is still on its way cannot have accepted
    it (it needs the final "." line): an ordinary temporary failure. The message is larger
    than the sockets' buffers, so the cut is noticed while it is being written."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        relay = threading.Thread(target=_hang_up_at_data, args=(listener,), daemon=True)
        relay.start()
        cutting = SMTPTransport(f"smtp://127.0.0.1:{listener.getsockname()[1]}", timeout=5)
        large = RAW + b"x" * 998 * 32_768 + b"\r\n"
        with pytest.raises(TransportError) as failed:
            cutting.send(large, mail_from="a@example.com", rcpt_to="b@example.com")
        relay.join(timeout=10)
    assert (failed.value.permanent, failed.value.ambiguous) == (False, False)


def _hang_up_at_data(listener: socket.socket) -> None:
    """A relay for one client: it answers up to DATA, then resets the connection."""
    conn, _ = listener.accept()
    with conn, conn.makefile("rb") as lines:
        conn.sendall(b"220 cutting ESMTP\r\n")
        for line in lines:
            command = line.strip().upper()
            if command.startswith(b"EHLO"):
                conn.sendall(b"250 cutting\r\n")
            elif command == b"DATA":
                conn.sendall(b"354 go ahead\r\n")
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            else:
                conn.sendall(b"250 OK\r\n")


def test_lines_starting_with_a_dot_arrive_as_they_were_written(
    transport: SMTPTransport, smtp_server: SMTPServer
) -> None:
    body = b".hidden\r\n..two\r\n.\r\nlast line without an end"
    transport.send(RAW + body, mail_from="a@example.com", rcpt_to="b@example.com")
    (received,) = smtp_server.received
    assert received.raw == RAW + body + b"\r\n"


@pytest.mark.parametrize(
    ("reply", "throttled"),
    [
        ("421 4.7.0 Too many messages, slow down", True),
        ("421 4.3.2 Service not available", True),
        ("454 Throttling failure: Maximum sending rate exceeded.", True),
        ("451 4.7.28 Our system has detected an unusual rate of mail", True),
        ("450 4.2.1 The user you are trying to contact is receiving mail too quickly", False),
        ("451 4.7.1 Greylisted, try again later", False),
        ("452 4.2.2 Mailbox full", False),
    ],
)
def test_a_slow_down_reply_is_told_apart_from_other_temporary_refusals(
    transport: SMTPTransport, smtp_server: SMTPServer, reply: str, throttled: bool
) -> None:
    smtp_server.script("b@example.com", reply)
    with pytest.raises(TransportError) as failed:
        send(transport)
    assert (failed.value.permanent, failed.value.throttled) == (False, throttled)
    send(transport)
    assert len(smtp_server.received) == 1


@pytest.fixture
def remote_relay() -> Iterator[tuple[str, SMTPServer]]:
    """A relay without STARTTLS, reached by a host name rather than a loopback address."""
    name, address = this_machine()
    server = SMTPServer(host=address)
    server.start()
    yield name, server
    server.stop()


@pytest.fixture
def snakeoil_relay(certificate: tuple[Path, Path]) -> Iterator[SMTPServer]:
    server = SMTPServer(tls_context=self_signed(certificate), require_starttls=True)
    server.start()
    yield server
    server.stop()


def test_a_relay_on_this_machine_with_a_self_signed_certificate_is_used_over_tls(
    snakeoil_relay: SMTPServer,
) -> None:
    """Its traffic never leaves the machine, so its certificate is not checked; the
    relay insists on STARTTLS, so the message went over TLS."""
    for host in ("127.0.0.1", "localhost"):
        local = SMTPTransport(f"smtp://{host}:{snakeoil_relay.port}")
        send(local)
        local.close()
    assert len(snakeoil_relay.received) == 2


def test_a_remote_relay_with_a_self_signed_certificate_is_refused(
    certificate: tuple[Path, Path],
) -> None:
    name, address = this_machine()
    server = SMTPServer(host=address, tls_context=self_signed(certificate))
    server.start()
    try:
        remote = SMTPTransport(f"smtp://{name}:{server.port}", allow_plaintext=True)
        with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED") as refused:
            send(remote)
    finally:
        server.stop()
    assert not refused.value.permanent
    assert server.received == []


def test_a_remote_relay_without_starttls_is_refused_unless_plaintext_is_allowed(
    remote_relay: tuple[str, SMTPServer],
) -> None:
    name, server = remote_relay
    strict = SMTPTransport(f"smtp://{name}:{server.port}")
    with pytest.raises(TransportError, match="refusing plaintext") as refused:
        send(strict)
    assert not refused.value.permanent, "a relay misconfiguration delays mail, never bounces it"
    assert server.received == []

    allowed = SMTPTransport(f"smtp://{name}:{server.port}", allow_plaintext=True)
    send(allowed)
    allowed.close()
    assert len(server.received) == 1

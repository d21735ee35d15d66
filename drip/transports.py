"""Where messages go: a local Maildir outbox, or an SMTP relay. Chosen by DRIP_MAIL_URL.

A 5xx reply to the recipient or the message is permanent: that delivery fails. Only a
refusal of the address itself (enhanced status 5.1.x, or a bare 550/551/553 to RCPT TO)
is a bounce that stops the subscriber's series; a 5.7.1 content rejection is not.
Anything that is our side's problem (a refused login or sender, a dropped connection, a
timeout) is temporary, so a misconfigured relay delays mail instead of bouncing the list.
"""

from __future__ import annotations

import ipaddress
import mailbox
import re
import smtplib
import ssl
import threading
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from drip.errors import TransportError

SMTP_TIMEOUT = 30
ENHANCED_STATUS = re.compile(r"\b5\.(\d{1,3})\.\d{1,3}\b")


class Transport(Protocol):
    def send(self, raw: bytes, *, mail_from: str, rcpt_to: str) -> None:
        """Hand one serialised message (CRLF line ends, DKIM-signed if configured) over;
        TransportError when it was not accepted."""
        ...


class MaildirTransport:
    """Writes each message into a standard Maildir, readable by any mail client."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._box = mailbox.Maildir(path, create=True)

    def send(self, raw: bytes, *, mail_from: str, rcpt_to: str) -> None:
        self._box.add(raw)


class SMTPTransport:
    """One connection per worker thread, kept open and reused across messages.

    Reusing the connection about doubles throughput even on loopback (stack-notes 3b),
    and saves a TLS handshake and a login per message on a real relay.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.implicit_tls = parts.scheme == "smtps"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (465 if self.implicit_tls else 587)
        self.username = unquote(parts.username or "")
        self.password = unquote(parts.password or "")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open_conns: list[smtplib.SMTP] = []

    def send(self, raw: bytes, *, mail_from: str, rcpt_to: str) -> None:
        try:
            self._connection().sendmail(mail_from, [rcpt_to], raw)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            raise self._failed(code, reply, at_rcpt=True) from None
        except smtplib.SMTPSenderRefused as exc:
            self._drop()
            raise TransportError(f"SMTP refused our sender: {exc}", permanent=False) from None
        except smtplib.SMTPDataError as exc:
            raise self._failed(exc.smtp_code, exc.smtp_error, at_rcpt=False) from None
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise TransportError(f"SMTP {self.host}:{self.port}: {exc}", permanent=False) from None
        except UnicodeError as exc:
            self._drop()
            raise TransportError(f"cannot be sent over SMTP: {exc}", permanent=True) from None

    def close(self) -> None:
        """Close every thread's connection (at worker shutdown)."""
        with self._lock:
            conns, self._open_conns = self._open_conns, []
        for conn in conns:
            _quit(conn)

    def _failed(self, code: int, reply: bytes | str, *, at_rcpt: bool) -> TransportError:
        text = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
        conn = self._connection_or_none()
        if code == 421 or conn is None or not _reset(conn):
            self._drop()
        return TransportError(
            f"SMTP {code} {text}"[:500],
            permanent=code >= 500,
            bounce=code >= 500 and _address_refused(code, text, at_rcpt=at_rcpt),
        )

    def _connection_or_none(self) -> smtplib.SMTP | None:
        return getattr(self._local, "conn", None)

    def _drop(self) -> None:
        conn = self._connection_or_none()
        self._local.conn = None
        if conn is not None:
            with self._lock:
                if conn in self._open_conns:
                    self._open_conns.remove(conn)
            _quit(conn)

    def _connection(self) -> smtplib.SMTP:
        conn = self._connection_or_none()
        if conn is not None:
            try:
                if conn.noop()[0] == 250:
                    return conn
            except (smtplib.SMTPException, OSError):
                pass
            self._drop()
        conn = self._open()
        self._local.conn = conn
        with self._lock:
            self._open_conns.append(conn)
        return conn

    def _open(self) -> smtplib.SMTP:
        context = ssl.create_default_context()
        if self.implicit_tls:
            conn: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, self.port, timeout=SMTP_TIMEOUT, context=context
            )
        else:
            conn = smtplib.SMTP(self.host, self.port, timeout=SMTP_TIMEOUT)
            conn.ehlo()
            if conn.has_extn("starttls"):
                conn.starttls(context=context)
                conn.ehlo()
            elif not _is_loopback(self.host):
                conn.close()
                raise smtplib.SMTPException("the relay does not offer STARTTLS; refusing plaintext")
        if self.username:
            conn.login(self.username, self.password)
        return conn


def _address_refused(code: int, text: str, *, at_rcpt: bool) -> bool:
    enhanced = ENHANCED_STATUS.search(text)
    if enhanced:
        return enhanced.group(1) == "1"
    return at_rcpt and code in (550, 551, 553)


def _reset(conn: smtplib.SMTP) -> bool:
    """End the failed mail transaction so the connection can carry the next message."""
    try:
        return conn.rset()[0] == 250
    except (smtplib.SMTPException, OSError):
        return False


def _quit(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except (smtplib.SMTPException, OSError):
        conn.close()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def transport_from_url(url: str, *, outbox: Path) -> Transport:
    parts = urlsplit(url)
    if parts.scheme == "maildir":
        return MaildirTransport(Path(parts.path) if parts.path else outbox)
    return SMTPTransport(url)

"""Where messages go: a local Maildir outbox, or an SMTP relay. Chosen by DRIP_MAIL_URL.

A 5xx reply to the recipient or the message is permanent: that delivery fails. Only a
refusal of the address itself (enhanced status 5.1.x, or a bare 550/551/553 to RCPT TO)
is a bounce that stops the subscriber's series; a 5.7.1 content rejection is not.
Anything that is our side's problem (a refused login or sender, a dropped connection, a
timeout) is temporary, so a misconfigured relay delays mail instead of bouncing the list.
"""

from __future__ import annotations

import mailbox
import re
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from drip.dns_names import is_loopback
from drip.errors import TransportError

SMTP_TIMEOUT = 30.0
"""Seconds any one SMTP read or write may block (DRIP_SMTP_TIMEOUT): shorter than the
send lease, because the actor's time limit cannot interrupt a blocked socket call. A send
makes up to about fifteen of them, so only a timeout under a twentieth of the lease
bounds a whole send by it (README, DRIP_SMTP_TIMEOUT)."""
ENHANCED_STATUS = re.compile(r"\b5\.(\d{1,3})\.\d{1,3}\b")
DOMAIN_THROTTLING = re.compile(r"\b4\.7\.28\b")
LEADING_DOT = re.compile(rb"(?m)^\.")
THROTTLING = re.compile(r"\brate\b|too many|throttl|slow(ing)? down|\b4\.7\.28\b", re.IGNORECASE)
IDLE_CHECK = 5.0
"""Seconds a connection may sit unused before it is checked with NOOP before a message
(relays close idle connections, Postfix after 300 s, some much sooner)."""


Ready = Callable[[], None]
"""What a transport calls at the last moment before a message's transaction, after any
wait for a sending slot or a connection; it raises to stop the message. drip.sending
looks there whether the subscriber still wants the email, so an unsubscribe committed
while a message waited for its slot stops it."""


def go() -> None:
    """The `ready` of a message nothing can stop (a test send)."""


class Transport(Protocol):
    def send(self, raw: bytes, *, mail_from: str, rcpt_to: str, ready: Ready = go) -> None:
        """Hand one serialised message (CRLF line ends, DKIM-signed if configured) over,
        calling `ready` just before; TransportError when it was not accepted."""
        ...

    def idle(self) -> None:
        """The calling thread has sent what it had for now (drip.sending, at the end of
        a batch): let go of what it kept between its messages (a domain's slot). Its
        connection stays open for the next batch."""
        ...

    def close(self) -> None:
        """Let go of any open connection (at worker shutdown)."""
        ...


class MaildirTransport:
    """Writes each message into a standard Maildir, readable by any mail client."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._box = mailbox.Maildir(path, create=True)

    def send(self, raw: bytes, *, mail_from: str, rcpt_to: str, ready: Ready = go) -> None:
        ready()
        self._box.add(raw)

    def idle(self) -> None:
        """Nothing is kept between messages."""

    def close(self) -> None:
        self._box.close()


class SMTPTransport:
    """One connection per worker thread, kept open and reused for up to
    `max_per_connection` messages, then closed with QUIT and replaced.

    Reusing the connection about doubles throughput even on loopback (stack-notes 3b),
    and saves a TLS handshake and a login per message on a real relay; the cap keeps
    relays that limit messages per connection happy. A connection is checked with NOOP
    only after `idle_check` seconds unused (not before every message: that costs a round
    trip); otherwise a dead one is noticed by the send itself: if it dies before the
    relay could have accepted anything (at MAIL FROM or RCPT TO), the message goes out
    at once on a fresh connection. Once DATA is under way it never is: a temporary
    failure, and an ambiguous one once the whole message was sent without a reply
    heard (the relay may have it: drip.sending logs the retry as a possible duplicate).
    """

    def __init__(
        self,
        url: str,
        *,
        max_per_connection: int = 100,
        idle_check: float = IDLE_CHECK,
        timeout: float = SMTP_TIMEOUT,
        allow_plaintext: bool = False,
    ) -> None:
        parts = urlsplit(url)
        self.implicit_tls = parts.scheme == "smtps"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (465 if self.implicit_tls else 587)
        self.username = unquote(parts.username or "")
        self.password = unquote(parts.password or "")
        self.max_per_connection = max_per_connection
        self.idle_check = idle_check
        self.timeout = timeout
        self.allow_plaintext = allow_plaintext
        self._tls = tls_context(self.host)
        """Made once: loading the system's CA certificates for every new connection took
        0.1-0.45 s on a busy machine. One context serves every thread."""
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open_conns: list[smtplib.SMTP] = []

    def send(self, raw: bytes, *, mail_from: str, rcpt_to: str, ready: Ready = go) -> None:
        """What smtplib's data() does, in two steps: everything up to the last byte of
        the message, then the relay's reply to it. A failure in the first step means the
        relay cannot have taken the message (it needs the final "." to); in the second
        it may have, so that failure is marked ambiguous. The same writes and reads as
        data(), so no round trip more."""
        try:
            conn = self._envelope(mail_from, rcpt_to, len(raw), ready)
            code, reply = conn.docmd("data")
            if code != 354:
                raise smtplib.SMTPDataError(code, reply)
            conn.send(_data_lines(raw))
        except smtplib.SMTPDataError as exc:
            raise self._failed(exc.smtp_code, exc.smtp_error, at_rcpt=False) from None
        except (smtplib.SMTPException, OSError) as exc:
            self._drop(polite=not isinstance(exc, TimeoutError))
            raise TransportError(
                f"SMTP {self.host}:{self.port}: {exc}", permanent=False, throttled=_throttled(exc)
            ) from None
        except UnicodeError as exc:
            self._drop()
            raise TransportError(f"cannot be sent over SMTP: {exc}", permanent=True) from None
        try:
            code, reply = conn.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            self._drop(polite=False)
            raise TransportError(
                f"SMTP {self.host}:{self.port}: no reply to the message, which the relay "
                f"may have accepted: {exc}",
                permanent=False,
                ambiguous=True,
            ) from None
        if code != 250:
            raise self._failed(code, reply, at_rcpt=False)

    def idle(self) -> None:
        """The thread's connection is kept for its next batch (IDLE_CHECK)."""

    def close(self) -> None:
        """Close every thread's connection (at worker shutdown)."""
        with self._lock:
            conns, self._open_conns = self._open_conns, []
        for conn in conns:
            _quit(conn)

    def _envelope(self, mail_from: str, rcpt_to: str, size: int, ready: Ready) -> smtplib.SMTP:
        """MAIL FROM and RCPT TO on a working connection, `ready` called once it is
        there; the connection, ready for DATA.

        Nothing can have been accepted yet, so a reused connection found dead here is
        replaced and the envelope given once more.
        """
        conn, reused = self._connection()
        ready()
        try:
            return self._mail_and_rcpt(conn, mail_from, rcpt_to, size)
        except smtplib.SMTPServerDisconnected:
            self._drop()
            if not reused:
                raise
        conn, _ = self._connection()
        return self._mail_and_rcpt(conn, mail_from, rcpt_to, size)

    def _mail_and_rcpt(
        self, conn: smtplib.SMTP, mail_from: str, rcpt_to: str, size: int
    ) -> smtplib.SMTP:
        self._local.sent += 1
        conn.ehlo_or_helo_if_needed()
        code, reply = conn.mail(mail_from, [f"size={size}"] if conn.has_extn("size") else [])
        if code != 250:
            if code == 421 or not _reset(conn):
                self._drop()
            raise TransportError(
                f"SMTP refused our sender: {code} {_text(reply)}"[:500],
                permanent=False,
                throttled=_throttled_reply(code, _text(reply)),
            )
        code, reply = conn.rcpt(rcpt_to)
        if code not in (250, 251):
            raise self._failed(code, reply, at_rcpt=True)
        return conn

    def _failed(self, code: int, reply: bytes | str, *, at_rcpt: bool) -> TransportError:
        text = _text(reply)
        conn = self._connection_or_none()
        if code == 421 or conn is None or not _reset(conn):
            self._drop()
        return TransportError(
            f"SMTP {code} {text}"[:500],
            permanent=code >= 500,
            bounce=code >= 500 and _address_refused(code, text, at_rcpt=at_rcpt),
            throttled=_throttled_reply(code, text),
            domain_throttled=_domain_throttled(text),
        )

    def _connection_or_none(self) -> smtplib.SMTP | None:
        return getattr(self._local, "conn", None)

    def _drop(self, *, polite: bool = True) -> None:
        """Forget this thread's connection, saying QUIT unless the relay has stopped
        answering (waiting for its reply would block a whole timeout more)."""
        conn = self._connection_or_none()
        self._local.conn = None
        if conn is not None:
            with self._lock:
                if conn in self._open_conns:
                    self._open_conns.remove(conn)
            if polite:
                _quit(conn)
            else:
                conn.close()

    def _connection(self) -> tuple[smtplib.SMTP, bool]:
        """This thread's connection, and whether it was used before (so may be stale)."""
        conn = self._connection_or_none()
        now = time.monotonic()
        if conn is not None:
            if self._reusable(conn, idle=now - self._local.used_at):
                self._local.used_at = now
                return conn, True
            self._drop()
        conn = self._open()
        self._local.conn, self._local.sent, self._local.used_at = conn, 0, now
        with self._lock:
            self._open_conns.append(conn)
        return conn, False

    def _reusable(self, conn: smtplib.SMTP, *, idle: float) -> bool:
        if self._local.sent >= self.max_per_connection:
            return False
        return idle <= self.idle_check or _alive(conn)

    def _open(self) -> smtplib.SMTP:
        if self.implicit_tls:
            conn: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=self._tls
            )
        else:
            conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            conn.ehlo()
            if conn.has_extn("starttls"):
                conn.starttls(context=self._tls)
                conn.ehlo()
            elif not (self.allow_plaintext or is_loopback(self.host)):
                conn.close()
                raise smtplib.SMTPException(
                    "the relay does not offer STARTTLS; refusing plaintext "
                    "(DRIP_SMTP_ALLOW_PLAINTEXT=1 allows it, for a local test relay only)"
                )
        if self.username:
            conn.login(self.username, self.password)
        return conn


def _data_lines(raw: bytes) -> bytes:
    """`raw` as sent after DATA, as smtplib's data() sends it: a line starting with "."
    gets another one (RFC 5321 4.5.2; drip.messages leaves that to the SMTP client), and
    the message ends with a line end and the "." line."""
    stuffed = LEADING_DOT.sub(b"..", raw)
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


def tls_context(host: str) -> ssl.SSLContext:
    """How TLS to the relay at `host` is checked: its certificate must be valid for its
    name, except on loopback (127.0.0.0/8, ::1, localhost), where it is not checked.

    A relay on this machine commonly offers STARTTLS with a self-signed certificate
    (Debian's Postfix ships with the "snakeoil" one), which no check can accept; the
    traffic never leaves the machine, where plaintext is allowed too, so checking it
    would protect nothing and only make such a relay unusable."""
    context = ssl.create_default_context()
    if is_loopback(host):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else reply


def _throttled_reply(code: int, text: str) -> bool:
    """Whether a reply asks us to send more slowly: 421 (closing, often for rate), or
    another 4xx that says so (e.g. SES's "454 Throttling failure: Maximum sending rate
    exceeded", Gmail's "4.7.28 ... unusual rate")."""
    return code == 421 or (400 <= code < 500 and THROTTLING.search(text) is not None)


def _domain_throttled(text: str) -> bool:
    """Whether the recipient's domain, not the relay, asked for a pause: Gmail's 4.7.28,
    passed on by the relay. A bare 421 comes from the relay itself (it slows every
    worker, drip.pacing) and says nothing about one domain."""
    return DOMAIN_THROTTLING.search(text) is not None


def _throttled(exc: Exception) -> bool:
    """A refused connection (a 421 greeting, "too many connections") is a slow-down too."""
    return isinstance(exc, smtplib.SMTPResponseException) and _throttled_reply(
        exc.smtp_code, _text(exc.smtp_error)
    )


def _alive(conn: smtplib.SMTP) -> bool:
    try:
        return conn.noop()[0] == 250
    except (smtplib.SMTPException, OSError):
        return False


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


def maildir_path(url: str, *, outbox: Path) -> Path | None:
    """The Maildir a `maildir:` DRIP_MAIL_URL writes to (`outbox` when it names none), or
    None for a relay."""
    parts = urlsplit(url)
    if parts.scheme != "maildir":
        return None
    return Path(parts.path) if parts.path else outbox


def transport_from_url(
    url: str,
    *,
    outbox: Path,
    max_per_connection: int = 100,
    timeout: float = SMTP_TIMEOUT,
    allow_plaintext: bool = False,
) -> Transport:
    path = maildir_path(url, outbox=outbox)
    if path is not None:
        return MaildirTransport(path)
    return SMTPTransport(
        url,
        max_per_connection=max_per_connection,
        timeout=timeout,
        allow_plaintext=allow_plaintext,
    )

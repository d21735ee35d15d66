"""The SMTP check: log in to the relay the way the worker does, sending nothing."""

from __future__ import annotations

import smtplib
import ssl
from urllib.parse import unquote, urlsplit

from drip.dns_names import is_loopback
from drip.doctor.config import sends_real_mail
from drip.doctor.report import Check, Level
from drip.settings import Settings
from drip.transports import tls_context

SMTP_TIMEOUT = 15


def smtp_relay(settings: Settings, *, tls: ssl.SSLContext | None = None) -> Check:
    """Log in the way the worker does, and say which step failed."""
    name = "SMTP relay"
    if not sends_real_mail(settings):
        return Check(name, Level.OK, "Maildir outbox: nothing is sent (a laptop setup)")
    parts = urlsplit(settings.mail_url)
    host, implicit_tls = parts.hostname or "localhost", parts.scheme == "smtps"
    port = parts.port or (465 if implicit_tls else 587)
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    context = tls or tls_context(host)
    where = f"{host}:{port}"
    notes = []
    try:
        if implicit_tls:
            conn: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=SMTP_TIMEOUT, context=context)
        else:
            conn = smtplib.SMTP(host, port, timeout=SMTP_TIMEOUT)
        with conn:
            conn.ehlo()
            if not implicit_tls and conn.has_extn("starttls"):
                conn.starttls(context=context)
                conn.ehlo()
            elif not implicit_tls and is_loopback(host):
                notes.append("no STARTTLS (allowed only for a relay on this machine)")
            elif not implicit_tls:
                return Check(
                    name,
                    Level.ERROR,
                    f"{where} offers no STARTTLS; drip refuses to send in plaintext",
                    "use the relay's TLS port (587 with STARTTLS, or smtps:// on 465)",
                )
            if user:
                conn.login(user, password)
            elif not is_loopback(host):
                notes.append("no login in DRIP_MAIL_URL; most relays require one")
    except smtplib.SMTPAuthenticationError as exc:
        return Check(
            name,
            Level.ERROR,
            f"{where} refused the login for {user!r}: {exc.smtp_code} {_text(exc.smtp_error)}",
            "check the user and password in DRIP_MAIL_URL (URL-encode special characters)",
        )
    except smtplib.SMTPNotSupportedError:
        return Check(
            name, Level.ERROR, f"{where} offers no AUTH", "use the relay's submission port"
        )
    except ssl.SSLError as exc:
        return Check(
            name,
            Level.ERROR,
            f"TLS with {where} failed: {exc}",
            "name the relay in DRIP_MAIL_URL as its certificate does, and give it a "
            "certificate the system trusts; a relay on this machine can be named "
            "127.0.0.1 or localhost, whose certificate drip does not check",
        )
    except (smtplib.SMTPException, OSError) as exc:
        return Check(
            name,
            Level.ERROR,
            f"cannot talk to {where}: {exc}",
            "check host and port in DRIP_MAIL_URL",
        )
    if notes:
        return Check(name, Level.WARNING, f"{where}: " + "; ".join(notes))
    return Check(name, Level.OK, f"{where}: TLS and login accepted")


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else reply

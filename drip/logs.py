"""Logging for every drip process, set up in one place (web, worker, scheduler, CLI).

DRIP_LOG_FORMAT=json writes one JSON object per line, for a log shipper: time, level,
logger, message, and the fields a log call passes with `extra=` (delivery_id,
subscriber_id). `text` is for people reading a terminal.

Either way every line is redacted before it is written: email addresses, signed link
tokens (they open someone's unsubscribe or privacy page; in a link, the whole segment
where the token goes, however mangled) and the configured secrets are
blanked, and IP addresses cut to their network, whoever wrote the log call and whatever
an exception message quotes (standards.md LAW-15). Ids are what a log line may carry,
never the address.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

from drip.settings import Settings

TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+(?:@|%40)[\w-]+(?:\.[\w-]+)+")
"""An address, its @ written as such or percent-encoded, as a logged URL quotes it."""
TOKEN = re.compile(
    r"(?<![\w.-])\.?[\w-]+\.[\w-]{5}[AQgw]\.(?:[\w-]{42}|[\w-]{26})[AEIMQUYcgkosw048]"
    r"(?![\w-]|\.[\w-])"
)
"""An itsdangerous signed value: payload.timestamp.signature, as in drip's links and
Flask's cookies (a compressed payload starts with a dot), a whole dotted word of its
own. Its shape is exact, so dotted Python names in a traceback are left alone: the
timestamp is four bytes in base64, six characters whose last holds two bits (A, Q, g or
w) until 2106; the signature an HMAC-SHA1 (27 characters) or SHA-256 (43) one, whose
last character holds four bits."""
TOKEN_ROUTES = ("confirm", "unsubscribe", "resubscribe", "preferences", "privacy")
"""The first segment of every route that takes a signed token (drip.web), which the
segment after it is."""
SEGMENT = r"[^/\s?#\"'<>\[\]]"
ROUTE_TOKEN = re.compile(
    rf"(/(?:{'|'.join(TOKEN_ROUTES)})/)(?!(?:sent|test-email)(?!{SEGMENT})){SEGMENT}+"
)
"""The token segment of such a link, whatever its length: a link cut short or mangled in
copying, which TOKEN's exact shape misses, still opens no one's page, but its remaining
characters are most of someone's token. /privacy/sent and /unsubscribe/test-email
(drip.proofs) are pages, not tokens, and stay."""
OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = rf"(?:{OCTET}\.){{3}}{OCTET}"
IP = re.compile(
    rf"(?<![\w.:])[0-9a-f]{{0,4}}(?::[0-9a-f]{{0,4}}){{2,7}}(?:(?<=:){IPV4})?"
    r"(?:(?<=[0-9a-f])|(?<=::))(?!\w|[.:][0-9a-f])"
    rf"|(?<![\w.]){IPV4}(?!\w|\.\d)",
    re.IGNORECASE,
)
"""What may be an IPv4 or IPv6 address, not part of a longer dotted or colon-separated
word (a version, a time). `ipaddress` then decides: 12:30:45 looks like IPv6 to this but
is no address."""
KEPT_BITS = {4: 24, 6: 48}
"""The prefix of an address a log line keeps, by IP version: an IPv4 address loses its
last octet, an IPv6 one all but its site's /48, as Google Analytics anonymises."""
RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
CHATTY = ("flufl.bounce", "alembic.runtime.plugins")
"""Libraries whose INFO lines are their own tracing: flufl.bounce logs each detector it
tries, a dozen lines for every plain-text bounce, into the output cron mails; Alembic
each of its seven plugins before every upgrade."""


class Redactor:
    """Blanks secrets, email addresses and signed tokens in a piece of log text, and
    cuts IP addresses to their network."""

    def __init__(self, secrets: Iterable[str]) -> None:
        words = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._secrets = re.compile("|".join(map(re.escape, words))) if words else None

    def __call__(self, text: str) -> str:
        if self._secrets is not None:
            text = self._secrets.sub("[secret]", text)
        text = ROUTE_TOKEN.sub(r"\1[token]", EMAIL.sub("[email]", text))
        return IP.sub(_network, TOKEN.sub("[token]", text))


def _network(match: re.Match[str]) -> str:
    """An address cut to its network (203.0.113.7 to 203.0.113.0), so a log line says
    where a request came from but not who sent it. Loopback names no one and stays."""
    try:
        address = ipaddress.ip_address(match[0])
    except ValueError:
        return match[0]
    if address.is_loopback:
        return match[0]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return f"::ffff:{_cut(address.ipv4_mapped)}"
    return _cut(address)


def _cut(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    network = ipaddress.ip_network(f"{address}/{KEPT_BITS[address.version]}", strict=False)
    return str(network.network_address)


class RedactingFilter(logging.Filter):
    """Rewrites a record in place, so every formatter downstream sees only redacted text."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken log call; logging reports it when formatting
            return True
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for name, value in extra_fields(record).items():
            if isinstance(value, str):
                setattr(record, name, self.redact(value))
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **extra_fields(record),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is when a record arrives: a Dramatiq worker process
    swaps it for a pipe to its parent after the handler exists."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """What the log call added with `extra=`."""
    return {k: v for k, v in vars(record).items() if k not in RECORD_FIELDS}


def log_fields(delivery: Any, **more: str) -> dict[str, Any]:
    """The `extra=` of a log line about one delivery: its ids, never its address."""
    return {"delivery_id": delivery.id, "subscriber_id": delivery.subscriber_id, **more}


def configure_logging(settings: Settings, *, take_over: bool = False) -> None:
    """Send drip's logs to standard error in the configured format, redacted.

    Safe to call again (create_app runs once per test): it replaces the handler an
    earlier call installed. `take_over` also removes handlers someone else installed,
    for processes drip owns whole, such as a Dramatiq worker.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if take_over or isinstance(handler, StderrHandler):
            root.removeHandler(handler)
    handler = StderrHandler()
    handler.addFilter(RedactingFilter(Redactor(settings.secrets)))
    handler.setFormatter(
        JsonFormatter() if settings.log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def held_back(name: str) -> Iterator[None]:
    """A logger's lines below WARNING left out while the block runs, for a step whose
    caller reports it in a line of its own."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(before)

"""Structured logs: one JSON object per line with the delivery's ids, and never an email
address, a signed link token, a configured secret or a full IP address, whoever wrote
the log call (standards LAW-15)."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from itsdangerous import URLSafeTimedSerializer

from drip.clock import FixedClock
from drip.logs import TOKEN_ROUTES, Redactor, configure_logging
from drip.sending import send_delivery
from drip.tokens import Tokens
from drip.web import create_app
from tests.helpers import System

SQLITE_ONLY = pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)
"""These prove HTTP, logging or auth behaviour that does not depend on the database."""


@pytest.fixture
def json_logs(system: System) -> Iterator[None]:
    configure_logging(dataclasses.replace(system.settings, log_format="json"))
    yield
    configure_logging(system.settings)


def lines(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


@SQLITE_ONLY
def test_a_worker_logs_one_json_object_per_event_with_ids_and_no_address(
    system: System, json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    system.signup("ana@example.com")
    delivery_id = system.enqueued[-1]
    system.smtp.script("ana@example.com", "451 4.2.1 <ana@example.com>: mailbox busy")
    capsys.readouterr()

    send_delivery(system.mailer, delivery_id)  # refused for now: retried later
    send_delivery(system.mailer, delivery_id)  # not due yet: nothing to log

    err = capsys.readouterr().err
    assert "ana@example.com" not in err
    retry = next(e for e in lines(err) if e["logger"] == "drip.sending")
    subscriber_id = system.subscriber("ana@example.com").id
    assert retry["level"] == "INFO"
    assert retry["delivery_id"] == delivery_id
    assert retry["subscriber_id"] == subscriber_id
    assert "retrying" in str(retry["message"]) and "[email]" in str(retry["message"])
    assert str(retry["time"]).endswith("+00:00")


@SQLITE_ONLY
def test_secrets_tokens_and_addresses_are_blanked_even_in_tracebacks(
    system: System, json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    token = system.mailer.tokens.make("drip.unsubscribe", [42])
    log = logging.getLogger("drip.test")
    try:
        raise RuntimeError(f"key {system.settings.secret_key} for bob@example.org")
    except RuntimeError:
        log.exception(
            "GET /unsubscribe/%s from %s", token, "bob@example.org", extra={"to": "x@y.io"}
        )

    err = capsys.readouterr().err
    (entry,) = [e for e in lines(err) if e["logger"] == "drip.test"]
    assert entry["message"] == "GET /unsubscribe/[token] from [email]"
    assert entry["to"] == "[email]"
    assert "key [secret] for [email]" in str(entry["exception"])
    for leaked in (system.settings.secret_key, token, "bob@example.org"):
        assert leaked not in err


@SQLITE_ONLY
def test_text_logs_are_redacted_too(system: System, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(system.settings)
    logging.getLogger("drip.test").warning("bounce from %s", "carol@example.net")
    err = capsys.readouterr().err
    assert "drip.test WARNING bounce from [email]" in err
    assert "carol@example.net" not in err


@SQLITE_ONLY
def test_addresses_percent_encoded_in_a_logged_url_are_blanked(
    system: System, capsys: pytest.CaptureFixture[str]
) -> None:
    """An admin's search puts the address in the query string, which the request log
    (Werkzeug's, here as it writes it) quotes as the browser sent it: @ as %40."""
    configure_logging(system.settings)
    for query in ("ana%40example.com", "ana%2Bnews%40Example.COM", "bob.b%40mail.example.org"):
        logging.getLogger("werkzeug").info(
            '%s - - [30/Nov/2026 10:00:00] "%s" %s -',
            "127.0.0.1",
            f"GET /admin/subscribers/?q={query} HTTP/1.1",
            "200",
        )
    err = capsys.readouterr().err
    assert err.count("[email] HTTP/1.1") == 3
    for leaked in ("ana", "example.com", "Example.COM", "bob.b", "mail.example.org"):
        assert leaked not in err


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("client", "kept"),
    [
        ("203.0.113.57", "203.0.113.0"),
        ("2001:db8:85a3:8d3:1319:8a2e:370:7348", "2001:db8:85a3::"),
        ("2001:DB8:85A3::7", "2001:db8:85a3::"),
        ("::ffff:198.51.100.23", "::ffff:198.51.100.0"),
    ],
)
def test_a_request_log_keeps_only_the_network_of_the_client_address(
    system: System, capsys: pytest.CaptureFixture[str], client: str, kept: str
) -> None:
    """A client address in a log line is cut to its network, as analytics tools do: the
    last octet of an IPv4 address, all but the /48 of an IPv6 one (standards LAW-15). The
    full address is consent evidence, kept in the consent events only."""
    configure_logging(system.settings)
    logging.getLogger("werkzeug").info(
        '%s - - [30/Nov/2026 10:00:00] "%s" %s -', client, "POST /subscribe HTTP/1.1", "303"
    )
    err = capsys.readouterr().err
    assert f'{kept} - - [30/Nov/2026 10:00:00] "POST /subscribe HTTP/1.1" 303 -' in err
    assert client not in err


@SQLITE_ONLY
def test_addresses_anywhere_in_a_line_are_cut_and_nothing_else_is(
    system: System, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only real addresses: times, versions, dotted numbers, ids and MAC addresses stay
    as written; the loopback address names no one and stays too."""
    configure_logging(system.settings)
    untouched = (
        "at 12:30:45 on 2026-11-30T10:00:00.123+00:00, drip 3.13.0 on Python 3.13.0",
        "delivery 42 sent to subscriber 7 after 1.5 s; 256.1.2.3, 1.2.3.04, 1.2.3.4.5 are not",
        "batch 2026.11.30.2 of series 550e8400-e29b-41d4-a716-446655440000",
        "nic 00:1a:2b:3c:4d:5e, ratio 10:1, 1:2:3, redis at 127.0.0.1:6379 and [::1]:6379",
    )
    log = logging.getLogger("drip.test")
    for line in untouched:
        log.info("%s", line)
    log.warning(
        "from %s, %s: ip:%s.",
        "192.0.2.1:5031, [2001:db8::1]:443",
        "fe80::1ff:fe23:4567:890a",
        "198.51.100.7",
    )
    err = capsys.readouterr().err
    for line in untouched:
        assert line in err
    assert "from 192.0.2.0:5031, [2001:db8::]:443, fe80::: ip:198.51.100.0." in err


@pytest.mark.parametrize("year", [2026, 2090])
def test_signed_tokens_are_blanked_wherever_a_line_quotes_them(year: int) -> None:
    """drip's links, short payload or long, and a compressed itsdangerous value such as
    Flask's session cookie, in a URL, at the end of a sentence or in quotes."""
    tokens = Tokens(["k" * 32], FixedClock(datetime(year, 3, 1, tzinfo=UTC)))
    signed = [
        tokens.make("drip.unsubscribe", [42]),
        tokens.make("drip.privacy", [2**62, 7, 123456789]),
        tokens.make("drip.confirm", []),
        URLSafeTimedSerializer("k" * 32).dumps({"csrf_token": "ab" * 20}),
    ]
    redact = Redactor([])
    for token in signed:
        for line in (
            f"GET /unsubscribe/{token} HTTP/1.1",
            f"POST /privacy/{token}/erase",
            f"bad link {token}.",
            f'cookie="{token}"',
        ):
            assert token not in redact(line)
            assert "[token]" in redact(line)


@pytest.mark.parametrize("cut", [1, 20, 60])
@pytest.mark.parametrize("route", TOKEN_ROUTES)
def test_a_link_token_cut_short_is_blanked_all_the_same(route: str, cut: int) -> None:
    """A link mangled in copying (a character lost, a line break in the middle) no longer
    has a signed value's exact shape, but what is left of it is most of someone's token
    (README: "link tokens ... are redacted"). Its whole path segment is blanked; the
    fixed pages beside the token routes stay."""
    token = Tokens(["k" * 32], FixedClock(datetime(2026, 3, 1, tzinfo=UTC))).make(
        "drip.privacy", [2**62, 7, 123456789]
    )
    short = token[:-cut]
    redact = Redactor([])
    for line, blanked in (
        (f"GET /{route}/{short} HTTP/1.1", f"GET /{route}/[token] HTTP/1.1"),
        (f"POST https://drip.example.com/{route}/{short}/erase", f"/{route}/[token]/erase"),
        (f'"/{route}/{short}?next=1"', f'"/{route}/[token]?next=1"'),
    ):
        assert short not in redact(line) and blanked in redact(line), redact(line)
    for page in ("GET /privacy/sent HTTP/1.1", "GET /unsubscribe/test-email", "GET /privacy"):
        assert redact(page) == page


@SQLITE_ONLY
def test_every_route_that_takes_a_token_is_one_the_log_blanks(system: System) -> None:
    """A new route taking a token must be added to drip.logs.TOKEN_ROUTES."""
    app = create_app(
        system.settings,
        clock=system.clock,
        enqueue=system.enqueue,
        signups=system.enqueue_signups,
    )
    try:
        routes = {
            rule.rule.split("/")[1]
            for rule in app.url_map.iter_rules()
            if "token" in rule.arguments
        }
    finally:
        app.extensions["drip"].engine.dispose()
    assert routes == set(TOKEN_ROUTES)


def test_dotted_names_in_a_traceback_are_kept() -> None:
    """Module paths and attribute chains are not tokens, however many dots they have."""
    untouched = (
        "<sqlalchemy.orm.attributes.InstrumentedAttribute object at 0x7f3a2c1d0e50>",
        "sqlalchemy.orm.session.SessionTransaction._connection_for_bind",
        "    conn = self._parent._connection_for_bind(engine, execution_options)",
        "    self.dialect.type_compiler_instance.process(type_)",
        '  File "/srv/drip/.venv/lib/python3.13/site-packages/redis/connection.py"',
    )
    redact = Redactor([])
    for line in untouched:
        assert redact(line) == line

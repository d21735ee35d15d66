"""Structured logs: one JSON object per line with the delivery's ids, and never an email
address, a signed link token or a configured secret, whoever wrote the log call."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator

import pytest

from drip.logs import configure_logging
from drip.sending import send_delivery
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

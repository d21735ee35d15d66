"""Reading a mailed report: what it says and what it is tied by (drip.reports)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from drip.reports import MAX_SIZE, parse
from tests.helpers import nested_parts
from tests.test_bounces import bounce_with_unreadable_copy, fixture

ABSURD_DATE = b"Mon, 26 Oct 2026 08:01:10 +99999999999999999999"


def test_an_absurd_date_is_no_date_and_the_report_is_still_read() -> None:
    """Anyone can mail a bounce; a date too large for a C integer made Python raise
    OverflowError, past the guard, so the message was never deleted or held and stopped
    every later `drip bounces process` (BNC-04: it never crashes the worker)."""
    warning = fixture("exim_delayed.eml").replace(b"Mon, 26 Oct 2026 08:01:10 +0000", ABSURD_DATE)
    assert [(r.kind, r.recipient, r.dated) for r in parse(warning)] == [
        ("soft", "bob@example.com", None)
    ]
    bad_header = b"Date: " + ABSURD_DATE + b"\r\n"
    assert [
        (r.kind, r.recipient, r.dated) for r in parse(bad_header + fixture("qmail_hard.eml"))
    ] == [("hard", "ana@example.com", None)]
    (dsn,) = parse(bad_header + fixture("dsn_hard.eml"))
    assert (dsn.kind, dsn.dated) == ("hard", datetime(2026, 10, 26, 8, 1, 10, tzinfo=UTC))


def test_a_plain_text_bounce_that_fails_to_read_is_held_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As a malformed DSN is: the batch behind it goes on, and a person reads it. It was
    nothing, and so deleted as not a report."""
    (readable,) = parse(fixture("ndr_exchange_2000.eml"))
    assert (readable.kind, readable.recipient) == ("soft", "ana@example.com")
    assert parse(bounce_with_unreadable_copy()) is None
    assert "unreadable report or bounce held (OverflowError: " in caplog.text


def test_an_exim_dsn_that_gives_only_the_generic_5_0_0_is_soft() -> None:
    """Exim gave up on Bob after days of failed connections: "Action: failed", "Status:
    5.0.0" (Exim's for every failure) and no Diagnostic-Code. The same bounce in plain
    text has no code and is soft; BNC-02 bars only a permanent failure. A 5.0.0 with a
    permanent reply in its Diagnostic-Code is hard."""
    (report,) = parse(
        fixture("exim_dsn_connection_timeout.eml", "<d5.0123456789@drip.example.com>")
    )
    assert (report.kind, report.recipient, report.message_id) == (
        "soft",
        "bob@example.com",
        "<d5.0123456789@drip.example.com>",
    )
    unknown = fixture("exim_dsn_retry_timeout.eml").replace(
        b"Diagnostic-Code: smtp; 452 4.2.2 <bob@example.com>: Mailbox full",
        b"Diagnostic-Code: smtp; 550 5.1.1 <bob@example.com>: User unknown",
    )
    assert [r.kind for r in parse(unknown)] == ["hard"]


@pytest.mark.parametrize("action", ["relayed", "delivered", "expanded", "Delivered (to mailbox)"])
def test_a_dsn_that_reports_a_success_is_no_bounce_and_not_held(action: str) -> None:
    """RFC 3464 section 2.3.3: a server sends these for NOTIFY=SUCCESS, or when it relays
    the email to one that sends no DSNs. Each was read as a soft bounce, so three success
    receipts in a row stopped a reader whose mail arrived (DEL-05)."""
    success = fixture("dsn_relayed.eml").replace(b"Action: relayed", f"Action: {action}".encode())
    assert parse(success) == [], "not a report: deleted"


def test_a_dsn_reports_its_failed_recipients_and_not_the_others() -> None:
    both = fixture("dsn_hard.eml").replace(
        b"User unknown\r\n",
        b"User unknown\r\n\r\nFinal-Recipient: rfc822; bob@example.com\r\n"
        b"Action: delivered\r\nStatus: 2.0.0\r\n",
    )
    assert [(r.kind, r.recipient) for r in parse(both)] == [("hard", "ana@example.com")]
    error = fixture("dsn_hard.eml").replace(b"Action: failed", b"Action: error")
    assert [r.kind for r in parse(error)] == ["hard"], "OpenSMTPD's word for failed"
    unknown = fixture("dsn_hard.eml").replace(b"Action: failed", b"Action: vanished")
    assert parse(unknown) is None, "held: an Action no one foresaw"


def test_a_message_nested_too_deep_to_parse_is_held_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Python's parser raised RecursionError on it before the guard, and anyone can mail
    one: the batch stopped there on every run."""
    assert parse(nested_parts()) is None
    assert "unreadable report or bounce held (RecursionError: " in caplog.text
    assert parse(nested_parts(20)) == [], "read: nesting alone is no fault"


def test_a_message_larger_than_any_report_is_held_unread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bounce is read whatever its size was: one of 50 MB took 5 s and 600 MB to parse,
    on every run that reads the Maildir."""
    bounce = fixture("qmail_hard.eml")
    padded = bounce + b"x" * (MAX_SIZE - len(bounce))
    assert [r.kind for r in parse(padded)] == ["hard"]
    assert parse(padded + b"x") is None
    assert f"message of {MAX_SIZE + 1} bytes held unread" in caplog.text


@pytest.mark.parametrize(
    ("written", "with_nul"),
    [
        (b"Final-Recipient: rfc822; ana", b"Final-Recipient: rfc822; a\x00na"),
        (b"Original-Recipient: rfc822; ana", b"Original-Recipient: rfc822; a\x00na"),
        (b"Message-ID: <d1.x@", b"Message-ID: <d1\x00x@"),
        (b"To: hello@", b"To: hel\x00lo@"),
    ],
    ids=["recipient", "original-recipient", "message-id", "envelope"],
)
def test_a_report_naming_an_address_or_message_id_with_a_nul_is_held(
    caplog: pytest.LogCaptureFixture, written: bytes, with_nul: bytes
) -> None:
    """PostgreSQL refuses a NUL in a query's text: looking the address or Message-ID up
    raised outside `parse`'s guard, so `drip bounces process` stopped on it every run."""
    bounce = fixture("dsn_hard.eml", "<d1.x@drip.example.com>")
    assert [r.kind for r in parse(bounce)] == ["hard"]
    assert written in bounce
    assert parse(bounce.replace(written, with_nul, 1)) is None
    assert "held (InvalidInput: a report names an address or Message-ID with a NUL" in caplog.text

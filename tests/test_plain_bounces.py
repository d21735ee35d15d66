"""Bounces written for people: what their text says failed (drip.plain_bounces)."""

from __future__ import annotations

import email
from email.message import EmailMessage
from email.policy import default

import pytest

from drip.plain_bounces import failures, permanent, quoted_headers, smtp_codes
from tests.test_bounces import fixture


def message(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=default)
    assert isinstance(msg, EmailMessage)
    return msg


def kinds(raw: bytes) -> list[tuple[str, str]]:
    return failures(raw, message(raw))


@pytest.mark.parametrize(
    ("subject", "kind"),
    [
        ("failure notice", "hard"),
        ("Undeliverable: Warning signs of burnout", "hard"),
        ("Undelivered Mail Returned to Sender: Delayed onset", "hard"),
        ("Returned mail: see transcript for details", "hard"),
        ("Warning: message 1vQx2b-0004Zm-2C delayed 24 hours", "soft"),
        ("Warning: could not send message for past 4 hours", "soft"),
        ("Returned mail: warning: cannot send message for 4 hours", "soft"),
        ("Delayed Mail (still being retried)", "soft"),
        ("Delivery delayed:Warning signs of burnout", "soft"),
        ("Delivery Status Notification (Delay)", "soft"),
    ],
)
def test_only_a_delay_warnings_subject_makes_its_failures_soft(subject: str, kind: str) -> None:
    """A failure's subject may quote the original's: a lesson called "Warning signs of
    burnout" made every hard bounce of it soft."""
    raw = fixture("qmail_hard.eml").replace(
        b"Subject: failure notice", f"Subject: {subject}".encode()
    )
    assert kinds(raw) == [("ana@example.com", kind)]


@pytest.mark.parametrize("name", ["sendmail_plain.eml", "lotus_notes.eml"])
def test_the_original_is_found_after_sendmails_and_lotus_notes_copy_marks(name: str) -> None:
    """Its Message-ID and unsubscribe link tie the bounce to its email (BNC-04); only
    lines naming a "copy" were known, so these bounces were tied by address alone."""
    headers = quoted_headers(message(fixture(name, "<d1.x@drip.example.com>")))
    assert "Message-ID: <d1.x@drip.example.com>\n" in headers
    assert "List-Unsubscribe: <https://drip.example.com/unsubscribe/none>" in headers
    assert "Hi Ana" not in headers


def test_a_sendmail_bounce_is_judged_by_its_words_not_the_copy_it_returns() -> None:
    """The returned lesson's "450 muscles" made Ana's 550 soft. Sendmail's transcript of
    the session is the receiving server's words, not a copy: without the "(reason: ...)"
    line, its 550 still makes the failure hard."""
    raw = fixture("sendmail_plain.eml")
    assert kinds(raw) == [("ana@example.com", "hard")]
    no_reason = raw.replace(b"    (reason: 550 5.1.1 <ana@example.com>... User unknown)\r\n", b"")
    assert no_reason != raw
    assert kinds(no_reason) == [("ana@example.com", "hard")]


GMAIL = (
    "550-5.1.1 The email account that you tried to reach does not exist. Please try\n"
    "550-5.1.1 double-checking the recipient's email address for typos or\n"
    "550 5.1.1 https://support.google.com/mail/?p=NoSuchUser a1si2 - gsmtp"
)


@pytest.mark.parametrize(
    ("text", "codes"),
    [
        (GMAIL, ["550", "5.1.1"] * 3),
        (
            "SMTP error from remote mail server after RCPT TO:<x@example.com>: 550 5.1.1 "
            "<x@example.com>: User unknown",
            ["550", "5.1.1"],
        ),
        ("RCPT TO:<bob@example.com>:\n    452 4.2.2 <bob@example.com>: Full", ["452", "4.2.2"]),
        ("Remote host said: 550 5.1.1 <ana@example.com>: User unknown", ["550", "5.1.1"]),
        (
            "host mx.example.com[198.51.100.7] said: 452 4.2.2 <bob@example.com>: Mailbox "
            "full (in reply to RCPT TO command)",
            ["452", "4.2.2"],
        ),
        ("Sorry, no mailbox here by that name. #5.1.1", ["5.1.1"]),
        ("I wasn't able to establish an SMTP connection. (#4.4.1)", ["4.4.1"]),
        ("Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound", ["550", "5.1.10"]),
        ("Remote Server returned '550 4.4.7 QUEUE.Expired; message expired'", ["550", "4.4.7"]),
        ("<<< 550 5.1.1 <ana@example.com>... User unknown", ["550", "5.1.1"]),
        ("    (reason: 554 Service unavailable)", ["554"]),
        ("550-Verification failed for <x@example.com>", ["550"]),
    ],
)
def test_an_smtp_code_is_read_where_a_mail_system_quotes_a_reply(
    text: str, codes: list[str]
) -> None:
    assert smtp_codes(text) == codes


@pytest.mark.parametrize(
    "text",
    [
        "Giving up on 203.0.113.25 (after 450 seconds).",
        "message size 512 exceeds the limit",
        "Call us on 415-555-0100.",
        "Phone: 415-555-0100",
        "Phone: 415 555 0100",
        "Size: 512 000 bytes",
        "Phone: (555) 123-4567",
        "<user@452.pl>: mailbox unavailable",
        "tried on 4.5.24 and again",
        "host 2001:db8::451 refused",
        "https://status.example.com/550",
        "Received: by mx.example.net; 26 Oct 2026 08:01:12 -0000",
    ],
)
def test_a_number_that_is_no_quoted_reply_is_no_smtp_code(text: str) -> None:
    assert smtp_codes(text) == []


def test_a_stray_number_neither_softens_a_550_nor_hardens_a_failure_without_a_code() -> None:
    """A 4 beside a real 550 made it soft; a 5 beside a failure with no code made it
    hard, which bars the address for good."""
    delayed_giving_up = fixture("qmail_hard.eml").replace(
        b"Giving up on 203.0.113.25.", b"Giving up on 203.0.113.25 (after 450 seconds)."
    )
    assert kinds(delayed_giving_up) == [("ana@example.com", "hard")]
    exim = fixture("exim_failed.eml")
    diagnosis = exim.split(b"  cat@example.com\r\n")[1].split(b"\r\n\r\n")[0]
    unrouteable = exim.replace(diagnosis, b"    Unrouteable address (message size 512 KB)")
    assert kinds(unrouteable) == [("cat@example.com", "soft")]


@pytest.mark.parametrize(
    ("words", "judged"),
    [
        ("smtp; 550 5.1.1 <ana@example.com>: User unknown", True),
        ("5.1.1\n", True),
        ("5.0.0\nsmtp; 550 Unrouteable address", True),
        ("5.0.0\n", False),
        ("Sorry, it failed. (#5.0.0)", False),
        ("5.0.0\nsmtp; 452 4.2.2 <bob@example.com>: Mailbox full", False),
        ("550 5.1.1 <ana@example.com>\n452 4.2.2 <ana@example.com>", False),
        ("4.0.0\n", False),
        ("retry timeout exceeded", False),
    ],
)
def test_a_failure_is_permanent_only_by_a_code_that_says_why(words: str, judged: bool) -> None:
    """One rule for plain text and DSNs (BNC-02): a permanent code and no transient one;
    the generic 5.0.0 says only that delivery failed."""
    assert permanent(words) is judged

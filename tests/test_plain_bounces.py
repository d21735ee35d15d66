"""Bounces written for people: what their text says failed (drip.plain_bounces)."""

from __future__ import annotations

import email
from email.message import EmailMessage
from email.policy import default

import pytest

from drip.plain_bounces import failures, quoted_headers
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

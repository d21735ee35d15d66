"""Bounces written for people: what their text says failed (drip.plain_bounces)."""

from __future__ import annotations

import email
from email.message import EmailMessage
from email.policy import default

import pytest

from drip.plain_bounces import failures
from tests.test_bounces import fixture


def kinds(raw: bytes) -> list[tuple[str, str]]:
    msg = email.message_from_bytes(raw, policy=default)
    assert isinstance(msg, EmailMessage)
    return failures(raw, msg)


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

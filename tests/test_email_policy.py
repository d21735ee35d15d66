"""drip's email policy: policy.default's own headers, parsed and folded less often (SEC-07)."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage

import pytest

from drip.email_policy import POLICY, SHARED_NAMES


def message(**headers: str) -> EmailMessage:
    msg = EmailMessage(policy=POLICY)
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    return msg


def test_a_repeated_value_is_parsed_once_and_an_edited_one_anew() -> None:
    first = message(Subject="Day 1: water", Message_ID="<d1.a@drip.example.com>")
    second = message(Subject="Day 1: water", Message_ID="<d1.a@drip.example.com>")
    edited = message(Subject="Day 1: more water")
    assert first["Subject"] is second["Subject"]
    assert first["Message-ID"] is not second["Message-ID"], "per-email headers are not kept"
    assert str(edited["Subject"]) == "Day 1: more water"
    assert first["Subject"].name == "Subject"


@pytest.mark.parametrize("name", sorted(SHARED_NAMES))
def test_a_line_break_in_a_shared_header_is_refused_every_time(name: str) -> None:
    for _ in range(2):
        with pytest.raises(ValueError, match="linefeed"):
            message()[name] = "x\r\nBcc: victim@example.com"


def test_a_shared_header_folds_for_whichever_policy_writes_it() -> None:
    """The generator folds with a clone of its policy per part: the remembered fold must
    follow the settings (line ends, line length), not the first policy that asked."""
    subject = "Día 1 — " + "a rather long subject line " * 4
    ours, again = message(Subject=subject), message(Subject=subject)
    stock = EmailMessage(policy=policy.default)
    stock["Subject"] = subject
    narrow = policy.SMTP.clone(max_line_length=40)
    for wire in (policy.default, policy.SMTP, narrow, policy.default, narrow):
        assert ours.as_bytes(policy=wire) == again.as_bytes(policy=wire)
        assert ours.as_bytes(policy=wire) == stock.as_bytes(policy=wire), wire

"""drip's email policy: policy.default's own headers, parsed and folded less often, and
written by drip.email_policy.written_headers as the generator writes them (SEC-07)."""

from __future__ import annotations

from datetime import datetime
from email import policy
from email.errors import HeaderWriteError
from email.headerregistry import Address, HeaderRegistry
from email.message import EmailMessage

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from drip.email_policy import (
    POLICY,
    SHARED_NAMES,
    FoldedOnce,
    OneLineURIs,
    written_headers,
)


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


STOCK = policy.default.clone(header_factory=HeaderRegistry())
STOCK.header_factory.map_to_type("list-unsubscribe", OneLineURIs)
"""policy.default with the one difference drip asks for on purpose (OneLineURIs)."""


def stock_line(name: str, value: object) -> bytes:
    """The header as EmailMessage and stock policy.default write it for the wire."""
    msg = EmailMessage(policy=STOCK)
    msg[name] = value
    return msg.as_bytes(policy=policy.SMTP).removesuffix(b"\r\n")


texts = st.one_of(
    st.text(max_size=100),
    st.text(alphabet=" \t<>@.,:;\"'\\()=?_-aZé", max_size=90),
    st.text(alphabet="ab ", min_size=60, max_size=90),
    st.text(alphabet="abc/:?=.-_~%<>", max_size=1100),
)
display_names = texts.filter(lambda name: len(f"{name}.".splitlines()) == 1)
"""Names without a line separator: those are refused (see below)."""
NAMES = ["Subject", "List-Id", "Feedback-ID", "List-Unsubscribe", "Message-ID", "X-Key"]


def header_line(name: str, value: object) -> bytes:
    """The header as drip writes it: set on an EmailMessage with POLICY, then written."""
    msg = EmailMessage(policy=POLICY)
    msg[name] = value
    return written_headers(msg)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(NAMES), texts)
@example("Subject", "=?utf-8?q?caf=C3=A9?=")
@example("Message-ID", "<a b@c>")
@example("List-Unsubscribe", "<https://x.example/" + "u" * 960 + ">")
def test_a_text_header_is_written_as_the_standard_library_writes_it(name: str, value: str) -> None:
    """A line break is refused, and a raw non-ASCII Message-ID cannot be encoded, as before."""
    try:
        want = stock_line(name, value)
    except ValueError as exc:
        with pytest.raises(type(exc)):
            header_line(name, value)
        return
    assert header_line(name, value) == want


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["From", "To"]), display_names, st.sampled_from(["ana", "a.b+c", "j s"]))
def test_an_address_is_written_as_the_standard_library_writes_it(
    name: str, display_name: str, username: str
) -> None:
    address = Address(display_name, username, "example.com")
    assert header_line(name, str(address)) == stock_line(name, address)


@pytest.mark.parametrize("display_name", ["Eve\x0bBcc", "Eve\x1eBcc", "Eve\u2028Bcc", "Eve\x85Bcc"])
def test_a_name_holding_a_line_separator_is_refused(display_name: str) -> None:
    """An Address object skips the library's line-break check (it wrote these as
    encoded-words); its text, which drip sets, does not."""
    with pytest.raises(ValueError, match="linefeed"):
        header_line("To", str(Address(display_name, "eve", "example.com")))


@given(st.datetimes(timezones=st.none() | st.timezones()))
def test_a_date_is_written_as_the_standard_library_writes_it(date: datetime) -> None:
    assert header_line("Date", date) == stock_line("Date", date)


def test_a_fold_that_would_start_a_header_line_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The generator's check (CVE-2024-6923) runs on every fold written_headers writes."""
    monkeypatch.setattr(FoldedOnce, "fold", lambda self, policy: "Subject: a\r\nBcc: v@x\r\n")
    with pytest.raises(HeaderWriteError):
        header_line("Subject", "Día 1")


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_a_raw_value_that_would_fold_into_a_header_of_its_own_is_refused(newline: str) -> None:
    """CVE-2026-1299 (SEC-07): `set_raw` skips the CR/LF check, the value folds as it
    stands, and BytesGenerator before 3.13.12 (3.11.15, 3.12.13, 3.14.3) writes it as
    two headers, the second a real Bcc. written_headers refuses the fold on any Python."""
    msg = message(Subject="Day 1")
    msg.set_raw("X-Note", f"a{newline}Bcc: v@x")
    with pytest.raises(HeaderWriteError, match="newline"):
        written_headers(msg)
    folded_line = message(X_Note="a b " * 30)
    assert b"\r\n " in written_headers(folded_line), "a fold that continues a line passes"

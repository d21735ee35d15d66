"""The messages drip sends, parsed back with Python's email package (standards.md A, B, SEC-07)."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import parsedate_to_datetime

import pytest

from drip.errors import InvalidInput
from drip.messages import Envelope, build_message, message_id, recipient_address
from drip.rendering import RenderedEmail
from tests.helpers import System

SINGLE = ("From", "To", "Date", "Subject", "Message-ID", "MIME-Version")


@pytest.fixture
def lesson(system: System) -> EmailMessage:
    system.join("ana@example.com", first_name="Ana María", timezone="Europe/Berlin")
    system.clock.advance(timedelta(days=1, hours=3))
    system.tick()
    system.drain()
    received = system.smtp.to("ana@example.com")
    assert len(received) == 3, "confirmation, welcome, lesson 1"
    return received[2]


def parts(msg: EmailMessage) -> tuple[str, str]:
    plain, html = list(msg.iter_parts())
    assert plain.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    return str(plain.get_content()), str(html.get_content())


def test_required_headers_appear_exactly_once_and_are_well_formed(lesson: EmailMessage) -> None:
    for name in SINGLE:
        assert len(lesson.get_all(name) or []) == 1, name
    assert len(lesson["From"].addresses) == 1
    assert str(lesson["From"]) == "Calm Back <hello@drip.example.com>"
    assert lesson["To"].addresses[0].display_name == "Ana María"
    assert parsedate_to_datetime(str(lesson["Date"])).tzinfo is not None
    assert lesson["Auto-Submitted"] == "auto-generated"
    assert re.fullmatch(r"<d\d+\.[0-9a-f]{10}@drip\.example\.com>", str(lesson["Message-ID"]))
    assert re.fullmatch(r".*<feel-better\.drip\.example\.com>", str(lesson["List-Id"]))
    assert not lesson.get_all("Bcc")


def test_one_click_unsubscribe_headers_follow_rfc_8058(lesson: EmailMessage) -> None:
    assert re.fullmatch(
        r"<https://drip\.example\.com/unsubscribe/[\w.-]+>", str(lesson["List-Unsubscribe"])
    )
    assert lesson["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "@" not in str(lesson["List-Unsubscribe"]), "the token names an id, never the address"


def test_text_comes_first_then_html_and_both_carry_the_footer(lesson: EmailMessage) -> None:
    assert lesson.get_content_type() == "multipart/alternative"
    text, html = parts(lesson)
    unsubscribe_url = str(lesson["List-Unsubscribe"]).strip("<>")
    for body in (text, html):
        assert unsubscribe_url in body
        assert "12 Harbour Road, Victoria BC" in body
        assert "not medical advice" in body.lower()
    assert text.startswith(text.splitlines()[0]) and len(text.splitlines()[0]) >= 40
    assert 'class="preheader"' in html or "display: none" in html
    assert "<style" not in html, "CSS is inlined for mail clients that drop <style>"
    assert "Hi Ana María," in text


def test_the_preheader_opens_both_parts(lesson: EmailMessage, system: System) -> None:
    text, html = parts(lesson)
    preheader = text.splitlines()[0]
    body_start = html.index("<body")
    assert html.index(preheader.split()[0], body_start) < html.index("<h1", body_start)


def test_message_ids_are_stable_per_delivery_and_distinct_between_deliveries() -> None:
    first = message_id(7, secret="k", domain="drip.example.com")
    assert first == message_id(7, secret="k", domain="drip.example.com")
    assert first != message_id(8, secret="k", domain="drip.example.com")


@pytest.mark.parametrize(
    "name",
    [
        "Eve\r\nBcc: victim@example.com",
        "Eve\nBcc: victim@example.com",
        "A =?UTF-8?Q?=0A?=Bcc: victim@example.com",
        "A\x00B",
        "A\u2028B",
        "A\x85B",
    ],
)
def test_header_injection_through_a_name_is_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        recipient_address("ana@example.com", name)


def test_a_subscriber_name_cannot_add_headers(system: System) -> None:
    for payload in ("Eve\r\nBcc: v@example.com", "A =?UTF-8?Q?=0A?=Bcc: v@example.com"):
        with pytest.raises(InvalidInput):
            system.signup("eve@example.com", first_name=payload)
    system.drain()
    assert system.smtp.received == []


def test_an_erased_or_bounced_address_is_not_mailed_by_signing_it_up_again(system: System) -> None:
    system.signup("bob@example.com")
    system.drain()
    system.confirm("bob@example.com")
    system.smtp.script("bob@example.com", "550 5.1.1 No such user")
    system.drain()
    system.clock.advance(timedelta(hours=1))
    assert system.signup("bob@example.com") is None
    system.drain()
    assert len(system.smtp.to("bob@example.com")) == 1, "the confirmation only"


def _built(text: str, *, subject: str, name: str, list_id: str = "<s.drip.example.com>") -> bytes:
    envelope = Envelope(
        sender=Address("Calm Back", "hello", "drip.example.com"),
        recipient=recipient_address("ana@example.com", name),
        list_id=list_id,
        feedback_id="1:s:step:drip0000",
        unsubscribe_url="https://drip.example.com/unsubscribe/t",
        date=datetime(2026, 10, 24, 6, 0, tzinfo=UTC),
    )
    rendered = RenderedEmail(subject, "", f"<p>{text}</p>", text)
    return build_message(rendered, envelope, msgid="<d1.x@drip.example.com>").raw


def test_the_built_message_reads_back_exactly_as_written() -> None:
    subject = "Leçon 3 : la respiration, expliquée pas à pas, avec des exemples concrets " * 2
    name = 'Zoë "Jo" O\'Brien, Ph.D. ' + "é" * 60
    text = "Hi Zoë,\n" + "a line with = signs and trailing space \n" + "ü" * 300 + "\n.\nFrom here"
    raw = _built(text, subject=subject.strip(), name=name)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed["Subject"] == subject.strip()
    shown = parsed["To"].addresses[0].display_name
    # Python's parser puts a space between the encoded words of a folded name (RFC 2047
    # says to drop it); the standard library's own builder folds the same way
    assert shown.split() == name.split() or shown.replace(" ", "") == name.replace(" ", "")
    assert parsed["To"].addresses[0].addr_spec == "ana@example.com"
    plain, html = parts(parsed)
    assert plain.replace("\r\n", "\n") == text + "\n"
    assert html.replace("\r\n", "\n") == f"<p>{text}</p>\n"
    assert all(len(line) <= 78 for line in raw.split(b"\r\n")), "folded and QP-wrapped"
    assert b"\n" not in raw.replace(b"\r\n", b""), "CRLF line ends only"
    assert raw.isascii()


def test_a_part_cannot_end_early_with_a_line_that_looks_like_the_boundary() -> None:
    raw = _built("--==\n--==x==\n--==x==--", subject="s", name="")
    boundary = re.search(rb'boundary="([^"]+)"', raw).group(1)  # type: ignore[union-attr]
    assert raw.count(b"--" + boundary) == 3, "two parts open, one close"
    plain, _ = parts(email.message_from_bytes(raw, policy=email.policy.default))  # type: ignore[arg-type]
    assert plain.replace("\r\n", "\n") == "--==\n--==x==\n--==x==--\n"


@pytest.mark.parametrize(
    "list_id", ["<s.example.com>\r\nBcc: v@example.com", "<s>\nX: y", "<sé.example.com>"]
)
def test_a_header_value_with_a_line_break_or_raw_unicode_is_refused(list_id: str) -> None:
    with pytest.raises(ValueError):
        _built("x", subject="s", name="", list_id=list_id)

"""The messages drip sends, parsed back with Python's email package (standards.md A, B, SEC-07)."""

from __future__ import annotations

import dataclasses
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.headerregistry import Address, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime, parsedate_to_datetime
from zoneinfo import ZoneInfo

import pytest

from drip import headers, messages
from drip.dkim_signing import serialise
from drip.email_policy import OneLineURIs
from drip.errors import ConfigError, InvalidInput
from drip.messages import Envelope, build_message, message_id, recipient_address
from drip.rendering import RenderedEmail
from drip.tasks import setup_worker
from tests.helpers import System

SINGLE = ("From", "To", "Date", "Subject", "Message-ID", "MIME-Version")

ENVELOPE = Envelope(
    sender=Address("Calm Back", "hello", "drip.example.com"),
    recipient=recipient_address("ana@example.com", "Ana María"),
    list_id="<feel-better.drip.example.com>",
    feedback_id="1:feel-better:step:drip",
    unsubscribe_url="https://drip.example.com/unsubscribe/t0k3n",
    date=datetime(2026, 11, 29, 7, 0, tzinfo=UTC),
)


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


def test_a_long_unsubscribe_url_is_written_on_one_line_not_encoded() -> None:
    """Stock policy.default would write it as =?utf-8?q?...?= encoded-words, which RFC
    2369 does not allow; mailbox providers then offer no one-click unsubscribe."""
    url = "https://drip.example.com/unsubscribe/WzUwXQ.awz-Tg.mxC04WO8myOMx5j5nljMhI5lFqk"
    envelope = dataclasses.replace(ENVELOPE, unsubscribe_url=url)
    email = RenderedEmail("Day 1", "Drink first.", "<p>Drink.</p>", "Drink.")
    raw = serialise(build_message(email, envelope, msgid="<d1.x@drip.example.com>"), None)
    assert f"\r\nList-Unsubscribe: <{url}>\r\n".encode() in raw
    assert message_from_bytes(raw, policy=policy.default)["List-Unsubscribe"] == f"<{url}>"


def test_text_comes_first_then_html_and_both_carry_the_footer(lesson: EmailMessage) -> None:
    assert lesson.get_content_type() == "multipart/alternative"
    text, html = parts(lesson)
    unsubscribe_url = str(lesson["List-Unsubscribe"]).strip("<>")
    for body in (text, html):
        assert unsubscribe_url in body
        assert "12 Harbour Road, Victoria BC" in body
        assert "hello@drip.example.com" in body, "a way to reach the sender (CASL)"
        assert (
            "You are getting this because you signed up for Calm Back, Calm Mind and "
            "confirmed on 24 October 2026." in body
        ), "why the reader gets this mail (standards LAW-05)"
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


def test_the_message_is_byte_for_byte_what_stock_policy_default_builds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """drip's policy only reuses header classes, parsed headers and their folds: the bytes
    and the checks must not change, whichever policy writes the message and in what order.
    The one difference on purpose, List-Unsubscribe on one line, is given to stock too."""
    email = RenderedEmail("Día 1 — water", "Drink first.", "<p>é</p>" * 99, "Drink.\n" * 90)
    ours = build_message(email, ENVELOPE, msgid="<d1.x@drip.example.com>")
    again = build_message(email, ENVELOPE, msgid="<d1.x@drip.example.com>")
    stock_headers = HeaderRegistry()
    stock_headers.map_to_type("list-unsubscribe", OneLineURIs)
    monkeypatch.setattr(messages, "POLICY", policy.default.clone(header_factory=stock_headers))
    stock = build_message(email, ENVELOPE, msgid="<d1.x@drip.example.com>")
    assert type(ours["To"]) is type(again["To"]), "one class per header name"
    assert type(stock["To"]) is not type(ours["To"])
    assert ours["From"] is again["From"], "one parsed header per repeated value"
    for wire in (policy.default, policy.SMTP, policy.SMTP.clone(max_line_length=40), policy.SMTP):
        assert ours.as_bytes(policy=wire) == again.as_bytes(policy=wire)
        assert ours.as_bytes(policy=wire) == stock.as_bytes(policy=wire), wire
    with pytest.raises(ValueError, match="linefeed"):
        ours["Keywords"] = "x\nBcc: victim@example.com"


def test_threads_sharing_the_parsed_headers_build_the_same_bytes() -> None:
    """Worker threads share parsed headers and their folds (drip.email_policy); here half
    of them write with another policy, so a fold slot keeps changing under the others."""
    jobs = [
        (RenderedEmail(f"Day {n % 3}", "p", f"<p>{n}</p>", f"Lesson {n}.\n"), wire)
        for n in range(64)
        for wire in (policy.SMTP, policy.default)
    ]

    def written(job: tuple[RenderedEmail, policy.Policy]) -> bytes:
        email, wire = job
        return build_message(email, ENVELOPE, msgid="<d1.x@drip.example.com>").as_bytes(policy=wire)

    alone = [written(job) for job in jobs]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            for _ in range(5):
                assert list(pool.map(written, jobs)) == alone
    finally:
        sys.setswitchinterval(interval)


@pytest.mark.parametrize(
    "date",
    [
        datetime(2026, 11, 29, 7, 0, 5, 250_000, tzinfo=UTC),
        datetime(2026, 3, 29, 9, 30, tzinfo=ZoneInfo("Europe/Berlin")),
        datetime(2026, 3, 29, 9, 30),
    ],
)
def test_the_sender_as_text_and_the_date_as_a_datetime_are_written_as_before(
    date: datetime,
) -> None:
    """build_message passes the sender as text (so it is parsed once) and the date as a
    datetime (so it is not parsed back); stock policy.default wrote them the same from
    the Address and the formatted date."""
    sender = Address('Calm Back, "Ünï" Ltd.', "hello", "drip.example.com")
    ours = EmailMessage(policy=policy.default)
    ours["From"], ours["Date"] = str(sender), date
    before = EmailMessage(policy=policy.default)
    before["From"], before["Date"] = sender, format_datetime(date)
    assert ours.as_bytes(policy=policy.SMTP) == before.as_bytes(policy=policy.SMTP)


def test_a_body_holding_the_boundary_line_stays_inside_its_part() -> None:
    """Every message shares one boundary, safe only while both parts are quoted-printable."""
    fake = f"--{messages.BOUNDARY}\nContent-Type: text/plain\n\nBcc: v@example.com\n"
    email = RenderedEmail("s", "p", f"<pre>{fake}--{messages.BOUNDARY}--</pre>", fake)
    message = build_message(email, ENVELOPE, msgid="<d1.x@drip.example.com>")
    raw = serialise(message, None)
    assert raw.count(f"--{messages.BOUNDARY}".encode()) == 3, "two parts and the close"
    text, html = parts(message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=policy.default))
    assert text == fake + "\n"
    assert html == email.html + "\n"


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
    # Before the welcome is queued: the worker drain() left running may send it at once.
    system.smtp.script("bob@example.com", "550 5.1.1 No such user")
    system.confirm("bob@example.com")
    system.drain()
    system.clock.advance(timedelta(hours=1))
    assert system.signup("bob@example.com") is None
    system.drain()
    assert len(system.smtp.to("bob@example.com")) == 1, "the confirmation only"


def test_this_python_has_the_header_injection_fix() -> None:
    """SEC-07: CI fails on a Python without it (the Makefile looks for one that has it)."""
    assert headers.STDLIB_HEADERS_SAFE, f"Python {sys.version} lacks the CVE-2024-6923 fix"
    headers.require_safe_stdlib()


def test_a_worker_refuses_to_start_on_a_python_without_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(headers, "STDLIB_HEADERS_SAFE", False)
    with pytest.raises(ConfigError, match="CVE-2024-6923"):
        setup_worker()

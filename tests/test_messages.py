"""The messages drip sends, parsed back with Python's email package (standards.md A, B, SEC-07)."""

from __future__ import annotations

import dataclasses
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from drip import headers, messages
from drip.db import transaction
from drip.email_policy import POLICY
from drip.errors import ConfigError, InvalidInput
from drip.lessons import save_version
from drip.messages import (
    BOUNDARY,
    Envelope,
    build_message,
    idempotency_key,
    message_id,
    recipient_address,
)
from drip.models import Delivery, DeliveryKind, DeliveryStatus, Step
from drip.rendering import RenderedEmail
from drip.sending import send_delivery
from drip.series_files import read_series
from drip.settings import Settings, load_settings
from drip.subscriber_actions import resend
from drip.tasks import setup_worker
from drip.wiring import make_renderer
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


def parsed(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def stock_message(
    email: RenderedEmail, envelope: Envelope, *, msgid: str, idempotency_header: str = ""
) -> EmailMessage:
    """The oracle: the message as drip built it with the standard library's EmailMessage
    before it wrote the bytes itself (drip.messages), on the same header policy.

    The addresses go in as text, as the sender did then: an Address object skipped the
    library's line-break check, so a display name holding a line separator such as
    U+2028 (which recipient_address refuses first) was written as an encoded-word and
    is now refused. test_the_addresses_and_the_date_are_written_as_before shows the
    text and the object write the same bytes otherwise.
    """
    msg = EmailMessage(policy=POLICY)
    msg["From"] = str(envelope.sender)
    msg["To"] = str(envelope.recipient)
    msg["Subject"] = email.subject
    msg["Date"] = envelope.date
    msg["Message-ID"] = msgid
    msg["Auto-Submitted"] = "auto-generated"
    msg["List-Id"] = envelope.list_id
    msg["Feedback-ID"] = envelope.feedback_id
    msg["List-Unsubscribe"] = f"<{envelope.unsubscribe_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(email.text + "\n", subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.make_alternative(boundary=BOUNDARY)
    msg.add_alternative(email.html, subtype="html", charset="utf-8", cte="quoted-printable")
    if idempotency_header:
        msg[idempotency_header] = idempotency_key(msgid)
    return msg


def heads(raw: bytes) -> list[bytes]:
    """The header block of the message and of each part, as written."""
    sections = raw.split(f"--{BOUNDARY}\r\n".encode())
    return [section.split(b"\r\n\r\n", 1)[0] for section in sections]


def assert_written_as_stock(raw: bytes, stock: EmailMessage) -> None:
    """Every header line byte for byte as the standard library writes it (SEC-07), and
    the bodies as a parser reads them back. The bodies' bytes differ on purpose: binascii
    breaks lines at 76 characters where the pure-Python encoder breaks them at 78, and
    encodes a line that is only "."; only what a reader gets must not change.
    """
    want = stock.as_bytes(policy=policy.SMTP)
    assert heads(raw) == heads(want)
    assert parts(parsed(raw)) == parts(parsed(want))
    assert raw.count(f"--{BOUNDARY}".encode()) == 3, "two parts and the close"
    lines = raw.split(b"\r\n")
    assert lines.pop() == b"", "ends in CRLF"
    assert not any(b"\r" in line or b"\n" in line for line in lines), "CRLF line ends only"
    bodies = raw.split(b"\r\n\r\n", 1)[1].split(b"\r\n")
    assert max(len(line) for line in bodies) <= 76, "RFC 2045 6.7 (5)"


def assert_required_headers(msg: EmailMessage, *, to: str) -> None:
    """STD-01 on a message parsed from the bytes the SMTP server received."""
    for name in SINGLE:
        assert len(msg.get_all(name) or []) == 1, name
    assert len(msg["From"].addresses) == 1
    assert str(msg["From"]) == "Calm Back <hello@drip.example.com>"
    assert str(msg["To"]) == to
    assert msg["MIME-Version"] == "1.0"
    assert parsedate_to_datetime(str(msg["Date"])).tzinfo is not None
    assert not msg.get_all("Bcc")


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # message bytes only
def test_required_headers_appear_exactly_once_and_are_well_formed(lesson: EmailMessage) -> None:
    assert_required_headers(lesson, to="Ana María <ana@example.com>")
    assert lesson["Auto-Submitted"] == "auto-generated"
    assert re.fullmatch(r"<d\d+\.[0-9a-f]{10}@drip\.example\.com>", str(lesson["Message-ID"]))
    assert re.fullmatch(r".*<feel-better\.drip\.example\.com>", str(lesson["List-Id"]))


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # message bytes only
def test_the_confirmation_email_has_the_required_headers_too(system: System) -> None:
    """STD-01 names the confirmation as well as the lessons: it is a delivery of its own
    kind, with its own template and footer, so it is parsed on its own. It is addressed
    without the name (test_a_name_typed_on_the_form_stays_out_of_the_confirmation)."""
    system.signup("ana@example.com", first_name="Ana María")
    system.drain()
    (confirmation,) = system.smtp.to("ana@example.com")
    assert "confirm" in str(confirmation["Subject"]).lower()
    assert_required_headers(confirmation, to="ana@example.com")
    assert re.fullmatch(r"<d\d+\.[0-9a-f]{10}@drip\.example\.com>", str(confirmation["Message-ID"]))


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # message bytes only
def test_one_click_unsubscribe_headers_follow_rfc_8058(lesson: EmailMessage) -> None:
    assert re.fullmatch(
        r"<https://drip\.example\.com/unsubscribe/[\w.-]+>", str(lesson["List-Unsubscribe"])
    )
    assert lesson["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "@" not in str(lesson["List-Unsubscribe"]), "the token names an id, never the address"


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # renders only
def test_the_demo_footer_names_the_sender_once_then_the_postal_address(
    system: System, tmp_path: Path
) -> None:
    """The layout prints the sender's name before the postal address, so the demo
    address must not begin with the name as well."""
    demo = load_settings({"DRIP_INSTANCE": str(tmp_path)})
    settings = dataclasses.replace(
        system.settings, sender=demo.sender, postal_address=demo.postal_address
    )
    system.signup("ana@example.com")
    system.broker.client.flushall()
    send_delivery(dataclasses.replace(system.mailer, settings=settings), 1)
    (received,) = system.smtp.received
    text, html = parts(received.message)
    assert "drip demo, 1 Example Street, Springfield" in text
    assert "drip demo · 1 Example Street, Springfield" in html


def test_a_long_unsubscribe_url_is_written_on_one_line_not_encoded() -> None:
    """Stock policy.default would write it as =?utf-8?q?...?= encoded-words, which RFC
    2369 does not allow; mailbox providers then offer no one-click unsubscribe."""
    url = "https://drip.example.com/unsubscribe/WzUwXQ.awz-Tg.mxC04WO8myOMx5j5nljMhI5lFqk"
    envelope = dataclasses.replace(ENVELOPE, unsubscribe_url=url)
    email = RenderedEmail("Day 1", "Drink first.", "<p>Drink.</p>", "Drink.")
    raw = build_message(email, envelope, msgid="<d1.x@drip.example.com>")
    assert f"\r\nList-Unsubscribe: <{url}>\r\n".encode() in raw
    assert message_from_bytes(raw, policy=policy.default)["List-Unsubscribe"] == f"<{url}>"


def test_text_comes_first_then_html_and_both_carry_the_footer(lesson: EmailMessage) -> None:
    assert lesson.get_content_type() == "multipart/alternative"
    text, html = parts(lesson)
    unsubscribe_url = str(lesson["List-Unsubscribe"]).strip("<>")
    for body in (" ".join(text.split()), html):
        assert unsubscribe_url in body
        assert "12 Harbour Road, Victoria BC" in body
        assert "hello@drip.example.com" in body, "a way to reach the sender (CASL)"
        assert (
            "You are getting this because you signed up for Calm Back, Calm Mind and "
            "confirmed on 24 October 2026." in body
        ), "why the reader gets this mail (standards LAW-05)"
        assert "not medical advice" in body.lower()
    assert "<style" not in html, "CSS is inlined for mail clients that drop <style>"
    assert "Hi Ana María," in text


VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "wbr"}
)
Element = tuple[str, dict[str, str | None]]


class Ancestry(HTMLParser):
    """Each link to `href`, with the elements it sits in (innermost first) and its text."""

    def __init__(self, href: str) -> None:
        super().__init__()
        self.href = href
        self.open: list[Element] = []
        self.found: list[list[Element]] = []
        self.text = ""
        self.inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = (tag, dict(attrs))
        if tag == "a" and element[1].get("href") == self.href:
            self.found.append([element, *reversed(self.open)])
            self.inside = True
        if tag not in VOID:
            self.open.append(element)

    def handle_endtag(self, tag: str) -> None:
        self.inside = self.inside and tag != "a"
        for depth in range(len(self.open) - 1, -1, -1):
            if self.open[depth][0] == tag:
                del self.open[depth:]
                break

    def handle_data(self, data: str) -> None:
        if self.inside:
            self.text += data


def declarations(element: Element) -> dict[str, str]:
    pairs = (d.partition(":") for d in (element[1].get("style") or "").split(";"))
    return {name.strip().lower(): value.strip().lower() for name, _, value in pairs if value}


def hiding(element: Element) -> str:
    """What, in its attributes or inline style, hides the element or all inside it."""
    style = declarations(element)
    zero = re.compile(r"(?:0+(?:\.0*)?|\.0+)(?:px|pt|em|rem|%)?")
    tiny = re.fullmatch(r"(\d*\.?\d+)px", style.get("font-size", ""))
    checks = {
        "the hidden attribute": "hidden" in element[1],
        "aria-hidden": element[1].get("aria-hidden") == "true",
        "display: none": style.get("display") == "none",
        "visibility": style.get("visibility") in ("hidden", "collapse"),
        "opacity: 0": zero.fullmatch(style.get("opacity", "1")) is not None,
        "font-size: 0": zero.fullmatch(style.get("font-size", "1")) is not None,
        "font-size under 10px": tiny is not None and float(tiny[1]) < 10,
        "max-height: 0": zero.fullmatch(style.get("max-height", "1")) is not None,
        "mso-hide": style.get("mso-hide") == "all",
    }
    return ", ".join(name for name, hidden in checks.items() if hidden)


def inherited_hex(chain: list[Element], *properties: str) -> str:
    """The colour the first element of `chain` gets: its own or that of the nearest
    element around it that sets one of `properties`, as a hex colour."""
    for element in chain:
        style = declarations(element)
        for name in properties:
            found = re.search(r"#(?:[0-9a-f]{6}|[0-9a-f]{3})\b", style.get(name, ""))
            if found:
                return found[0]
            assert name not in style, f"{name}: {style[name]} is not a hex colour"
    raise AssertionError(f"nothing sets {properties}")


def contrast(foreground: str, background: str) -> float:
    """WCAG 2's contrast ratio of two hex colours, 1 to 21."""

    def luminance(colour: str) -> float:
        digits = colour[1:] if len(colour) == 7 else "".join(c * 2 for c in colour[1:])
        r, g, b = (int(digits[i : i + 2], 16) / 255 for i in (0, 2, 4))
        r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b))
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    lighter, darker = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # message text only
def test_the_unsubscribe_link_is_visible_in_every_email(
    lesson: EmailMessage, system: System
) -> None:
    """Standards UNS-07: present in both parts is not enough; the HTML link must not be
    hidden by its own style or that of anything around it (the way the preheader is), and
    must stand out from its background (WCAG's 4.5:1 for text)."""
    for mail in system.smtp.to("ana@example.com"):
        text, html = parts(mail)
        url = str(mail["List-Unsubscribe"]).strip("<>")
        assert re.search(rf"(?:^|\s){re.escape(url)}(?:\s|$)", text), "a URL clients link"
        ancestry = Ancestry(url)
        ancestry.feed(html)
        [chain] = ancestry.found
        assert "unsubscribe" in ancestry.text.lower()
        assert chain[-1][0] == "html", "every element around the link was seen"
        for element in chain:
            assert not hiding(element), (element, hiding(element))
        colour = inherited_hex(chain, "color")
        background = inherited_hex(chain, "background-color", "background")
        assert colour != background
        assert contrast(colour, background) >= 4.5, (colour, background)


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # message text only
def test_a_lessons_footer_says_its_unsubscribe_page_also_pauses_and_changes_the_hour(
    system: System,
) -> None:
    """The footer said only "Unsubscribe with one click", while that link's page is also
    where a reader pauses the emails or changes their hour, which no email mentioned.
    The confirmation's page only cancels the signup, so its footer does not say so."""
    system.join("ana@example.com")
    confirmation, welcome = system.smtp.to("ana@example.com")
    text, html = (" ".join(part.split()) for part in parts(welcome))
    url = str(welcome["List-Unsubscribe"]).strip("<>")
    assert f"or pause your emails or change their hour: {url}" in text
    assert (
        "Unsubscribe</a> with one click, at any time; the same page pauses your emails "
        "or changes their hour." in html
    )
    for body in parts(confirmation):
        assert "with one click, at any time" in body and "pause" not in body


def test_the_footer_dates_the_confirmation_on_the_readers_calendar(system: System) -> None:
    """Confirmed at 01:30 on 25 October in Auckland, when UTC's calendar still says the
    24th: the reader is told the day they remember (standards LAW-05)."""
    system.clock.advance(timedelta(hours=6, minutes=30))
    assert system.clock.now().astimezone(ZoneInfo("Pacific/Auckland")).hour == 1
    system.join("kiri@example.com", timezone="Pacific/Auckland")
    welcome = system.smtp.to("kiri@example.com")[-1]
    for body in parts(welcome):
        assert "confirmed on 25 October 2026." in body


@pytest.mark.parametrize("system_env", [{"DRIP_DEFAULT_TIMEZONE": "Pacific/Auckland"}])
def test_a_zone_the_server_no_longer_knows_dates_the_footer_by_the_default_zone(
    system: System,
) -> None:
    """As the scheduler times that reader (drip.schedule.zone_of): confirmed at 01:30 on
    25 October by DRIP_DEFAULT_TIMEZONE, still the 24th in UTC."""
    system.clock.advance(timedelta(hours=6, minutes=30))
    system.join("ana@example.com")
    with transaction(system.sessions) as session:
        ana = system.subscriber("ana@example.com", session=session)
        ana.timezone = "Mars/Olympus_Mons"
        welcome = session.scalars(
            sa.select(Delivery).where(Delivery.kind == DeliveryKind.STEP)
        ).one()
        welcome.status = DeliveryStatus.FAILED
        again = resend(
            session, welcome.id, ana.id, now=system.clock.now(), secret=system.settings.secret_key
        )
    system.enqueue([again])
    system.drain()
    received = system.smtp.to("ana@example.com")
    assert len(received) == 3, "confirmation, welcome, the welcome again"
    text, _html = parts(received[-1])
    assert "confirmed on 25 October 2026." in text


@pytest.mark.parametrize("system_env", [{}, {"DRIP_AD_NOTICE": "Advertisement"}], ids=["off", "on"])
@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # message text only
def test_an_advertisement_notice_can_be_switched_on_for_lessons_only(
    lesson: EmailMessage, system: System, system_env: dict[str, str]
) -> None:
    """Standards LAW-05: off by default; when set, every lesson's footer opens with it in
    both parts, and the confirmation email, which advertises nothing (STD-09), has none."""
    confirmation, welcome = system.smtp.to("ana@example.com")[:2]
    notice = system_env.get("DRIP_AD_NOTICE")
    for mail in (welcome, lesson):
        text, html = parts(mail)
        footer = html[html.index('class="footer"') :]
        if notice:
            assert re.search(r"\n-- \r?\nAdvertisement\r?\nYou are getting this", text)
            assert re.search(r">Advertisement</p>\s*<p[^>]*>You are getting this", footer)
        else:
            assert "Advertisement" not in text + html
    assert "Advertisement" not in "".join(parts(confirmation))


class FirstInBody(HTMLParser):
    """The first element inside <body>: its attributes and its text, and any text that
    came before it."""

    def __init__(self) -> None:
        super().__init__()
        self.in_body = False
        self.depth = 0
        self.attrs: dict[str, str | None] | None = None
        self.text = ""
        self.before = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.in_body = True
        elif self.in_body and self.attrs is None:
            self.attrs, self.depth = dict(attrs), 1
        elif self.depth:
            self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        if self.depth:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.text += data
        elif self.in_body and self.attrs is None:
            self.before += data


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # message text only
def test_the_preheader_opens_both_parts(lesson: EmailMessage, system: System) -> None:
    """Standards STD-04: the step's own preheader is the first element of <body>, hidden,
    and the first line of the text part; for the welcome and lesson 1 alike."""
    steps = {step.number: step for step in read_series(system.settings.emails_dir).steps}
    for number, mail in enumerate(system.smtp.to("ana@example.com")[1:]):
        preheader = " ".join(steps[number].template.preheader.split())
        assert "{" not in preheader and 40 <= len(preheader) <= 100
        text, html = parts(mail)
        assert text.splitlines()[0] == preheader
        first = FirstInBody()
        first.feed(html)
        assert first.attrs is not None and first.before.strip() == ""
        assert " ".join(first.text.split()) == preheader
        assert "display: none" in (first.attrs.get("style") or "")


class Links(HTMLParser):
    """Every URL an HTML part links to or loads; and, apart, its links and its images."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.hrefs: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("href", "src", "action") and v is not None]
        self.hrefs += [v for k, v in attrs if tag == "a" and k == "href" and v is not None]
        self.images += [v for k, v in attrs if tag == "img" and k == "src" and v is not None]


def links_of(html: str) -> Links:
    links = Links()
    links.feed(html)
    return links


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # message text only
def test_the_confirmation_email_links_only_to_confirm_privacy_and_unsubscribe(
    lesson: EmailMessage, system: System
) -> None:
    """Standards STD-09 (and LAW-20): the double opt-in email asks for the click and
    promotes nothing; the sign-up bonuses wait for the welcome email."""
    confirmation, welcome = system.smtp.to("ana@example.com")[:2]
    text, html = parts(confirmation)
    links = Links()
    links.feed(html)
    allowed = re.compile(r"https://drip\.example\.com/((confirm|unsubscribe)/[\w.-]+|privacy)")
    url = re.compile(r"(?:https?:|mailto:|www\.)[^\s<>\"')]+", re.IGNORECASE)
    for part, found in ((text, url.findall(text)), (html, links.urls + url.findall(html))):
        assert found, "the confirm link at least"
        for link in found:
            assert allowed.fullmatch(link), link
        assert re.search(r"/confirm/", part) and re.search(r"/unsubscribe/", part)

    welcome_text, _ = parts(welcome)
    bonuses = re.findall(r"^Bonus \d+: (.+)$", welcome_text, re.MULTILINE)
    assert len(bonuses) == 3, "the welcome's bonuses, to look for"
    titles = [b.title for b in read_series(system.settings.emails_dir).bonuses]
    for body in (text, html):
        for promotion in ("bonus", *bonuses, *titles):
            assert promotion.lower() not in body.lower(), promotion


WRITTEN_LINKS = """
<p>Read <a href="https://example.org/back?topic=stress&amp;from=lesson">the study</a>,
<a href="https://example.org/sleep#tips">sleep tips</a>
or <a href="mailto:help@example.org">write</a>.</p>
<p><img src="https://cdn.example.org/loop.png" alt="The pain loop" width="560"></p>
"""


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # message text only
def test_lessons_carry_no_tracking_pixel_and_every_link_as_written(system: System) -> None:
    """Standards LAW-17: drip has no open or click tracking, and no setting to turn it on,
    so a default render loads nothing from drip's own address and sends every click where
    the author pointed it, with no redirect in between. The shipped lessons link only to
    the unsubscribe page, so lesson 1 is saved with links and an image added."""
    assert not [f.name for f in dataclasses.fields(Settings) if "track" in f.name]
    welcome_step, step = read_series(system.settings.emails_dir).steps[:2]
    template = dataclasses.replace(
        step.template,
        body_html=step.template.body_html + WRITTEN_LINKS,
        body_text=step.template.body_text + "\n\nThe study: https://example.org/back?topic=stress",
    )
    system.join("ana@example.com")
    with transaction(system.sessions) as session:
        step_id = session.scalars(sa.select(Step.id).where(Step.number == 1)).one()
        renderer = make_renderer(system.settings)
        save_version(session, renderer, step_id, template, author="a", now=system.clock.now())
    system.clock.advance(timedelta(days=1, hours=3))
    system.tick()
    system.drain()
    _confirmation, welcome, lesson = system.smtp.to("ana@example.com")
    assert len(links_of(template.body_html).hrefs) == 3
    for mail, body_html in (
        (welcome, welcome_step.template.body_html),
        (lesson, template.body_html),
    ):
        source = links_of(body_html)
        _text, html = parts(mail)
        unsubscribe = str(mail["List-Unsubscribe"]).strip("<>")
        rendered = links_of(html)
        assert rendered.hrefs == [*source.hrefs, unsubscribe]
        assert rendered.images == source.images
        drips_own = [url for url in rendered.urls if url.startswith(system.settings.base_url)]
        assert drips_own == [unsubscribe], "no pixel, no redirect: only the unsubscribe page"
    assert "The study: https://example.org/back?topic=stress" in parts(lesson)[0]


def test_message_ids_are_stable_per_delivery_and_distinct_between_deliveries() -> None:
    first = message_id(7, secret="k", domain="drip.example.com")
    assert first == message_id(7, secret="k", domain="drip.example.com")
    assert first != message_id(8, secret="k", domain="drip.example.com")


def test_the_message_is_written_as_the_standard_library_wrote_it() -> None:
    email = RenderedEmail(
        "Día 1 — water, " + "a rather long subject " * 4,
        "Drink first.",
        "<p>é</p>\n" * 99 + "<p>" + "wide " * 40 + "</p>",
        "Drink.  \n.\nFrom here on: \t\n= =?x?= \r" * 30,
    )
    raw = build_message(email, ENVELOPE, msgid="<d1.x@drip.example.com>")
    assert_written_as_stock(raw, stock_message(email, ENVELOPE, msgid="<d1.x@drip.example.com>"))
    assert raw == build_message(email, ENVELOPE, msgid="<d1.x@drip.example.com>")


def test_the_idempotency_header_closes_the_top_level_headers() -> None:
    email = RenderedEmail("Day 1", "Drink first.", "<p>Drink.</p>", "Drink.")
    raw = build_message(
        email, ENVELOPE, msgid="<d1.x@drip.example.com>", idempotency_header="X-Key"
    )
    stock = stock_message(
        email, ENVELOPE, msgid="<d1.x@drip.example.com>", idempotency_header="X-Key"
    )
    assert_written_as_stock(raw, stock)
    assert heads(raw)[0].endswith(b"\r\nX-Key: d1.x@drip.example.com")
    assert len(heads(raw)) == 3
    plain = build_message(email, ENVELOPE, msgid="<d1.x@drip.example.com>")
    assert b"X-Key" not in plain


names = st.one_of(
    st.text(max_size=120),
    st.text(alphabet=' \t.,"\\()<>@:;=?_-aZé', max_size=40),
    st.sampled_from(["", "Ana María", "J. R. R. Tolkien", "Ana  María ", "=?utf-8?q?x?="]),
)
lines = st.one_of(
    st.text(max_size=200),
    st.text(alphabet=" \t.=-_Fromé\r\n", max_size=200),
    st.sampled_from([".", "..", "From me", "-- ", f"--{BOUNDARY}", " " * 80, "a" * 74 + " "]),
    st.integers(0, 300).map(lambda n: "wörd " * n),
)
bodies = st.lists(lines, max_size=12).flatmap(
    lambda parts: st.lists(
        st.sampled_from(["\n", "\r\n", "\r", ""]), min_size=len(parts), max_size=len(parts)
    ).map(lambda ends: "".join(part + end for part, end in zip(parts, ends, strict=True)))
)
display_names = names.filter(lambda name: "\r" not in name and "\n" not in name)
"""Address refuses a line break itself."""
envelopes = st.builds(
    lambda sender, recipient, list_id, feedback_id, url, date: dataclasses.replace(
        ENVELOPE,
        sender=Address(sender, "hello", "drip.example.com"),
        recipient=Address(recipient, "ana", "example.com"),
        list_id=list_id,
        feedback_id=feedback_id,
        unsubscribe_url=url,
        date=date,
    ),
    display_names,
    display_names,
    st.sampled_from(["<feel-better.drip.example.com>", "Feel <x.y>", "<" + "l" * 80 + ">"]),
    st.text(alphabet="abc:1 ", max_size=90),
    st.text(alphabet="abc/:?=.-_~%", max_size=1100).map(lambda path: "https://d.example/" + path),
    st.datetimes(timezones=st.none() | st.timezones()),
)
msgids = st.one_of(
    st.just("<d1.0123456789@drip.example.com>"),
    st.from_regex(r"<[a-z0-9.]{1,9}@[a-z.]{1,9}>", fullmatch=True),
    st.text(alphabet='<>@. ab"()', max_size=20),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names, bodies, bodies, envelopes, msgids, st.sampled_from(["", "X-Key"]))
@example("Day 1", "a" * 73 + "  \n" + "b" * 74 + "\t", ". \r.\n", ENVELOPE, "<a@b>", "X-Key")
def test_any_email_is_written_as_the_standard_library_wrote_it(
    subject: str, text: str, html: str, envelope: Envelope, msgid: str, idempotency: str
) -> None:
    """Subjects, names and bodies of every kind: the oracle decides, and a value it
    refuses (a line break in a header) is refused the same way."""
    email = RenderedEmail(subject, "", html, text)
    try:
        stock = stock_message(email, envelope, msgid=msgid, idempotency_header=idempotency)
        want: Exception | None = None
    except ValueError as exc:
        want = exc
    event("refused" if want else "compared")
    if want is not None:
        with pytest.raises(type(want)):
            build_message(email, envelope, msgid=msgid, idempotency_header=idempotency)
        return
    raw = build_message(email, envelope, msgid=msgid, idempotency_header=idempotency)
    assert_written_as_stock(raw, stock)


def test_threads_sharing_the_parsed_headers_build_the_same_bytes() -> None:
    """Worker threads share parsed headers and their folds (drip.email_policy); here half
    of the jobs write the same shared headers through EmailMessage with another policy,
    so a fold slot keeps changing under the others."""
    sender = Address("Calm Back, “Ünï” Ltd.", "hello", "drip.example.com")
    envelope = dataclasses.replace(ENVELOPE, sender=sender)
    jobs = [
        (
            RenderedEmail(f"Día {n % 3} — " + "water " * 12, "p", f"<p>{n}</p>", f"Lesson {n}.\n"),
            n % 2,
        )
        for n in range(128)
    ]

    def written(job: tuple[RenderedEmail, int]) -> bytes:
        email, through_email_message = job
        if through_email_message:
            stock = stock_message(email, envelope, msgid="<d1.x@drip.example.com>")
            return stock.as_bytes(policy=policy.default)
        return build_message(email, envelope, msgid="<d1.x@drip.example.com>")

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
def test_the_addresses_and_the_date_are_written_as_before(date: datetime) -> None:
    """build_message sets the addresses as text (so shared ones are parsed once); stock
    policy.default wrote them the same from the Address objects."""
    sender = Address('Calm Back, "Ünï" Ltd.', "hello", "drip.example.com")
    envelope = dataclasses.replace(ENVELOPE, sender=sender, date=date)
    email = RenderedEmail("Day 1", "p", "<p>Drink.</p>", "Drink.")
    ours = build_message(email, envelope, msgid="<d1.x@drip.example.com>")
    for name, value in (("From", sender), ("To", envelope.recipient), ("Date", date)):
        stock = EmailMessage(policy=policy.default)
        stock[name] = value
        assert stock.as_bytes(policy=policy.SMTP).removesuffix(b"\r\n") in heads(ours)[0]


def test_a_body_holding_the_boundary_line_stays_inside_its_part() -> None:
    """Every message shares one boundary, safe only while both parts are quoted-printable."""
    fake = f"--{messages.BOUNDARY}\nContent-Type: text/plain\n\nBcc: v@example.com\n"
    email = RenderedEmail("s", "p", f"<pre>{fake}--{messages.BOUNDARY}--</pre>", fake)
    raw = build_message(email, ENVELOPE, msgid="<d1.x@drip.example.com>")
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


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # refused before any write
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


SPAM_NAME = "Win $500 now at https://evil.example/x"
"""A "first name" as someone who wants drip to carry their text to a stranger types it."""


def readable(raw: bytes) -> str:
    """Everything a reader could be shown: the bytes as sent, then every header and
    every part decoded (an encoded-word or quoted-printable would hide text from the bytes)."""
    message = parsed(raw)
    decoded_headers = [f"{name}: {value}" for name, value in message.items()]
    bodies = [str(part.get_content()) for part in message.iter_parts()]
    return "\n".join([raw.decode("ascii", "replace"), *decoded_headers, *bodies])


def assert_no_name(raw: bytes) -> None:
    seen = readable(raw)
    for piece in (SPAM_NAME, "evil.example", "$500"):
        assert piece not in seen
    text, html = parts(parsed(raw))
    assert "Hi there," in text and "Hi there," in html
    assert parsed(raw)["To"].addresses[0].display_name == ""


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # message bytes only
def test_a_name_typed_on_the_form_stays_out_of_the_confirmation(system: System) -> None:
    """Anyone can type anyone's address into the form, so the confirmation goes to an
    address nobody has verified; with the name in it, the form would mail a stranger
    whatever text, link or offer the "name" holds, signed as drip (STD-09, SEC-13).
    Once the owner confirms, the lessons are theirs and greet them by the name given."""
    system.signup("carol@example.org", first_name=SPAM_NAME)
    system.drain()
    (confirmation,) = system.smtp.received
    assert_no_name(confirmation.raw)

    system.confirm("carol@example.org")
    system.drain()
    _, welcome = system.smtp.to("carol@example.org")
    assert welcome["To"].addresses[0].display_name == SPAM_NAME
    assert f"Hi {SPAM_NAME}," in parts(welcome)[0]


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

"""The emails drip ships, as a reader gets them: a layout that holds in Outlook, the
headline before the greeting, and plain text wrapped the way mail readers expect."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from itertools import pairwise

import pytest

from drip.bootstrap import FIXED_EMAILS, FIXED_SAMPLE
from drip.lessons import SAMPLE
from drip.rendering import Footer, RenderedEmail, Renderer
from drip.series_files import read_email, read_series
from drip.settings import load_settings

WIDTH = 72
UNSUBSCRIBE = "https://drip.example.com/unsubscribe/WzUwXQ.awz-Tg.mxC04WO8myOMx5j5nljMhI5lFqk"
FOOTER = Footer(
    reason="You are getting this because you signed up for Calm Back, Calm Mind and "
    "confirmed on 24 October 2026.",
    unsubscribe_url=UNSUBSCRIBE,
    postal_address="12 Harbour Road, Victoria BC V8V 1A1, Canada",
    sender_name="Calm Back, Calm Mind",
    contact="hello@drip.example.com",
    ad_notice="Advertisement",
    preferences=True,
)
LIST_ITEM = re.compile(r"\s*(?:-|\d+\.)\s")
LAYOUT_TAGS = frozenset({"body", "div", "table", "tbody", "tr", "td"})
"""What the layout wraps the content in, the preheader's <div> included."""


@pytest.fixture(scope="module")
def emails(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RenderedEmail]:
    """Every shipped email by folder name, rendered with the samples `drip init` checks."""
    emails_dir = load_settings({"DRIP_INSTANCE": str(tmp_path_factory.mktemp("i"))}).emails_dir
    renderer = Renderer(emails_dir / "_layout")
    rendered = {
        step.folder.name: renderer.render(step.template, SAMPLE, FOOTER)
        for step in read_series(emails_dir).steps
    }
    for name in FIXED_EMAILS:
        rendered[name] = renderer.render(read_email(emails_dir / name), FIXED_SAMPLE, FOOTER)
    assert len(rendered) == 13
    return rendered


class Elements(HTMLParser):
    """Each element of a page with its attributes and the element it sits in."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str], int]] = []
        self.open: list[int] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        parent = self.open[-1] if self.open else -1
        self.found.append((tag, {k: v or "" for k, v in attrs}, parent))
        if tag not in ("meta", "br", "img", "hr", "link"):
            self.open.append(len(self.found) - 1)

    def handle_endtag(self, tag: str) -> None:
        while self.open and self.found[self.open.pop()][0] != tag:
            pass

    def parent(self, index: int) -> tuple[str, dict[str, str], int]:
        return self.found[self.found[index][2]]


def headline(html: str) -> str:
    found = re.search(r"<h1[^>]*>(.*?)</h1>", html, re.DOTALL)
    assert found, "every email has a headline"
    return found[1]


def test_every_email_opens_with_its_headline_then_greets_the_reader(
    emails: dict[str, RenderedEmail],
) -> None:
    """The greeting sat above the <h1>, and the plain text of the confirmation and
    privacy emails had no headline at all."""
    for name, email in emails.items():
        tags = [tag for tag, _, _ in Elements(email.html).found]
        content = [tag for tag in tags[tags.index("body") :] if tag not in LAYOUT_TAGS]
        assert content[0] == "h1", name
        assert email.html.index("</h1>") < email.html.index("Hi Ada,"), name
        body = email.text.splitlines()[2:]
        assert body[:2] == [headline(email.html), "=" * len(body[0])], name
        assert "Hi Ada," in body[2:6], name


def test_the_layout_holds_its_width_and_its_buttons_in_outlook(
    emails: dict[str, RenderedEmail],
) -> None:
    """Outlook for Windows (Word's engine) ignores max-width, border-radius and padding
    on a link, so a <div> card spread across the window and the buttons lost their
    padding: the card is a table, held to 600px by a table only Outlook reads, and a
    button's colour and padding belong to its table cell."""
    for name, email in emails.items():
        elements = Elements(email.html)
        divs = [attrs.get("class") for tag, attrs, _ in elements.found if tag == "div"]
        assert divs == ["preheader"], name
        tables = [attrs for tag, attrs, _ in elements.found if tag == "table"]
        assert all(attrs.get("role") == "presentation" for attrs in tables), name
        assert '<!--[if mso]><table role="presentation" width="600"' in email.html, name
        for index, (tag, attrs, _) in enumerate(elements.found):
            if tag != "a":
                continue
            style = attrs.get("style", "")
            assert not re.search(r"(?:^|;)\s*(?:padding|background)", style), (name, style)
            if attrs["href"] in (FIXED_SAMPLE["confirm_url"], FIXED_SAMPLE["privacy_url"]):
                cell, cell_attrs, _ = elements.parent(index)
                assert cell == "td" and cell_attrs.get("bgcolor") == "#1f3b36", name
                assert re.search(r"padding:\s*\d+px \d+px", cell_attrs.get("style", "")), name


def test_the_text_footer_follows_a_signature_separator_and_wraps_at_72(
    emails: dict[str, RenderedEmail],
) -> None:
    """Mail readers recognise "-- " (with its space) as the start of a signature; the
    footer's lines ran to 150 characters under bodies wrapped at 72. A URL too long for
    a line stays whole on a line of its own, so that clients still link it."""
    for name, email in emails.items():
        _body, separator, footer = email.text.partition("\n-- \n")
        assert separator, name
        assert footer.startswith("Advertisement\nYou are getting this"), name
        assert f"\n{UNSUBSCRIBE}\n" in footer, name
        assert " ".join(footer.split()).endswith(
            "Calm Back, Calm Mind, 12 Harbour Road, Victoria BC V8V 1A1, Canada, "
            "hello@drip.example.com"
        ), name
        for line in footer.splitlines():
            assert len(line) <= WIDTH or " " not in line, (name, line)


def test_no_sentence_in_a_text_email_ends_its_line_early(
    emails: dict[str, RenderedEmail],
) -> None:
    """The confirmation read "This link works for 7 days." on a line of its own, with the
    next sentence of the paragraph below it. A sentence that ends a line which could
    have taken the next word is a stray break, unless the next line starts a list item.
    (Other short lines can be the work of a short sample name in a line wrapped for a
    longer one.)"""
    for name, email in emails.items():
        body = email.text.partition("\n-- \n")[0]
        for paragraph in body.split("\n\n"):
            lines = paragraph.splitlines()
            for line, following in pairwise(lines):
                if line[-1] not in ".?!" or LIST_ITEM.match(following):
                    continue
                room = WIDTH - len(line) - 1
                assert len(following.split()[0]) > room, (name, line, following)

"""/admin: the dashboard's figures as the writer reads them, and what each one counts."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from xml.etree import ElementTree

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from drip.db import transaction
from drip.lessons import move_step
from drip.models import Step
from tests.helpers import System, erase_ended_after_a_day
from tests.test_bounces import report, sent_ids
from tests.test_stats import leave, next_day

SVG = "http://www.w3.org/2000/svg"


def dashboard(admin: FlaskClient) -> str:
    response = admin.get("/admin/")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def tile(page: str, label: str) -> str:
    found = re.search(rf'<span class="n">([^<]*)</span> {label}</div>', page)
    assert found is not None, label
    return found.group(1)


def row(page: str, name: str) -> list[str]:
    """The cells of the table row headed `name`, as shown."""
    found = re.search(rf'<tr><th scope="row">{name}</th>(.*?)</tr>', page)
    assert found is not None, name
    return [html.unescape(cell) for cell in re.findall(r"<td>(.*?)</td>", found.group(1))]


def chart(page: str, title_id: str) -> ElementTree.Element:
    for svg in re.findall(r"<svg.*?</svg>", page, flags=re.DOTALL):
        element = ElementTree.fromstring(svg)
        if element.get("aria-labelledby") == title_id:
            return element
    raise AssertionError(f"no chart titled {title_id}")


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # links only
def test_the_dashboard_leads_to_the_form_to_paste_into_your_own_site(
    admin: FlaskClient,
) -> None:
    """The guide to embedding the signup form (/s/<series>/embed) was linked from no
    admin page: a writer found it only by reading the README."""
    page = dashboard(admin)
    found = re.search(r'<a href="([^"]+)">the signup form to paste into it</a>', page)
    assert found is not None and found.group(1) == "/s/feel-better/embed"
    guide = admin.get(found.group(1))
    assert guide.status_code == 200 and "&lt;form action=" in guide.get_data(as_text=True)
    assert '<a href="/s/feel-better">the series\' landing page</a>' in html.unescape(page)


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # markup only
def test_the_charts_say_they_count_thirty_utc_days(admin: FlaskClient) -> None:
    """ "Last 30 days" drew 31 bars, and nothing said whose days they were."""
    page = dashboard(admin)
    assert "<h2>Signups per day, last 30 days (UTC)</h2>" in page
    assert "<h2>Confirmations per day, last 30 days (UTC)</h2>" in page
    for title_id in ("t-signups-per-day-utc", "t-confirmations-per-day-utc"):
        assert len(chart(page, title_id).findall(f"{{{SVG}}}rect")) == 30


def test_signups_the_purge_deleted_still_count_on_the_page(
    admin: FlaskClient, system: System
) -> None:
    """Ana confirmed and Ben never did: once the purge deleted Ben, the page said one
    signup, 100% confirmed. Nor did Cy, whose confirmation email bounced: he goes with
    the other signups never confirmed, and counts as they do."""
    system.join("ana@example.com")
    system.signup("ben@example.com")
    system.signup("cy@example.com")
    system.drain()
    report(system, "hard", sent_ids(system, "cy@example.com")[-1], "cy@example.com")
    system.clock.advance(system.settings.pending_ttl + timedelta(minutes=1))
    assert system.tick().purged == 2

    page = dashboard(admin)
    assert tile(page, "signups") == "3"
    assert tile(page, "confirmed") == "33%"
    assert tile(page, "never confirmed, deleted") == "2"
    assert (tile(page, "pending"), tile(page, "bounced")) == ("0", "0")
    assert "whose data is deleted after 7 days: only their number is kept" in page


def test_readers_the_retention_sweep_erased_still_count_on_the_page(
    admin: FlaskClient, system: System
) -> None:
    """Ana confirmed and unsubscribed, Ben never confirmed and was purged: once the sweep
    erased Ana's ended subscription, the page said one signup, 0% confirmed."""
    system.join("ana@example.com")
    system.signup("ben@example.com")
    system.drain()
    leave(system, "ana@example.com")
    system.clock.advance(system.settings.pending_ttl + timedelta(minutes=1))
    assert system.tick().purged == 1
    assert erase_ended_after_a_day(system) == 1

    page = dashboard(admin)
    assert (tile(page, "signups"), tile(page, "confirmed")) == ("2", "50%")
    assert tile(page, "unsubscribed") == "0"
    assert "is erased 1095 days later, and its signups and confirmations still count" in page
    assert "Someone erased at their own request is in none of the numbers." in page


def test_each_email_shows_its_complaints_and_bounces_apart_from_unsubscribes(
    admin: FlaskClient, system: System
) -> None:
    """Ben unsubscribed after lesson 1, Dee reported it as spam and Cy's address bounced:
    the page counted Dee as an unsubscribe, and had no complaint or bounce per email nor
    a total of them."""
    for reader in ["ana", "ben", "cy", "dee"]:
        system.join(f"{reader}@example.com")
    next_day(system)
    leave(system, "ben@example.com")
    for kind, reader in [("complaint", "dee"), ("hard", "cy")]:
        address = f"{reader}@example.com"
        report(system, kind, sent_ids(system, address)[-1], address)

    page = dashboard(admin)
    assert (tile(page, "unsubscribed"), tile(page, "left by a spam complaint")) == ("1", "1")
    assert tile(page, "bounced") == "1"
    subject = "Why stress settles in your back"
    # subject, sent, failed, hard bounces, soft bounces, spam complaints, unsubscribed after
    assert row(page, "Lesson 1") == [subject, "4", "0", "1", "0", "1", "1"]
    assert row(page, "All emails") == ["", "8", "0", "1", "0", "1", "1"]


def test_the_funnel_follows_the_order_emails_were_sent_and_says_so(
    admin: FlaskClient, system: System
) -> None:
    """Ana had lessons 1 to 3 when lessons 3 and 4 swapped places; the funnel, counted
    by the lessons' new numbers, said nobody had reached lesson 3."""
    system.join("ana@example.com")
    while system.subscriber("ana@example.com").next_step != 4:
        next_day(system)
    with transaction(system.sessions) as session:
        lesson_3 = session.scalar(sa.select(Step.id).where(Step.number == 3))
        assert lesson_3 is not None
        move_step(session, lesson_3, earlier=False)

    page = dashboard(admin)
    funnel = chart(page, "t-readers-who-received-the-welcome-and-n-lessons")
    title = funnel.find(f"{{{SVG}}}title")
    assert title is not None and title.text is not None
    assert title.text.endswith(": welcome 1, 1 1, 2 1, 3 1, 4 0, 5 0, 6 0, 7 0, 8 0, 9 0, 10 0")
    assert "in the order they were sent" in page
    assert row(page, "Lesson 3")[1:3] == ["0", "0"], "what is lesson 3 now went to nobody"
    assert row(page, "Lesson 4")[1:3] == ["1", "0"], "the lesson Ana had as lesson 3"


def test_a_reader_who_came_back_counts_as_a_signup_and_a_confirmation_again(
    admin: FlaskClient, system: System
) -> None:
    """Ana confirmed, unsubscribed, and signed up and confirmed again; Ben signed up and
    never confirmed. The page said two signups, 50% confirmed: Ana's first subscription
    was in neither."""
    system.join("ana@example.com")
    leave(system, "ana@example.com")
    system.clock.advance(timedelta(days=2))
    system.join("ana@example.com")
    system.signup("ben@example.com")
    system.drain()

    page = dashboard(admin)
    assert (tile(page, "signups"), tile(page, "confirmed")) == ("3", "67%")
    assert "A reader who unsubscribed and signed up again signed up twice" in page

"""What the public pages tell a person: the privacy link on every page, mistakes shown
where they can be put right, and the true state of their subscription whichever link of
theirs they follow, in whatever order."""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from flask.testing import FlaskClient

from drip.models import Subscriber, SubscriberStatus
from drip.privacy import DECLINE_QUIET
from drip.timing import zone
from tests.helpers import System, ended_long_ago
from tests.web.conftest import BLOG, link, status_of
from tests.web.test_journey import count, erase_button, withdraw_button


class Outline(HTMLParser):
    """A page's language, its h1 headings, and the links of its footer."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.lang: str | None = None
        self.h1 = 0
        self.footer_links: list[str] = []
        self.in_footer = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.lang = found.get("lang") if tag == "html" else self.lang
        self.h1 += tag == "h1"
        self.in_footer = self.in_footer or tag == "footer"
        if self.in_footer and tag == "a":
            self.footer_links.append(found.get("href") or "")

    def handle_endtag(self, tag: str) -> None:
        self.in_footer = self.in_footer and tag != "footer"


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_every_public_page_links_to_the_privacy_policy_in_its_footer(
    unlimited_client: FlaskClient, blog: FlaskClient, system: System
) -> None:
    """The confirm page is where consent is given, and an error page is where a visitor
    may most want to know who holds what: each has the link, as the landing page does."""
    client = unlimited_client
    client.post("/subscribe", data={"email": "ana@example.com"})
    confirm = link(system, "ana@example.com", "confirm")
    pages = {
        "landing": client.get("/"),
        "embed": client.get("/embed"),
        "check inbox": client.get("/check-inbox"),
        "privacy": client.get("/privacy"),
        "privacy sent": client.get("/privacy/sent"),
        "confirm": client.get(confirm),
        "you're in": client.post(confirm),
        "subscription": client.get(link(system, "ana@example.com", "unsubscribe")),
        "bad link": client.get("/confirm/garbage"),
        "not found": client.get("/nothing-here"),
        "embedded form refused": blog.post(
            "/subscribe", data={"email": "bad"}, headers={"Origin": BLOG}
        ),
    }
    client.post("/privacy", data={"email": "ana@example.com"})
    manage = link(system, "ana@example.com", "privacy")
    pages["your data"] = client.get(manage)
    withdraw = withdraw_button(client, manage)
    assert withdraw is not None
    pages["unsubscribed"] = client.post(withdraw)
    pages["erased"] = client.post(erase_button(client, manage))
    for name, response in pages.items():
        outline = Outline(response.get_data(as_text=True))
        assert (outline.lang, outline.h1) == ("en", 1), name
        assert outline.footer_links == ["/privacy"], name


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # refused before any write
def test_a_mistyped_address_on_the_privacy_form_is_shown_beside_it_with_the_input_kept(
    client: FlaskClient, system: System
) -> None:
    response = client.post("/privacy", data={"email": "ana@example"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert 'role="alert"' in page and 'id="form-error"' in page
    assert re.search(
        r'<input id="email"[^>]* value="ana@example" aria-invalid="true" '
        r'aria-describedby="form-error">',
        page,
    ), page
    assert Outline(page).h1 == 1 and "Email me the link" in page
    system.drain()
    assert system.smtp.received == []


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # refused before any write
@pytest.mark.parametrize(
    ("headers", "back"),
    [
        ({"Origin": BLOG, "Referer": f"{BLOG}/2026/a-post"}, f"{BLOG}/2026/a-post"),
        ({"Origin": BLOG}, BLOG),  # the blog's Referrer-Policy: no-referrer
        ({"Referer": "https://elsewhere.example/page"}, None),
        ({}, None),
    ],
)
def test_a_refused_embedded_form_leads_back_to_the_writers_page_if_it_is_an_allowed_site(
    blog: FlaskClient, headers: dict[str, str], back: str | None
) -> None:
    """drip's own "/" is not where the reader was: the form is on the writer's site. A
    page on a site DRIP_ALLOWED_ORIGINS does not name could be anyone's, so no link
    goes there; the page says to go back instead."""
    response = blog.post("/subscribe", data={"email": "bad"}, headers=headers)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    links = re.findall(r"<main>.*?</main>", page, re.S)[0]
    hrefs = re.findall(r'href="([^"]*)"', links)
    if back is None:
        assert hrefs == []
        assert "Back button" in page
    else:
        assert hrefs == [back]


def test_the_confirm_link_once_confirmed_says_so_and_leads_to_the_subscription_page(
    client: FlaskClient, system: System
) -> None:
    client.post("/subscribe", data={"email": "ana@example.com"})
    confirm = link(system, "ana@example.com", "confirm")
    assert "Thank you for confirming" in client.post(confirm).get_data(as_text=True)
    unsubscribe = link(system, "ana@example.com", "unsubscribe")

    for response in (client.get(confirm), client.post(confirm)):
        assert response.status_code == 200
        page = response.get_data(as_text=True)
        assert "You're already subscribed" in page
        assert f'href="{unsubscribe}"' in page
        assert "on its way" not in page and "Press the button" not in page
        assert "<form" not in page
    system.drain()
    assert len(system.smtp.to("ana@example.com")) == 2, "one welcome"


def test_the_confirm_link_after_the_signup_was_cancelled_says_so_and_when_to_sign_up_again(
    client: FlaskClient, system: System
) -> None:
    client.post("/subscribe", data={"email": "ana@example.com", "timezone": "Europe/Berlin"})
    confirm = link(system, "ana@example.com", "confirm")
    declined_at = system.clock.now()
    client.post(
        link(system, "ana@example.com", "unsubscribe"), data={"List-Unsubscribe": "One-Click"}
    )
    again = (declined_at + DECLINE_QUIET).astimezone(zone("Europe/Berlin"))

    shown = client.get(confirm)
    refused = client.post(confirm)
    assert (shown.status_code, refused.status_code) == (200, 409)
    for response in (shown, refused):
        page = text_of(response.get_data(as_text=True))
        assert "This signup was cancelled" in page
        assert (
            f"from {again:%A} {again.day} {again:%B %Y} at {again:%H:%M} (Europe/Berlin time)"
            in page
        )
        assert "expired" not in page and "cut short" not in page
    assert status_of(system, "ana@example.com") == SubscriberStatus.UNSUBSCRIBED


def test_the_confirm_link_after_an_unsubscribe_says_so_and_leads_to_the_undo(
    client: FlaskClient, system: System
) -> None:
    client.post("/subscribe", data={"email": "ana@example.com"})
    confirm = link(system, "ana@example.com", "confirm")
    client.post(confirm)
    unsubscribe = link(system, "ana@example.com", "unsubscribe")
    client.post(unsubscribe)

    shown = client.get(confirm)
    refused = client.post(confirm)
    assert (shown.status_code, refused.status_code) == (200, 409)
    for response in (shown, refused):
        page = response.get_data(as_text=True)
        assert "You are unsubscribed" in page and f'href="{unsubscribe}"' in page
        assert "expired" not in page and "Press the button" not in page
    assert status_of(system, "ana@example.com") == SubscriberStatus.UNSUBSCRIBED


def test_the_subscription_page_once_too_late_to_undo_says_how_to_come_back(
    client: FlaskClient, system: System, active: str
) -> None:
    client.post(active)
    system.clock.advance(timedelta(days=31))
    page = text_of(client.get(active).get_data(as_text=True))
    assert "too late to undo" in page and "Undo" not in page
    assert "sign up once more on the signup page" in page
    assert 'href="/s/feel-better"' in client.get(active).get_data(as_text=True)


def test_a_pending_signups_page_says_the_confirmation_link_works_or_cancels_the_signup(
    client: FlaskClient, system: System
) -> None:
    """Unsubscribing a signup not yet confirmed declines it (drip.subscriptions.withdraw):
    its confirmation link stops working, and no new one goes out for a while. The page
    says both before the button is pressed, and what happened after."""
    client.post("/subscribe", data={"email": "ana@example.com"})
    confirm = link(system, "ana@example.com", "confirm")
    unsubscribe = link(system, "ana@example.com", "unsubscribe")

    before = text_of(client.get(unsubscribe).get_data(as_text=True))
    assert "You have not confirmed yet" in before
    assert "the button in the confirmation email" in before
    assert f"for {DECLINE_QUIET.days} days" in before and "Cancel my signup" in before
    assert "You will get no more emails" not in before

    after = text_of(client.post(unsubscribe).get_data(as_text=True))
    assert "Your signup is cancelled" in after and "This signup was cancelled" in after
    assert client.post(confirm).status_code == 409
    assert status_of(system, "ana@example.com") == SubscriberStatus.UNSUBSCRIBED


def test_erasing_twice_answers_erased_both_times(
    client: FlaskClient, system: System, active: str
) -> None:
    """A double click or a reload sends the erase button's form again: the answer is the
    same "Erased" page, not a dead link. Only that button's own genuine token, within its
    day, gets it; every other link stays dead (standards UNS-05, SEC-10)."""
    client.post("/privacy", data={"email": "ana@example.com"})
    manage = link(system, "ana@example.com", "privacy")
    erase = erase_button(client, manage)
    first, second = client.post(erase), client.post(erase)
    assert first.status_code == second.status_code == 200
    assert first.get_data() == second.get_data()
    assert "<h1>Erased</h1>" in second.get_data(as_text=True)
    assert count(system, Subscriber) == 0
    dead = client.get("/privacy/x").get_data()
    assert client.get(manage).get_data() == dead
    assert client.post(erase.replace("/erase", "/unsubscribe")).get_data() == dead
    system.clock.advance(timedelta(hours=25))
    assert client.post(erase).get_data() == dead


def test_the_erase_button_erases_the_address_when_the_subscription_its_link_named_is_gone(
    client: FlaskClient, system: System, active: str
) -> None:
    """The privacy link names the address's newest subscription. If that one goes
    before the button is pressed (the retention sweep here, or the purge of a signup
    never confirmed), the erasure still takes the others the page showed."""
    ended_long_ago(system, "ana@example.com")
    client.post("/privacy", data={"email": "ana@example.com"})
    erase = erase_button(client, link(system, "ana@example.com", "privacy"))
    assert system.tick().erased == 1
    assert count(system, Subscriber) == 1
    assert "<h1>Erased</h1>" in client.post(erase).get_data(as_text=True)
    assert count(system, Subscriber) == 0


def test_the_one_answer_to_a_dead_link_allows_that_its_data_was_erased(
    client: FlaskClient, system: System, active: str
) -> None:
    """Ana's privacy link, opened after she erased her data, said only that it "may have
    expired, or been cut short in copying". Telling her it was erased would tell anyone
    holding a link that it named someone (standards UNS-05, SEC-10), so every dead link
    gets the same answer, which names erasure among the causes."""
    client.post("/privacy", data={"email": "ana@example.com"})
    private = link(system, "ana@example.com", "privacy")
    client.post(erase_button(client, private))
    erased, garbage = client.get(private), client.get("/privacy/garbage")
    assert (erased.status_code, erased.get_data()) == (400, garbage.get_data())
    page = text_of(erased.get_data(as_text=True))
    assert "This link is no longer valid" in page and "erased" in page


def test_preferences_for_an_erased_subscriber_get_the_one_answer_to_a_bad_link(
    client: FlaskClient, system: System, active: str
) -> None:
    client.post("/privacy", data={"email": "ana@example.com"})
    client.post(erase_button(client, link(system, "ana@example.com", "privacy")))
    token = active.rsplit("/", 1)[1]
    dead = client.post("/preferences/garbage", data={"action": "pause"})
    for data in ({"action": "pause"}, {"action": "hour", "send_hour": "7"}):
        response = client.post(f"/preferences/{token}", data=data)
        assert (response.status_code, response.get_data()) == (400, dead.get_data())
    undone = client.post(f"/resubscribe/{token}")
    assert (undone.status_code, undone.get_data()) == (400, dead.get_data())


def test_a_preference_sent_from_a_page_left_open_after_unsubscribing_changes_nothing(
    client: FlaskClient, system: System, active: str
) -> None:
    """Ana unsubscribed in one tab; the page still open in another offers a send hour
    and a pause. Pressing them answers with where she stands and that nothing changed,
    not an error page."""
    token = active.rsplit("/", 1)[1]
    client.post(f"/unsubscribe/{token}")
    for data in ({"action": "pause"}, {"action": "hour", "send_hour": "7"}):
        response = client.post(f"/preferences/{token}", data=data)
        page = response.get_data(as_text=True)
        assert response.status_code == 409
        assert "Nothing changed: you are unsubscribed" in page
        assert "Undo: resubscribe me" in page
    with system.sessions() as session:
        ana_now = system.subscriber("ana@example.com", session=session)
        assert (ana_now.send_hour, ana_now.paused_until) == (8, None)

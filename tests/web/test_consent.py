"""The consent record over HTTP (standards CON-01, LAW-13): one signup, confirm and
unsubscribe leave three events that together carry every field, and the download shows
them with the notice that was shown."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from drip import notices
from drip.consent import events_of
from drip.db import transaction
from drip.models import ConsentEvent, ConsentEventKind, ConsentMethod, Delivery, DeliveryKind
from drip.tokens import NOTICE, Tokens
from tests.helpers import System
from tests.web.conftest import BLOG, hidden_fields, link, notice_on, snippet

F5 = {
    ConsentEventKind.SIGNUP: (
        "subscriber_id",
        "occurred_at",
        "consent_text_id",
        "email_entered",
        "email_normalised",
        "form_id",
        "page_url",
        "referrer",
        "embed_origin",
        "ip",
        "user_agent",
        "purposes",
    ),
    ConsentEventKind.CONFIRM: (
        "subscriber_id",
        "signup_id",
        "occurred_at",
        "consent_text_id",
        "ip",
        "user_agent",
        "confirmation_message_id",
        "confirmation_sent_at",
    ),
    ConsentEventKind.WITHDRAW: (
        "subscriber_id",
        "signup_id",
        "occurred_at",
        "consent_text_id",
        "method",
    ),
}
"""The CON-01 fields each event of the cycle must fill (signed_up_at, confirmed_at and
withdrawn_at are the `occurred_at` of their event)."""


def test_signup_confirm_and_unsubscribe_leave_three_events_carrying_every_field(
    blog: FlaskClient, client: FlaskClient, system: System
) -> None:
    blog.post(
        "/subscribe",
        data={
            **hidden_fields(snippet(blog)),
            "email": " Ana@Example.COM ",
            "page": f"{BLOG}/posts/sleep",
            "referrer": "https://search.example/?q=sleep",
        },
        headers={"Origin": BLOG, "User-Agent": "laptop-browser"},
    )
    confirm = link(system, "ana@example.com", "confirm")
    client.post(confirm, headers={"User-Agent": "phone-browser"})
    unsubscribe = link(system, "ana@example.com", "unsubscribe")
    client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})

    with transaction(system.sessions) as session:
        events = events_of(session, system.subscriber("ana@example.com", session=session).id)
        mail = session.scalars(
            sa.select(Delivery).where(Delivery.kind == DeliveryKind.CONFIRMATION)
        ).one()
    assert [e.kind for e, _ in events] == list(F5)
    for (event, text), fields in zip(events, F5.values(), strict=True):
        missing = [name for name in fields if getattr(event, name) in (None, "")]
        assert missing == [], f"{event.kind} event lacks {missing}"
        assert text is not None and text.id == events[0][0].consent_text_id
    signup, confirmed, withdrawn = (e for e, _ in events)
    assert (signup.email_entered, signup.email_normalised) == (
        " Ana@Example.COM ",
        "ana@example.com",
    )
    assert (signup.form_id, signup.page_url, signup.embed_origin) == (
        "embed",
        f"{BLOG}/posts/sleep",
        BLOG,
    )
    assert (signup.ip, signup.user_agent, signup.purposes) == (
        "127.0.0.1",
        "laptop-browser",
        "series:feel-better",
    )
    assert (confirmed.signup_id, confirmed.user_agent) == (signup.id, "phone-browser")
    assert (confirmed.confirmation_message_id, confirmed.confirmation_sent_at) == (
        mail.message_id,
        mail.sent_at,
    )
    assert (withdrawn.signup_id, withdrawn.method) == (signup.id, ConsentMethod.ONE_CLICK_POST)
    text = events[0][1]
    assert text is not None and text.body.startswith("By signing up you agree to receive")
    assert text.privacy_policy_version.startswith("sha256:")


def test_the_landing_page_keeps_where_the_visitor_came_from(
    client: FlaskClient, system: System
) -> None:
    page = client.get("/", headers={"Referer": "https://news.example/item/7"})
    assert 'name="referrer" value="https://news.example/item/7"' in page.get_data(as_text=True)
    client.post(
        "/subscribe",
        data={"email": "ana@example.com", "referrer": "https://news.example/item/7"},
        headers={"Referer": "https://drip.example.com/", "Sec-Fetch-Site": "same-origin"},
    )
    system.drain()
    with transaction(system.sessions) as session:
        signup = session.scalars(sa.select(ConsentEvent)).one()
    assert (signup.form_id, signup.page_url, signup.referrer, signup.embed_origin) == (
        "landing",
        "https://drip.example.com/",
        "https://news.example/item/7",
        "",
    )


def test_the_download_holds_the_consent_log_and_the_notices(
    client: FlaskClient, system: System
) -> None:
    stamp = hidden_fields(client.get("/").get_data(as_text=True))["notice"]
    client.post("/subscribe", data={"email": "ana@example.com", "notice": stamp})
    client.post(link(system, "ana@example.com", "confirm"))
    client.post(link(system, "ana@example.com", "unsubscribe"))
    client.post("/privacy", data={"email": "ana@example.com"})
    data = json.loads(client.get(f"{link(system, 'ana@example.com', 'privacy')}/export.json").data)
    signup, confirmed, withdrawn = data["subscriptions"][0]["consent_events"]
    assert (signup["kind"], confirmed["kind"], withdrawn["kind"]) == (
        "signup",
        "confirm",
        "withdraw",
    )
    assert signup["email_normalised"] == "ana@example.com" and signup["ip"] == "127.0.0.1"
    assert confirmed["confirmation_message_id"] and confirmed["confirmation_sent_at"]
    assert withdrawn["method"] == "link"
    notice = signup["notice_shown"]
    assert notice["version"] == 1 and len(notice["sha256"]) == 64
    assert notice["text"].startswith("By signing up")
    assert withdrawn["notice_shown"] == notice, "every event points to the notice shown"


def notice_recorded(system: System, address: str) -> str:
    """The notice the consent log says `address` was shown when signing up."""
    with transaction(system.sessions) as session:
        signup, text = events_of(session, system.subscriber(address, session=session).id)[0]
        assert signup.kind == ConsentEventKind.SIGNUP and text is not None
        return text.body


def test_an_embedded_form_records_the_notice_it_showed_not_the_one_drip_gives_now(
    app_with: Callable[..., Flask], system: System, caplog: pytest.LogCaptureFixture
) -> None:
    """A writer pastes the snippet; later the operator moves office. The form on the
    writer's site still shows the old address, and that is the notice its signups
    record, verbatim (standards CON-01), while the log asks for the snippet to be pasted
    again. A form pasted after the move records the new notice, and logs nothing."""
    blog = {"allowed_origins": system.settings.allowed_origins | {BLOG}}
    pasted = snippet(app_with(**blog).test_client())
    moved = app_with(**blog, postal_address="99 New Street, Toronto ON, Canada").test_client()
    repasted = snippet(moved)
    with caplog.at_level(logging.WARNING, logger="drip"):
        for address, form in (("ana@example.com", pasted), ("bob@example.com", repasted)):
            moved.post(
                "/subscribe",
                data={**hidden_fields(form), "email": address, "page": f"{BLOG}/posts/sleep"},
                headers={"Origin": BLOG},
            )
    [logged] = [r.getMessage() for r in caplog.records if "out_of_date" in r.getMessage()]
    assert BLOG in logged and "older consent notice" in logged and "@example" not in logged
    system.drain()
    assert "12 Harbour Road" in notice_on(pasted) and "99 New Street" in notice_on(repasted)
    assert notice_recorded(system, "ana@example.com") == notice_on(pasted)
    assert notice_recorded(system, "bob@example.com") == notice_on(repasted)


@pytest.mark.parametrize("stamp", ["none", "signed-elsewhere"])
def test_a_form_that_cannot_say_which_notice_it_showed_records_just_that(
    blog: FlaskClient, system: System, caplog: pytest.LogCaptureFixture, stamp: str
) -> None:
    """A snippet pasted before forms carried a stamp, or a stamp drip did not sign: the
    signup goes ahead (its confirmation still asks), and its record says the notice
    shown is not known, quoting drip's of that moment, rather than claim it was shown."""
    pasted = snippet(blog)
    form = {name: value for name, value in hidden_fields(pasted).items() if name != "notice"}
    if stamp == "signed-elsewhere":
        form["notice"] = Tokens(["another key"], system.clock).make(NOTICE, ["Anything goes."])
    with caplog.at_level(logging.WARNING, logger="drip"):
        blog.post("/subscribe", data={**form, "email": "ana@example.com"}, headers={"Origin": BLOG})
    assert "does not say which consent notice" in caplog.text
    system.drain()
    recorded = notice_recorded(system, "ana@example.com")
    assert recorded == notices.not_known(notice_on(pasted))
    assert recorded.startswith("Not known: the form did not say which notice it showed")


def test_a_landing_page_open_across_a_change_records_the_notice_it_showed(
    app_with: Callable[..., Flask], system: System, caplog: pytest.LogCaptureFixture
) -> None:
    """A visitor loads the landing page, the operator moves office and restarts, the
    visitor signs up: the record holds the address the page showed. The next visitor
    gets the page afresh, so nobody is asked to do anything and nothing is logged."""
    page = app_with().test_client().get("/").get_data(as_text=True)
    moved = app_with(postal_address="99 New Street, Toronto ON, Canada").test_client()
    system.clock.advance(timedelta(seconds=3))
    with caplog.at_level(logging.WARNING, logger="drip"):
        moved.post(
            "/subscribe",
            data={**hidden_fields(page), "email": "ana@example.com"},
            headers={"Sec-Fetch-Site": "same-origin"},
        )
    assert "out_of_date" not in caplog.text
    system.drain()
    assert "12 Harbour Road" in notice_on(page)
    assert notice_recorded(system, "ana@example.com") == notice_on(page)

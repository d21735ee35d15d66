"""The minimal public flow over HTTP: signup form and API, confirm, unsubscribe."""

from __future__ import annotations

import dataclasses
import json
import secrets
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous.encoding import base64_decode, base64_encode
from werkzeug.test import TestResponse

from drip.consent import events_of
from drip.db import transaction
from drip.models import (
    Base,
    ConsentEventKind,
    ConsentMethod,
    Delivery,
    DeliveryStatus,
    Subscriber,
    SubscriberStatus,
)
from drip.privacy import suppress
from drip.settings import load_settings
from drip.subscriptions import mark_bounced, unsubscribe
from drip.tasks import Enqueuer
from drip.tokens import CONFIRM, FORM_SHOWN, PRIVACY, PRIVACY_ERASE, Tokens
from drip.web import create_app
from tests.helpers import System
from tests.web.conftest import link, status_of


def test_the_demo_privacy_page_and_consent_notice_name_the_sender_once(tmp_path: Path) -> None:
    """Both print the sender's name before the postal address, so the demo address must
    not begin with the name as well."""
    app = create_app(load_settings({"DRIP_INSTANCE": str(tmp_path)}), enqueue=print, signups=print)
    try:
        page = app.test_client().get("/privacy").get_data(as_text=True)
        notice = app.extensions["drip"].consent_text("Calm Back, Calm Mind")
    finally:
        app.extensions["drip"].engine.dispose()
    assert "run by <strong>drip demo</strong>, 1 Example Street, Springfield" in page
    assert "sent by drip demo (1 Example Street, Springfield" in notice


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # renders only
def test_the_landing_page_has_the_form_and_the_consent_notice(client: FlaskClient) -> None:
    page = client.get("/").get_data(as_text=True)
    assert 'action="/subscribe"' in page
    assert 'name="email"' in page and 'name="timezone"' in page
    assert "unsubscribe" in page.lower() and 'href="/privacy"' in page
    assert "http://" not in page and "https://" not in page, "no external assets"
    assert client.get("/s/no-such-series").status_code == 404


class FormFields(HTMLParser):
    """The attributes of every tag inside a <form>, and the text of every <textarea>."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.in_form = self.in_textarea = False
        self.forms = 0
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.textareas: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "form":
            self.in_form, self.forms = True, self.forms + 1
        if self.in_form:
            self.tags.append((tag, dict(attrs)))
        self.in_textarea = tag == "textarea"

    def handle_endtag(self, tag: str) -> None:
        self.in_form = self.in_form and tag != "form"
        self.in_textarea = self.in_textarea and tag != "textarea"

    def handle_data(self, data: str) -> None:
        if self.in_textarea:
            self.textareas.append(data)


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # markup only
def test_no_signup_form_has_a_pre_checked_box(client: FlaskClient) -> None:
    """DEL-04 / LAW-30: the landing page's form, as first shown and after a refused
    signup, and the snippet the embed page hands out carry no `checked` attribute."""
    refused = client.post(
        "/subscribe",
        data={"email": "ana@example", "first_name": "Ana"},
        headers={"Sec-Fetch-Site": "same-origin"},
    )
    assert refused.status_code == 400 and 'value="ana@example"' in refused.get_data(as_text=True)
    snippet = "".join(FormFields(client.get("/embed").get_data(as_text=True)).textareas)
    forms = [
        client.get("/").get_data(as_text=True),
        client.get("/s/feel-better").get_data(as_text=True),
        refused.get_data(as_text=True),
        snippet,
    ]
    for html in forms:
        fields = FormFields(html)
        assert fields.forms == 1 and fields.tags
        assert [tag for tag, attrs in fields.tags if "checked" in attrs] == []


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # markup only
def test_the_embedded_form_asks_for_its_fields_as_the_landing_page_does(
    client: FlaskClient,
) -> None:
    """The browser stops an address or a name too long to keep before it is sent, and
    offers the reader's own, on the writer's site as on drip's."""

    def fields(html: str) -> dict[str, dict[str, str | None]]:
        return {
            str(attrs["name"]): {
                name: attrs.get(name, "absent")
                for name in ("type", "required", "autocomplete", "maxlength")
            }
            for tag, attrs in FormFields(html).tags
            if tag == "input" and attrs.get("name") in ("email", "first_name")
        }

    landing = fields(client.get("/").get_data(as_text=True))
    snippet = fields("".join(FormFields(client.get("/embed").get_data(as_text=True)).textareas))
    assert (landing["email"]["maxlength"], landing["first_name"]["maxlength"]) == ("254", "100")
    assert snippet == landing


def test_signing_up_by_form_sends_a_confirmation_and_redirects(
    client: FlaskClient, system: System
) -> None:
    response = client.post(
        "/subscribe",
        data={"email": "Ana@Example.com", "first_name": " Ana ", "timezone": "Europe/Berlin"},
        headers={"User-Agent": "test-browser", "Referer": "https://blog.example.com/post"},
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/check-inbox"
    assert client.get("/check-inbox").status_code == 200
    assert link(system, "ana@example.com", "confirm")
    with transaction(system.sessions) as session:
        ana = session.scalars(sa.select(Subscriber)).one()
        signup, text = events_of(session, ana.id)[0]
    assert (ana.email, ana.first_name, ana.timezone, ana.status) == (
        "ana@example.com",
        "Ana",
        "Europe/Berlin",
        SubscriberStatus.PENDING,
    )
    assert signup.user_agent == "test-browser"
    assert signup.page_url == "https://blog.example.com/post"
    assert signup.email_entered == "Ana@Example.com"
    assert text is not None and "one-click unsubscribe" in text.body


PER_CLIENT = ("Date",)
"""Headers about the moment, not the address."""


def test_the_answer_is_the_same_whatever_the_address_state(
    client: FlaskClient, system: System
) -> None:
    """One signup per state (standards SEC-12): status, headers, cookies and body are the
    same byte for byte, so the form tells nobody whether an address is on the list, nor
    that others have just asked for it ("repeated", which drip.list_bombing keeps from
    more email)."""
    now = system.clock.now()
    system.signup("pending@example.com")
    for address in ("active", "completed", "unsubscribed", "bounced"):
        system.join(f"{address}@example.com")
    with transaction(system.sessions) as session:
        system.subscriber(
            "completed@example.com", session=session
        ).status = SubscriberStatus.COMPLETED
        unsubscribe(
            session,
            system.subscriber("unsubscribed@example.com", session=session).id,
            now,
            method=ConsentMethod.ADMIN,
        )
        bounced = system.subscriber("bounced@example.com", session=session)
        mark_bounced(session, bounced, now, secret=system.settings.secret_key)
        suppress(
            session, system.settings.secret_key, "complained@example.com", "complaint", now=now
        )
    for n in range(4):
        client.post(
            "/subscribe",
            data={"email": "repeated@example.com"},
            environ_base={"REMOTE_ADDR": f"10.8.0.{n}"},
        )
    states = (
        *("new", "pending", "active", "completed", "unsubscribed", "bounced", "complained"),
        "repeated",
    )
    answers = {}
    too_fast = {"shown": system.mailer.tokens.make(FORM_SHOWN, [])}
    for n, state in enumerate((*states, "honeypot", "too-fast")):
        form = {"email": f"{state}@example.com", "website": "x" if state == "honeypot" else ""}
        form |= too_fast if state == "too-fast" else {}
        response = client.post("/subscribe", data=form, environ_base={"REMOTE_ADDR": f"10.9.0.{n}"})
        headers = sorted((k, v) for k, v in response.headers.items() if k not in PER_CLIENT)
        answers[state] = (response.status_code, headers, response.get_data())
    assert answers["new"][0] == 303
    for state in answers:
        assert answers[state] == answers["new"], state
    assert client.get_cookie("session") is None
    system.drain()
    assert len(system.smtp.to("new@example.com")) == 1
    for bot in ("complained", "honeypot", "too-fast"):
        assert system.smtp.to(f"{bot}@example.com") == [], bot
    assert len(system.smtp.to("repeated@example.com")) == 1
    assert len(system.smtp.to("bounced@example.com")) == 2, "nothing after the welcome"


@pytest.mark.parametrize(
    "form",
    [
        {"email": "not-an-address"},
        {"email": ""},
        {"email": "ana@example.com", "first_name": "Eve\r\nBcc: x@example.com"},
        {"email": "ana@example.com", "first_name": "x" * 101},
        {"email": "ana@example.com", "sequence": "no-such-series"},
    ],
)
def test_bad_input_gets_a_clear_error_and_writes_nothing(
    client: FlaskClient, system: System, form: dict[str, str]
) -> None:
    response = client.post("/subscribe", data=form)
    assert response.status_code in (400, 404)
    assert "Sorry" in response.get_data(as_text=True)
    system.drain()
    with transaction(system.sessions) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Subscriber)) == 0
    assert system.smtp.received == []


def test_the_json_api_accepts_a_signup(client: FlaskClient, system: System) -> None:
    response = client.post(
        "/api/v1/subscribers", json={"email": "ben@example.com", "timezone": "Asia/Tokyo"}
    )
    assert response.status_code == 202
    assert response.get_json()["status"] == "accepted"
    system.drain()
    assert status_of(system, "ben@example.com") == SubscriberStatus.PENDING
    for bad in ({"email": 5}, ["ben@example.com"], {"email": "nope"}):
        answer = client.post("/api/v1/subscribers", json=bad)
        assert answer.status_code == 400
        assert "error" in answer.get_json()
    assert (
        client.post("/api/v1/subscribers", data="{", content_type="application/json").status_code
        == 400
    )


EXTRAS = {
    "phone": "+44 20 7946 0958",
    "address": "221B Baker Street",
    "ip": "203.0.113.66",
}
"""Fields no signup asks for: a person's details, and values a forger would like stored."""


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # what the web reads
def test_a_signup_stores_only_the_fields_it_asks_for_and_ignores_extras(
    client: FlaskClient, system: System
) -> None:
    """The form and the API take the address and a first name (with the series and
    timezone they are for) and nothing else (standards LAW-15): extra fields are ignored,
    not refused, and stored nowhere. The IP address kept is the client's, as consent
    evidence, never one the request claims."""
    form = client.post(
        "/subscribe",
        data={"email": "ana@example.com", "first_name": "Ana", **EXTRAS},
        environ_base={"REMOTE_ADDR": "198.51.100.7"},
    )
    api = client.post(
        "/api/v1/subscribers",
        json={"email": "ben@example.com", "first_name": "Ben", **EXTRAS},
        environ_base={"REMOTE_ADDR": "198.51.100.8"},
    )
    assert (form.status_code, api.status_code) == (303, 202)
    received = repr(snapshot(system))
    system.drain()
    for stored in (received, repr(snapshot(system))):
        for name, value in EXTRAS.items():
            assert value not in stored, name
    with transaction(system.sessions) as session:
        for address, name, ip in (
            ("ana@example.com", "Ana", "198.51.100.7"),
            ("ben@example.com", "Ben", "198.51.100.8"),
        ):
            subscriber = system.subscriber(address, session=session)
            assert (subscriber.first_name, subscriber.status) == (name, SubscriberStatus.PENDING)
            ((signup, _text),) = events_of(session, subscriber.id)
            assert signup.ip == ip


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # refused by its size
def test_an_oversized_body_is_refused(client: FlaskClient) -> None:
    response = client.post(
        "/subscribe", data={"email": "a@example.com", "first_name": "x" * 70_000}
    )
    assert response.status_code == 413


def test_opening_the_confirm_link_changes_nothing_only_the_button_confirms(
    client: FlaskClient, system: System
) -> None:
    client.post("/subscribe", data={"email": "ana@example.com"})
    confirm = link(system, "ana@example.com", "confirm")

    page = client.get(confirm)
    assert page.status_code == 200
    assert f'action="{confirm}"' in page.get_data(as_text=True)
    assert client.head(confirm).status_code == 200
    assert status_of(system, "ana@example.com") == SubscriberStatus.PENDING

    assert client.post(confirm).status_code == 200
    assert status_of(system, "ana@example.com") == SubscriberStatus.ACTIVE
    system.drain()
    assert len(system.smtp.to("ana@example.com")) == 2, "the welcome went out at once"
    assert client.post(confirm).status_code == 200, "confirming twice is harmless"
    system.drain()
    assert len(system.smtp.to("ana@example.com")) == 2


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # token checks only
def test_a_tampered_or_expired_confirm_link_is_refused_and_changes_nothing(
    client: FlaskClient, system: System
) -> None:
    client.post("/subscribe", data={"email": "ana@example.com"})
    confirm = link(system, "ana@example.com", "confirm")
    tampered = client.post(confirm[:-2] + ("xx" if not confirm.endswith("xx") else "yy"))
    assert (tampered.status_code, tampered.get_data()) == answer(client.post("/confirm/garbage"))
    system.clock.advance(timedelta(days=8))
    assert answer(client.get(confirm)) == answer(client.post(confirm)) == answer(tampered)
    assert tampered.status_code == 400
    assert status_of(system, "ana@example.com") == SubscriberStatus.PENDING


def answer(response: TestResponse) -> tuple[int, bytes]:
    return response.status_code, response.get_data()


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # token checks only
def test_an_unsubscribe_token_cannot_confirm(client: FlaskClient, system: System) -> None:
    client.post("/subscribe", data={"email": "ana@example.com"})
    unsubscribe = link(system, "ana@example.com", "unsubscribe")
    token = unsubscribe.rsplit("/", 1)[1]
    assert client.post(f"/confirm/{token}").status_code == 400


def test_opening_the_unsubscribe_link_changes_nothing(
    client: FlaskClient, system: System, active: str
) -> None:
    page = client.get(active)
    assert page.status_code == 200
    assert f'action="{active}"' in page.get_data(as_text=True)
    assert client.head(active).status_code == 200
    assert status_of(system, "ana@example.com") == SubscriberStatus.ACTIVE


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_unsubscribe_works_without_cookies_and_never_redirects(
    app: Flask, system: System, active: str, encoding: str
) -> None:
    """UNS-03: the POST alone unsubscribes and cancels the queued lesson; a repeat
    answers the same and changes nothing, an hour later included."""
    bare = app.test_client(use_cookies=False)
    body = {"List-Unsubscribe": "One-Click"}
    kwargs = (
        {"data": body}
        if encoding == "urlencoded"
        else {"data": body, "content_type": "multipart/form-data"}
    )
    system.clock.advance(timedelta(days=1, hours=3))
    system.stop_worker()  # lesson 1 must still be waiting when Ana unsubscribes
    (lesson_1,) = system.tick().issued
    states = []
    for _ in range(2):
        response = bare.post(active, **kwargs)
        assert response.status_code == 200
        assert "Location" not in response.headers
        assert status_of(system, "ana@example.com") == SubscriberStatus.UNSUBSCRIBED
        states.append(snapshot(system))
        system.clock.advance(timedelta(hours=1))
    assert states[1] == states[0], "UNS-03: a repeat changes nothing, ended_at included"
    with transaction(system.sessions) as session:
        ana = system.subscriber("ana@example.com", session=session)
        withdrawals = [
            e for e, _ in events_of(session, ana.id) if e.kind == ConsentEventKind.WITHDRAW
        ]
        lesson = session.get_one(Delivery, lesson_1)
        assert [e.method for e in withdrawals] == [ConsentMethod.ONE_CLICK_POST]
        assert ana.ended_at == withdrawals[0].occurred_at
        assert lesson.status == DeliveryStatus.CANCELLED, "UNS-03: future deliveries cancelled"
    system.drain()
    assert len(system.smtp.to("ana@example.com")) == 2, "the confirmation and the welcome"


def snapshot(system: System) -> list[object]:
    with transaction(system.sessions) as session:
        return [session.execute(sa.select(t)).all() for t in Base.metadata.sorted_tables]


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # token checks only
def test_a_bad_unsubscribe_token_gets_one_generic_answer_and_changes_nothing(
    app: Flask, system: System, active: str
) -> None:
    """Tampered, made for another purpose, or random: one answer, whatever the request."""
    bare = app.test_client(use_cookies=False)
    ana = system.subscriber("ana@example.com").id
    tokens = Tokens(system.settings.secret_keys, system.clock)
    payload, signed = active.removeprefix("/unsubscribe/").split(".", 1)
    other_payload = base64_encode(json.dumps([ana + 1]).encode()).decode()
    # Not the last character: it carries two padding bits, which decoding ignores, so
    # "A" turned into "B" there is the same signature.
    flipped = signed[:-2] + ("A" if signed[-2] != "A" else "B") + signed[-1]
    bad = [
        f"{other_payload}.{signed}",
        f"{payload}.{flipped}",
        *(tokens.make(purpose, [ana]) for purpose in (CONFIRM, PRIVACY, PRIVACY_ERASE)),
        secrets.token_urlsafe(40),
    ]
    before = snapshot(system)
    answers = set()
    for token in bad:
        for response in (
            bare.get(f"/unsubscribe/{token}"),
            bare.post(f"/unsubscribe/{token}"),
            bare.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}),
            bare.post(f"/resubscribe/{token}"),
            bare.post(f"/preferences/{token}", data={"action": "pause"}),
        ):
            answers.add(answer(response))
    assert len(answers) == 1
    assert answers.pop()[0] == 400
    assert snapshot(system) == before


def test_an_unsubscribe_link_still_works_61_days_after_it_was_sent(
    app: Flask, system: System, active: str
) -> None:
    system.clock.advance(timedelta(days=61))
    one_click = app.test_client(use_cookies=False).post(
        active, data={"List-Unsubscribe": "One-Click"}
    )
    assert one_click.status_code == 200
    assert status_of(system, "ana@example.com") == SubscriberStatus.UNSUBSCRIBED


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # token format only
def test_the_links_in_emails_carry_ids_never_the_address(
    client: FlaskClient, system: System
) -> None:
    client.post("/subscribe", data={"email": "ana@example.com"})
    confirm = link(system, "ana@example.com", "confirm")
    client.post(confirm)
    unsubscribe = link(system, "ana@example.com", "unsubscribe")
    client.post("/privacy", data={"email": "ana@example.com"})
    for path in (confirm, unsubscribe, link(system, "ana@example.com", "privacy")):
        payload = base64_decode(path.rsplit("/", 1)[1].split(".")[0])
        assert isinstance(json.loads(payload), list) and b"@" not in payload, path


def test_the_unsubscribe_button_confirms_on_a_page(
    client: FlaskClient, system: System, active: str
) -> None:
    response = client.post(active)
    assert response.status_code == 200
    assert "unsubscribed" in response.get_data(as_text=True)
    assert status_of(system, "ana@example.com") == SubscriberStatus.UNSUBSCRIBED


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # link building only
def test_links_in_emails_use_the_configured_base_url_not_the_host_header(
    client: FlaskClient, system: System
) -> None:
    client.post("/subscribe", data={"email": "ana@example.com"}, headers={"Host": "evil.example"})
    assert link(system, "ana@example.com", "confirm").startswith("/confirm/")


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # refused before any query
def test_in_production_a_request_for_another_host_is_refused_and_builds_nothing(
    system: System,
) -> None:
    settings = dataclasses.replace(
        system.settings, production=True, trusted_hosts=frozenset({"drip.example.com"})
    )
    app = create_app(
        settings,
        clock=system.clock,
        enqueue=system.enqueue,
        signups=system.enqueue_signups,
        proofs=Enqueuer(system.broker).proof,
    )
    client = app.test_client()
    for method in (client.get, client.post):
        refused = method(
            "/subscribe", data={"email": "ana@example.com"}, headers={"Host": "evil.example"}
        )
        assert refused.status_code == 400
        assert b"evil.example" not in refused.get_data()
        assert "evil.example" not in str(refused.headers)
    system.drain()
    assert system.smtp.received == []
    with transaction(system.sessions) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Subscriber)) == 0
    ok = client.post(
        "/subscribe", data={"email": "ana@example.com"}, headers={"Host": "drip.example.com"}
    )
    assert ok.status_code == 303
    assert link(system, "ana@example.com", "confirm").startswith("/confirm/")
    app.extensions["drip"].engine.dispose()

"""The subscriber journey over HTTP: landing and embed, abuse protection, the subscriber's
own page (undo, send hour, pause), the privacy page and its rights, retention (standards LAW-16)."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from redis.connection import AbstractConnection

from drip.consent import erasing
from drip.db import transaction
from drip.models import (
    Base,
    ConsentEvent,
    ConsentEventKind,
    ConsentMethod,
    ConsentText,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    ReceivedSignup,
    Step,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from drip.privacy import DECLINE_QUIET, email_hash, erase_ended
from drip.schedule import insert_delivery
from drip.subscriptions import mark_bounced, pause, resubscribe, unsubscribe
from drip.web import create_app
from tests.helpers import (
    System,
    assert_not_on_disk,
    deadlocked_deletes,
    ended_long_ago,
    lessons_fail_from,
)
from tests.test_bounces import report, sent_ids
from tests.web.conftest import BLOG, hidden_fields, link, status_of


def count(system: System, model: type[Base]) -> int:
    with transaction(system.sessions) as session:
        return session.scalar(sa.select(sa.func.count()).select_from(model)) or 0


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # renders only
def test_the_landing_page_tells_what_the_reader_gets(client: FlaskClient) -> None:
    page = client.get("/").get_data(as_text=True)
    assert "Calm Back, Calm Mind" in page
    assert page.count("<li>") >= 13, "ten lessons and three bonuses"
    assert "5-minute desk stretch routine" in page
    assert "<noscript>" in page and "Europe/Berlin" in page, "a timezone list without script"
    assert 'name="website"' in page and 'tabindex="-1"' in page
    assert client.get("/s/feel-better").status_code == 200


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # renders only
def test_the_form_says_who_asks_for_what_how_to_reach_them_and_how_to_withdraw(
    client: FlaskClient,
) -> None:
    """Standards LAW-10 and LAW-30: beside the button, the controller, the purpose, a
    contact besides the postal address, the privacy policy and the right to withdraw."""
    page = client.get("/").get_data(as_text=True)
    after_button = page[page.index('<button type="submit">') :]
    notice = after_button[: after_button.index("</p>")]
    for expected in (
        "sent by Calm Back",
        "a welcome email and one lesson a day",
        "12 Harbour Road",
        "hello@drip.example.com",
        'href="/privacy"',
        "withdraw your consent at any time",
    ):
        assert expected in notice


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # renders only
def test_the_embed_page_gives_a_snippet_that_posts_to_drip(client: FlaskClient) -> None:
    page = client.get("/embed").get_data(as_text=True)
    assert "&lt;form action=&#34;https://drip.example.com/subscribe&#34;" in page
    assert client.get("/s/feel-better/embed").status_code == 200


def test_the_embedded_form_works_from_an_allowed_site_without_javascript(
    blog: FlaskClient, system: System
) -> None:
    response = blog.post("/subscribe", data={"email": "ana@example.com"}, headers={"Origin": BLOG})
    assert response.status_code == 303
    assert response.headers["Location"] == f"{BLOG}/thanks"
    system.drain()
    assert status_of(system, "ana@example.com") == SubscriberStatus.PENDING
    assert system.subscriber("ana@example.com").timezone == "UTC", "the default, no script"


@pytest.mark.parametrize(
    ("form", "headers"),
    [
        ({"email": "ana@example.com", "website": "https://spam.example"}, {}),
        ({"email": "ana@example.com"}, {"Origin": "https://evil.example"}),
        ({"email": "not an address", "website": "https://spam.example"}, {}),
        ({"email": "ana@example.com", "sequence": "nope", "website": "x"}, {}),
    ],
    ids=["honeypot", "foreign-origin", "honeypot-garbage", "honeypot-no-series"],
)
def test_a_bot_gets_the_usual_answer_and_nothing_happens(
    client: FlaskClient, system: System, form: dict[str, str], headers: dict[str, str]
) -> None:
    """It does the work a signup does, and then none of it is kept (standards SEC-12)."""
    response = client.post("/subscribe", data=form, headers=headers)
    assert (response.status_code, response.headers["Location"]) == (303, "/check-inbox")
    assert count(system, ReceivedSignup) == 0
    system.drain()
    assert count(system, Subscriber) == 0
    assert system.smtp.received == []


def shown_stamp(client: FlaskClient) -> str:
    """The signed "shown at" stamp of the landing page's form, as a browser would send it."""
    found = re.search(r'name="shown" value="([^"]+)"', client.get("/").get_data(as_text=True))
    assert found, "the landing page's form carries a stamp"
    return found.group(1)


@pytest.mark.parametrize(
    ("waited", "stamp", "stored"),
    [
        (timedelta(seconds=1), "genuine", 0),
        (timedelta(seconds=3), "genuine", 1),
        (timedelta(seconds=3), "forged", 0),
    ],
    ids=["too-fast", "a-person", "forged"],
)
def test_a_form_sent_back_faster_than_a_person_fills_it_stores_nothing(
    client: FlaskClient, system: System, waited: timedelta, stamp: str, stored: int
) -> None:
    """SEC-13's minimum form-fill time (DRIP_MIN_FILL_SECONDS, 2 s by default)."""
    genuine = shown_stamp(client)
    system.clock.advance(waited)
    form = {"email": "ana@example.com", "shown": genuine if stamp == "genuine" else "1.2.3"}
    response = client.post("/subscribe", data=form)
    assert (response.status_code, response.headers["Location"]) == (303, "/check-inbox")
    system.drain()
    assert count(system, Subscriber) == stored
    assert len(system.smtp.received) == stored


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # form markup and stamp
def test_a_refused_form_keeps_the_time_it_was_first_shown(
    client: FlaskClient, system: System
) -> None:
    """Fixing a typo must not restart the wait: the page shown again carries the stamp."""
    stamp = shown_stamp(client)
    system.clock.advance(timedelta(seconds=3))
    own_page = {"Sec-Fetch-Site": "same-origin"}
    refused = client.post("/subscribe", data={"email": "ana@", "shown": stamp}, headers=own_page)
    assert refused.status_code == 400
    assert f'name="shown" value="{stamp}"' in refused.get_data(as_text=True)
    client.post("/subscribe", data={"email": "ana@example.com", "shown": stamp}, headers=own_page)
    system.drain()
    assert count(system, Subscriber) == 1


@pytest.mark.parametrize("unknown", ["Etc/Unknown", "localtime"])
def test_a_detected_timezone_the_server_does_not_know_falls_back_to_the_default(
    app_with: Callable[..., Flask],
    system: System,
    caplog: pytest.LogCaptureFixture,
    unknown: str,
) -> None:
    """The script fills the field again on every try: refused, the visitor could never
    sign up (a browser that knows Europe/Kyiv, a server whose tzdata does not).
    "localtime" is a file in the server's zoneinfo folder, not a zone."""
    client = app_with(default_timezone="Europe/Berlin").test_client()
    with caplog.at_level(logging.WARNING, logger="drip"):
        response = client.post("/subscribe", data={"email": "ana@example.com", "timezone": unknown})
    assert response.status_code == 303
    system.drain()
    assert system.subscriber("ana@example.com").timezone == "Europe/Berlin"
    [warning] = [r.getMessage() for r in caplog.records if r.name == "drip.signup"]
    assert unknown in warning and "ana@" not in warning
    refused = client.post(
        "/api/v1/subscribers", json={"email": "bob@example.com", "timezone": unknown}
    )
    assert refused.status_code == 400, "an API client sends a zone its OpenAPI lists"


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # lists only
def test_the_form_and_the_api_offer_only_zones_that_name_places(client: FlaskClient) -> None:
    page = client.get("/").get_data(as_text=True)
    offered = set(re.findall(r"<option[^>]*>([^<]+)</option>", page))
    listed = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]["Signup"][
        "properties"
    ]["timezone"]["enum"]
    assert {"Europe/Berlin", "US/Eastern"} <= offered and offered <= set(listed)
    assert not {"localtime", "Factory"} & (offered | set(listed))


def test_without_script_the_timezone_list_is_used(client: FlaskClient, system: System) -> None:
    client.post("/subscribe", data={"email": "ana@example.com", "timezone": ["Asia/Tokyo", ""]})
    system.drain()
    assert system.subscriber("ana@example.com").timezone == "Asia/Tokyo"


def test_signing_up_again_while_pending_resends_at_most_once_a_day(
    client: FlaskClient, system: System
) -> None:
    client.post("/subscribe", data={"email": "ana@example.com"})
    first = link(system, "ana@example.com", "confirm")
    system.clock.advance(timedelta(hours=23))
    client.post("/subscribe", data={"email": "ana@example.com"})
    system.drain()
    assert len(system.smtp.to("ana@example.com")) == 1
    system.clock.advance(timedelta(hours=1, seconds=1))
    client.post("/subscribe", data={"email": "ana@example.com"})
    assert link(system, "ana@example.com", "confirm")
    assert len(system.smtp.to("ana@example.com")) == 2
    assert client.post(first).status_code == 200, "the first email's link still works"


def test_signing_up_after_unsubscribing_starts_a_fresh_double_opt_in(
    client: FlaskClient, system: System
) -> None:
    client.post("/subscribe", data={"email": "ana@example.com"})
    old_confirm = link(system, "ana@example.com", "confirm")
    client.post(old_confirm)
    client.post(link(system, "ana@example.com", "unsubscribe"))
    system.clock.advance(timedelta(days=1))
    response = client.post("/subscribe", data={"email": "ana@example.com"})
    assert response.headers["Location"] == "/check-inbox"
    system.drain()
    assert status_of(system, "ana@example.com") == SubscriberStatus.PENDING
    new_confirm = link(system, "ana@example.com", "confirm")
    assert client.post(old_confirm).status_code == 400, "an old link cannot skip the new consent"
    assert client.post(new_confirm).status_code == 200
    with transaction(system.sessions) as session:
        kinds = session.scalars(sa.select(ConsentEvent.kind).order_by(ConsentEvent.id)).all()
    assert kinds == ["signup", "confirm", "withdraw", "signup", "confirm"]


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # counted in Redis
def test_the_signup_form_is_rate_limited_per_ip_with_retry_after(
    client: FlaskClient, system: System
) -> None:
    """Standards SEC-13: 5 a minute by default."""
    answers = [
        client.post("/subscribe", data={"email": f"p{n}@example.com"}).status_code for n in range(6)
    ]
    assert answers == [303] * 5 + [429]
    limited = client.post("/subscribe", data={"email": "late@example.com"})
    assert limited.status_code == 429
    assert 0 < int(limited.headers["Retry-After"]) <= 60, "the minute's window"
    system.drain()
    assert count(system, Subscriber) == 5


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # counted in Redis
def test_the_per_ip_counters_hold_a_keyed_hash_never_the_ip(app: Flask, system: System) -> None:
    """Standards LAW-15: the IP is kept only as consent evidence, in the database; Redis
    (and its append-only file) holds a keyed hash of it. Each IP still has its own count."""

    def signups(ip: str, count: int) -> list[int]:
        return [
            app.test_client()
            .post(
                "/subscribe",
                data={"email": f"{ip}-{n}@example.com"},
                environ_base={"REMOTE_ADDR": ip},
            )
            .status_code
            for n in range(count)
        ]

    assert signups("203.0.113.3", 6) == [303] * 5 + [429]
    assert signups("198.51.100.9", 1) == [303], "another IP's counter is its own"
    keys = [k.decode() for k in system.broker.client.keys("*")]
    assert any("/signup.subscribe_form/" in k for k in keys)
    assert not [k for k in keys if "203.0.113" in k or "198.51.100" in k]


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # counted in Redis
def test_the_form_and_the_api_count_one_ip_separately(client: FlaskClient) -> None:
    """A blog's embedded form and its own API integration may share a server's IP."""
    for n in range(5):
        client.post("/subscribe", data={"email": f"p{n}@example.com"})
    assert client.post("/subscribe", data={"email": "late@example.com"}).status_code == 429

    response = client.post("/api/v1/subscribers", json={"email": "api@example.com"})

    assert response.status_code == 202


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # counts Redis commands
def test_a_signup_costs_three_round_trips_to_redis(
    client: FlaskClient, system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The two windows of the per-IP limit and the confirmation's dispatch. Rate-limit
    headers on every answer (two more) or a one-message pipeline (which first asks
    whether its script exists) would each slow every signup by a round trip."""
    client.post("/subscribe", data={"email": "first@example.com"})  # connections made
    sent: list[object] = []
    send = AbstractConnection.send_packed_command

    def counted(connection: AbstractConnection, command: object, **options: Any) -> None:
        sent.append(command)
        send(connection, command, **options)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    client.post("/subscribe", data={"email": "ana@example.com"})
    assert len(sent) == 3


def test_one_address_cannot_be_mail_bombed_from_many_ips(app: Flask, system: System) -> None:
    answers = [
        app.test_client()
        .post(
            "/subscribe",
            data={"email": "victim@example.com"},
            environ_base={"REMOTE_ADDR": f"10.0.0.{n}"},
        )
        .status_code
        for n in range(1, 6)
    ]
    assert answers == [303] * 5, "the same answer as for a new address (SEC-12)"
    system.drain()
    assert len(system.smtp.to("victim@example.com")) == 1


def test_the_api_refuses_a_signup_from_a_site_not_allowed_and_says_so(
    blog: FlaskClient, system: System
) -> None:
    """Unlike the form's bot trap, a developer calling the API from a site missing from
    DRIP_ALLOWED_ORIGINS hears why nothing happens; a call without Origin (curl, a
    server) and one from an allowed site go through."""
    refused = blog.post(
        "/api/v1/subscribers",
        json={"email": "ana@example.com"},
        headers={"Origin": "https://evil.example"},
    )
    assert refused.status_code == 403
    assert "DRIP_ALLOWED_ORIGINS" in refused.get_json()["error"]
    assert count(system, ReceivedSignup) == 0
    for address, headers in (("ben@example.com", {"Origin": BLOG}), ("cy@example.com", {})):
        answer = blog.post("/api/v1/subscribers", json={"email": address}, headers=headers)
        assert answer.status_code == 202
    system.drain()
    assert sorted(r.message["To"] for r in system.smtp.received) == [
        "ben@example.com",
        "cy@example.com",
    ]


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # CORS headers only
def test_the_api_allows_cross_origin_calls_from_configured_sites_only(system: System) -> None:
    settings = dataclasses.replace(system.settings, allowed_origins=frozenset({BLOG}))
    app = create_app(
        settings, clock=system.clock, enqueue=system.enqueue, signups=system.enqueue_signups
    )
    try:
        client = app.test_client()
        allowed = client.options(
            "/api/v1/subscribers",
            headers={"Origin": BLOG, "Access-Control-Request-Method": "POST"},
        )
        assert allowed.headers.get("Access-Control-Allow-Origin") == BLOG
        foreign = client.options(
            "/api/v1/subscribers",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "Access-Control-Allow-Origin" not in foreign.headers
    finally:
        app.extensions["drip"].engine.dispose()


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # CORS headers only
def test_the_apis_preflight_offers_only_what_the_api_serves(blog: FlaskClient) -> None:
    """POST for signups, GET for the description, and the one header a JSON body needs."""
    preflight = blog.options(
        "/api/v1/subscribers",
        headers={
            "Origin": BLOG,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-extra",
        },
    )
    methods = preflight.headers["Access-Control-Allow-Methods"].split(", ")
    assert sorted(methods) == ["GET", "OPTIONS", "POST"]
    assert preflight.headers["Access-Control-Allow-Headers"].lower() == "content-type"


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # a static file
def test_the_api_is_described_by_an_openapi_file(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]["/api/v1/subscribers"]["post"]["responses"]) >= {"202", "400", "429"}
    assert spec["servers"] == [{"url": "https://drip.example.com"}]


@pytest.fixture
def ana(client: FlaskClient, system: System) -> Iterator[str]:
    """Ana, confirmed; her page's path (the unsubscribe link of her welcome email)."""
    form = hidden_fields(client.get("/").get_data(as_text=True))
    client.post(
        "/subscribe",
        data={
            "email": "ana@example.com",
            "timezone": "Europe/Berlin",
            "first_name": "Ana Tester",
            "notice": form["notice"],
        },
        headers={"User-Agent": "test-browser/1.0"},
        environ_base={"REMOTE_ADDR": "203.0.113.7"},
    )
    client.post(link(system, "ana@example.com", "confirm"))
    yield link(system, "ana@example.com", "unsubscribe")


def test_unsubscribing_can_be_undone_and_the_series_resumes_tomorrow(
    client: FlaskClient, system: System, ana: str
) -> None:
    page = client.post(ana).get_data(as_text=True)
    assert "Undo" in page
    token = ana.rsplit("/", 1)[1]
    first, again = (client.post(f"/resubscribe/{token}") for _ in range(2))
    assert first.status_code == again.status_code == 200
    assert "Welcome back. The series carries on tomorrow." in first.get_data(as_text=True)
    assert "Nothing changed: you are still subscribed." in again.get_data(as_text=True)
    assert "Welcome back" not in again.get_data(as_text=True), "pressed twice"
    ana_now = system.subscriber("ana@example.com")
    assert ana_now.status == SubscriberStatus.ACTIVE
    assert ana_now.next_step == 1
    assert ana_now.next_send_at is not None
    assert ana_now.next_send_at - system.clock.now() > timedelta(hours=1)


def test_a_subscriber_can_move_their_send_hour(
    client: FlaskClient, system: System, ana: str
) -> None:
    token = ana.rsplit("/", 1)[1]
    before = system.subscriber("ana@example.com").next_send_at
    response = client.post(f"/preferences/{token}", data={"action": "hour", "send_hour": "18"})
    assert "18:00" in response.get_data(as_text=True)
    after = system.subscriber("ana@example.com").next_send_at
    assert before is not None and after is not None
    assert after - before == timedelta(hours=10)
    for hour in ("25", "9" * 5000):  # the second past the 4,300 digits int() takes
        refused = client.post(f"/preferences/{token}", data={"action": "hour", "send_hour": hour})
        assert refused.status_code == 400
    assert system.subscriber("ana@example.com").next_send_at == after


def test_a_subscriber_can_pause_for_a_week(client: FlaskClient, system: System, ana: str) -> None:
    token = ana.rsplit("/", 1)[1]
    client.post(f"/preferences/{token}", data={"action": "pause"})
    paused_until = system.subscriber("ana@example.com").paused_until
    assert paused_until is not None
    assert paused_until - system.clock.now() > timedelta(days=6)
    system.clock.advance(timedelta(days=6))
    assert system.tick().issued == []


def test_a_paused_subscriber_sees_until_when_and_can_resume(
    client: FlaskClient, system: System, ana: str
) -> None:
    """Her page says when the pause ends, in her own time, and offers Resume instead of
    Pause; resumed, her next email comes at her send hour tomorrow, as before the pause."""
    token = ana.rsplit("/", 1)[1]
    paused = client.post(f"/preferences/{token}", data={"action": "pause"}).get_data(True)
    assert (
        "Paused: no email comes before Saturday 31 October 2026 at 08:00 (Europe/Berlin time)."
        in paused
    )
    assert "none comes before Saturday 31 October 2026 at 08:00 (Europe/Berlin time)" in paused
    assert 'value="resume"' in paused and 'value="pause"' not in paused
    assert 'value="resume"' in client.get(ana).get_data(True)
    resumed = client.post(f"/preferences/{token}", data={"action": "resume"}).get_data(True)
    assert (
        "Resumed. Your next email comes on Sunday 25 October 2026 at 08:00 (Europe/Berlin time)."
        in resumed
    )
    assert 'value="pause"' in resumed and "none comes before" not in resumed
    ana_now = system.subscriber("ana@example.com")
    assert (ana_now.paused_until, ana_now.next_send_at) == (
        None,
        datetime(2026, 10, 25, 7, tzinfo=UTC),
    )


def test_a_paused_subscriber_who_moves_their_send_hour_gets_the_next_email_at_it(
    client: FlaskClient, system: System, ana: str
) -> None:
    """The pause ends at the new hour on the day it ended at the old one, and the next
    email goes out then, not held back to the old hour."""
    token = ana.rsplit("/", 1)[1]
    client.post(f"/preferences/{token}", data={"action": "pause"})
    client.post(f"/preferences/{token}", data={"action": "hour", "send_hour": "6"})
    paused = system.subscriber("ana@example.com")
    ends = datetime(2026, 10, 31, 5, tzinfo=UTC)  # 06:00 in Berlin, on winter time
    assert paused.paused_until == ends
    system.clock.set(ends)
    assert len(system.tick().issued) == 1


def test_a_paused_reader_whose_zone_this_server_does_not_know_can_see_and_resume(
    client: FlaskClient, system: System, ana: str
) -> None:
    """A zone a newer tz database accepted at signup (or lost since): the page where
    she unsubscribes still opens, and Pause, Resume and the send hour still work, with
    times in DRIP_DEFAULT_TIMEZONE, as the scheduler reads her zone."""
    token = ana.rsplit("/", 1)[1]
    with transaction(system.sessions) as session:
        found = system.subscriber("ana@example.com", session=session)
        pause(session, found.id, system.clock.now(), default_timezone="UTC")
        found.timezone = "Asia/Nowhere"
    page = client.get(ana)
    assert page.status_code == 200
    assert "none comes before Saturday 31 October 2026 at 07:00 (UTC time)" in page.get_data(True)
    assert "08:00, UTC time" in page.get_data(True)
    hour = client.post(f"/preferences/{token}", data={"action": "hour", "send_hour": "9"})
    assert hour.status_code == 200
    assert "Saved. Your emails now arrive at 09:00, UTC time." in hour.get_data(True)
    assert system.subscriber("ana@example.com").paused_until == datetime(
        2026, 10, 31, 9, tzinfo=UTC
    )
    resumed = client.post(f"/preferences/{token}", data={"action": "resume"})
    assert resumed.status_code == 200
    assert (
        "Resumed. Your next email comes on Sunday 25 October 2026 at 09:00 (UTC time)"
        in resumed.get_data(True)
    )
    paused = client.post(f"/preferences/{token}", data={"action": "pause"})
    assert "before Saturday 31 October 2026 at 09:00 (UTC time)" in paused.get_data(True)


def test_a_signup_whose_zone_this_server_no_longer_knows_can_still_confirm(
    client: FlaskClient, system: System
) -> None:
    """The zone was known at signup and lost with a tzdata change before she confirmed:
    pressing Confirm raised ValueError (a 500), where a pass would have read the zone as
    DRIP_DEFAULT_TIMEZONE. Her welcome goes, and her lessons come at 08:00 in it."""
    client.post("/subscribe", data={"email": "ana@example.com", "timezone": "Europe/Berlin"})
    confirm = link(system, "ana@example.com", "confirm")
    with transaction(system.sessions) as session:
        system.subscriber("ana@example.com", session=session).timezone = "Asia/Nowhere"
    assert client.post(confirm).status_code == 200
    assert status_of(system, "ana@example.com") == SubscriberStatus.ACTIVE
    system.drain()
    assert system.smtp.to("ana@example.com")[-1]["Subject"].startswith("Welcome")
    assert system.subscriber("ana@example.com").next_send_at == datetime(
        2026, 10, 25, 8, tzinfo=UTC
    )


def test_the_confirmation_emails_one_click_cancels_the_pending_signup(
    client: FlaskClient, system: System
) -> None:
    client.post("/subscribe", data={"email": "ana@example.com"})
    confirm = link(system, "ana@example.com", "confirm")
    header = system.smtp.to("ana@example.com")[-1]["List-Unsubscribe"]
    path = str(header).strip("<>").removeprefix("https://drip.example.com")
    client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert status_of(system, "ana@example.com") == SubscriberStatus.UNSUBSCRIBED
    assert client.post(confirm).status_code == 409
    with transaction(system.sessions) as session:
        assert session.scalars(sa.select(Suppression.reason)).all() == ["declined"]
    system.clock.advance(DECLINE_QUIET - timedelta(days=1))
    client.post("/subscribe", data={"email": "ana@example.com"})
    system.drain()
    assert len(system.smtp.to("ana@example.com")) == 1, "declined: not asked again so soon"
    system.clock.advance(timedelta(days=1))
    client.post("/subscribe", data={"email": "ana@example.com"})
    client.post(link(system, "ana@example.com", "confirm"))
    assert status_of(system, "ana@example.com") == SubscriberStatus.ACTIVE
    assert count(system, Suppression) == 0, "their own confirmation lifts the suppression"


SAMPLE_ARGUMENTS = {
    "slug": "feel-better",
    "step_id": "1",
    "subscriber_id": "1",
    "token": "not-a-token",
    "key": "no-such-message",
    "filename": "drip.css",
}
"""A value for each URL argument: a real one where the test system has it (the series,
its first step, the first subscriber, a stylesheet), a bad one otherwise, whose error
page needs the headers just as much."""

FRAMED_BY_THE_ADMIN = {
    "admin_outbox.html": "an email from the outbox, shown in a sandboxed iframe of the "
    "admin's own page: frame-ancestors 'self' and a CSP of its own",
}


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # headers, not data
def test_every_page_sends_security_headers(app: Flask, admin: FlaskClient, system: System) -> None:
    """Standards SEC-18, over every GET route there is, as a logged-in admin so that the
    admin pages answer with themselves rather than a redirect to the login."""
    system.join("ana@example.com")
    rules = [rule for rule in app.url_map.iter_rules() if "GET" in (rule.methods or ())]
    assert len(rules) > 25
    for rule in rules:
        path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: SAMPLE_ARGUMENTS[m.group(1)], rule.rule)
        with admin.get(path) as response:  # a static file's answer holds it open
            headers = response.headers
            where = (rule.endpoint, path, response.status_code)
        assert headers["X-Content-Type-Options"] == "nosniff", where
        assert headers["Strict-Transport-Security"], where
        expected = ("no-referrer",) if "<token>" in rule.rule else ("no-referrer", "same-origin")
        assert headers["Referrer-Policy"] in expected, where
        if rule.endpoint not in FRAMED_BY_THE_ADMIN:
            assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], where
            assert "unsafe-inline" not in headers["Content-Security-Policy"], where
            assert headers["X-Frame-Options"] == "DENY", where


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # renders only
def test_the_privacy_page_says_who_what_why_and_how_long(client: FlaskClient) -> None:
    page = client.get("/privacy").get_data(as_text=True)
    for expected in (
        "Calm Back",
        "12 Harbour Road",
        "hello@drip.example.com",
        "deleted 7 days after they were made, or after the last confirmation email we sent "
        "for them if that came later",
        "the signup is deleted with the other unconfirmed ones",
        "for 30 days from the cancellation, so that nobody can have you asked again "
        "meanwhile; then we delete it too",
        "consent",
        "for 1095 more days",
        "not even this link. To see or erase your data then, write to",
        "a keyed hash of the address it went to (not the address itself) and the time, and "
        "keep that for 30 days, also if you erase your data meanwhile",
        "a spam report we cannot tie to our email, is kept for a person to look at for up "
        "to 30 days, then deleted. Erasing your data does not reach such a report",
    ):
        assert expected in page
    assert 'action="/privacy"' in page
    assert "stays until you ask us to erase it" not in page, "it has an end now (LAW-16)"


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # renders only
def test_the_privacy_page_states_the_configured_retention_period(
    app_with: Callable[..., Flask],
) -> None:
    app = app_with(retention=timedelta(days=400))
    page = app.test_client().get("/privacy").get_data(as_text=True)
    assert "for 400 more days" in page and "1095" not in page


def test_asking_for_a_privacy_link_reveals_nothing(
    client: FlaskClient, system: System, ana: str
) -> None:
    known = client.post("/privacy", data={"email": "ana@example.com"})
    unknown = client.post("/privacy", data={"email": "nobody@example.com"})
    assert (known.status_code, known.headers["Location"]) == (
        unknown.status_code,
        unknown.headers["Location"],
    )
    assert link(system, "ana@example.com", "privacy")
    assert system.smtp.to("nobody@example.com") == []


def test_a_subscriber_can_download_everything_stored_about_them(
    client: FlaskClient, system: System, ana: str
) -> None:
    client.post("/privacy", data={"email": "ana@example.com"})
    manage = link(system, "ana@example.com", "privacy")
    assert client.get(manage).status_code == 200
    data = json.loads(client.get(f"{manage}/export.json").get_data())
    assert data["email"] == "ana@example.com"
    (subscription,) = data["subscriptions"]
    assert subscription["series"] == "feel-better"
    signup, confirm = subscription["consent_events"]
    assert signup["notice_shown"]["text"].startswith("By signing up")
    assert (signup["kind"], confirm["kind"]) == ("signup", "confirm")
    assert confirm["occurred_at"] and confirm["signup_event"] == signup["id"]
    kinds = [e["kind"] for e in subscription["emails"]]
    assert kinds == ["confirmation", "step", "privacy"]


def test_erasure_leaves_no_trace_of_the_address_but_a_keyed_hash(
    client: FlaskClient, system: System, ana: str
) -> None:
    client.post("/privacy", data={"email": "ana@example.com"})
    manage = link(system, "ana@example.com", "privacy")
    system.stop_worker()
    client.post(
        "/subscribe",
        data={"email": "ana@example.com", "first_name": "Ana Tester"},
        headers={"User-Agent": "test-browser/1.0"},
        environ_base={"REMOTE_ADDR": "203.0.113.7"},
    )  # received, and no worker has handled it yet: the erasure deletes it too
    erased = client.post(erase_button(client, manage))
    assert erased.status_code == 200
    assert "for 30 days after each confirmation email" in erased.get_data(as_text=True), (
        "the keyed hashes of its confirmation emails stay, for the limits of SEC-13"
    )

    traces = ("ana@example.com", "Ana Tester", "test-browser/1.0", "203.0.113.7")
    with transaction(system.sessions) as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(sa.select(table)).all():
                for trace in traces:
                    assert trace.lower() not in repr(tuple(row)).lower(), (table.name, trace)
        hashes = session.scalars(sa.select(Suppression.email_hash)).all()
    assert_not_on_disk(system, "ana@example.com")
    assert hashes == [email_hash(system.settings.secret_key, "ana@example.com")]
    assert client.get(manage).status_code == 400, "the link dies with the data"

    mailed = len(system.smtp.to("ana@example.com"))
    client.post("/subscribe", data={"email": "ana@example.com"})
    system.drain()
    assert len(system.smtp.to("ana@example.com")) == mailed, "erasing resets no limit"
    system.clock.advance(timedelta(days=1))
    client.post("/subscribe", data={"email": "ana@example.com"})
    client.post(link(system, "ana@example.com", "confirm"))
    assert status_of(system, "ana@example.com") == SubscriberStatus.ACTIVE
    assert count(system, Suppression) == 0, "a fresh confirmation lifts the suppression"


def test_an_erased_persons_old_links_never_act_on_whoever_signs_up_next(
    client: FlaskClient, system: System
) -> None:
    """On SQLite the next signup took the ids Ana's erasure freed (migration 0020): her
    old privacy link showed Bob's data with an erase button, her one-click unsubscribe
    ended his subscription, and her old confirmation link confirmed an address she had
    just submitted, past double opt-in (standards UNS-05, SEC-10). His emails took her
    Message-IDs too. Her links must find nobody."""
    client.post("/subscribe", data={"email": "ana@example.com"})
    confirm = link(system, "ana@example.com", "confirm")
    client.post(confirm)
    unsubscribe = link(system, "ana@example.com", "unsubscribe")
    client.post("/privacy", data={"email": "ana@example.com"})
    manage = link(system, "ana@example.com", "privacy")
    hers = {mail["Message-ID"] for mail in system.smtp.to("ana@example.com")}
    assert client.post(erase_button(client, manage)).status_code == 200

    client.post("/subscribe", data={"email": "bob@example.com", "timezone": "America/Chicago"})
    system.drain()
    assert client.post(confirm).status_code == 400
    assert status_of(system, "bob@example.com") == SubscriberStatus.PENDING
    assert client.get(manage).status_code == 400
    client.post(link(system, "bob@example.com", "confirm"))
    assert "America/Chicago" not in client.get(unsubscribe).get_data(as_text=True)
    assert client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert status_of(system, "bob@example.com") == SubscriberStatus.ACTIVE
    system.drain()
    assert not hers & {mail["Message-ID"] for mail in system.smtp.to("bob@example.com")}


def test_a_privacy_link_expires_after_a_day(client: FlaskClient, system: System, ana: str) -> None:
    client.post("/privacy", data={"email": "ana@example.com"})
    manage = link(system, "ana@example.com", "privacy")
    erase = erase_button(client, manage)
    system.clock.advance(timedelta(hours=25))
    expired = client.get(manage)
    assert expired.status_code == 400
    assert (
        expired.get_data() == client.post(erase).get_data() == client.get("/privacy/x").get_data()
    )
    assert status_of(system, "ana@example.com") == SubscriberStatus.ACTIVE


@pytest.mark.parametrize("database_kind", ["postgresql"], indirect=True)
def test_an_erasure_the_database_aborts_for_a_deadlock_asks_to_be_sent_again(
    client: FlaskClient, system: System, ana: str, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL breaks a deadlock by aborting one of its transactions (drip.db
    CONFLICTS). When that is the erasure, the page says nothing changed and to try again
    (503, Retry-After), not a 500; the same button then erases. The log names neither
    the address nor the token."""
    client.post("/privacy", data={"email": "ana@example.com"})
    erase = erase_button(client, link(system, "ana@example.com", "privacy"))
    with deadlocked_deletes(system, "subscribers"), caplog.at_level(logging.WARNING):
        aborted = client.post(erase)
    assert (aborted.status_code, aborted.headers["Retry-After"]) == (503, "1")
    assert "nothing was changed. Please go back and try again." in aborted.get_data(True)
    [logged] = [r.getMessage() for r in caplog.records if "transaction_conflict" in r.getMessage()]
    assert "sqlstate=40P01 endpoint=privacy.erase_everything" in logged
    assert "ana@" not in logged and erase.split("/")[2] not in logged
    assert status_of(system, "ana@example.com") == SubscriberStatus.ACTIVE
    assert client.post(erase).status_code == 200
    assert count(system, Subscriber) == 0


def erase_button(client: FlaskClient, manage: str) -> str:
    """Where the privacy page's erase button posts (a token of its own, not the link's)."""
    (action,) = re.findall(r'action="(/privacy/[^"]+/erase)"', client.get(manage).get_data(True))
    return action


def withdraw_button(client: FlaskClient, manage: str) -> str | None:
    """Where the privacy page's unsubscribe button posts, if the page shows one."""
    found = re.findall(r'action="(/privacy/[^"]+/unsubscribe)"', client.get(manage).get_data(True))
    return found[0] if found else None


def test_the_privacy_page_withdraws_consent_as_easily_as_it_erases(
    client: FlaskClient, system: System, ana: str
) -> None:
    """Standards LAW-12: withdrawing is as easy as giving, from the privacy page too. The
    log, and the export it feeds, say it was the privacy page, not an email's link
    (LAW-21: the proof says how consent was withdrawn)."""
    client.post("/privacy", data={"email": "ana@example.com"})
    manage = link(system, "ana@example.com", "privacy")
    withdraw = withdraw_button(client, manage)
    assert withdraw is not None
    erase = erase_button(client, manage)
    assert client.post(f"{manage}/unsubscribe").status_code == 400, "the link alone cannot"
    assert client.post(erase.replace("/erase", "/unsubscribe")).status_code == 400
    assert client.post(withdraw.replace("/unsubscribe", "/erase")).status_code == 400
    assert client.get(withdraw.removesuffix("/unsubscribe")).status_code == 400
    assert status_of(system, "ana@example.com") == SubscriberStatus.ACTIVE

    withdrawn = client.post(withdraw)
    assert withdrawn.status_code == 200
    assert "You are unsubscribed." in withdrawn.get_data(True)
    assert status_of(system, "ana@example.com") == SubscriberStatus.UNSUBSCRIBED
    with transaction(system.sessions) as session:
        withdrawals = session.execute(
            sa.select(ConsentEvent.method).where(ConsentEvent.kind == ConsentEventKind.WITHDRAW)
        ).all()
    assert withdrawals == [(ConsentMethod.PRIVACY_PAGE,)]
    [subscription] = client.get(f"{manage}/export.json").get_json()["subscriptions"]
    exported = [e["method"] for e in subscription["consent_events"] if e["kind"] == "withdraw"]
    assert exported == ["privacy_page"]
    assert withdraw_button(client, manage) is None, "nothing left to withdraw"
    assert client.post(withdraw).status_code == 200, "twice changes nothing more"
    system.clock.advance(timedelta(days=2))
    assert system.tick().issued == []


def test_the_privacy_page_offers_to_unsubscribe_only_when_it_can(
    client: FlaskClient, system: System, ana: str
) -> None:
    """The page promises what its buttons do: no unsubscribe once nothing is left to end."""
    client.post("/privacy", data={"email": "ana@example.com"})
    manage = link(system, "ana@example.com", "privacy")

    def offers(page: str) -> str:
        return page.split("<h2>")[0].lower()  # the data shown below may say "unsubscribed"

    before = offers(client.get(manage).get_data(True))
    assert "unsubscribe" in before and "download" in before and "erase" in before
    withdraw = withdraw_button(client, manage)
    assert withdraw is not None
    client.post(withdraw)
    after = offers(client.get(manage).get_data(True))
    assert "unsubscribe" not in after and "download" in after and "erase" in after


def test_a_pending_signup_can_be_withdrawn_from_the_privacy_page(
    client: FlaskClient, system: System
) -> None:
    client.post("/subscribe", data={"email": "bob@example.com"})
    system.drain()
    client.post("/privacy", data={"email": "bob@example.com"})
    withdraw = withdraw_button(client, link(system, "bob@example.com", "privacy"))
    assert withdraw is not None
    page = client.post(withdraw).get_data(True)
    assert status_of(system, "bob@example.com") == SubscriberStatus.UNSUBSCRIBED
    assert "Your signup is cancelled." in page, "he had never subscribed, so says so"
    assert "You are unsubscribed" not in page


def test_the_privacy_link_cannot_erase_and_the_erase_token_cannot_open_the_data(
    client: FlaskClient, system: System, ana: str
) -> None:
    client.post("/privacy", data={"email": "ana@example.com"})
    manage = link(system, "ana@example.com", "privacy")
    erase = erase_button(client, manage)
    assert client.post(f"{manage}/erase").status_code == 400
    assert client.get(erase.removesuffix("/erase")).status_code == 400
    assert client.get(erase.replace("/erase", "/export.json")).status_code == 400
    assert status_of(system, "ana@example.com") == SubscriberStatus.ACTIVE


def test_signups_never_confirmed_are_deleted_after_seven_days(
    client: FlaskClient, system: System, ana: str
) -> None:
    client.post("/subscribe", data={"email": "old@example.com"})
    system.drain()
    system.clock.advance(timedelta(days=6))
    client.post("/subscribe", data={"email": "new@example.com"})
    system.drain()
    system.tick()
    assert count(system, Subscriber) == 3
    system.clock.advance(timedelta(days=1, minutes=1))
    assert system.tick().purged == 1
    with transaction(system.sessions) as session:
        assert sorted(session.scalars(sa.select(Subscriber.email))) == [
            "ana@example.com",
            "new@example.com",
        ]


def test_someone_sent_the_link_again_on_day_six_can_confirm_on_day_ten(
    client: FlaskClient, system: System
) -> None:
    """The purge counted from the signup alone, so it deleted the row on day 7 and the
    link sent again on day 6, which promised 7 days, led nowhere on day 10."""
    client.post("/subscribe", data={"email": "dee@example.com"})
    system.drain()
    system.clock.advance(timedelta(days=6))
    client.post("/subscribe", data={"email": "dee@example.com"})
    again = link(system, "dee@example.com", "confirm")
    system.clock.advance(timedelta(days=1, minutes=1))
    assert system.tick().purged == 0
    system.clock.advance(timedelta(days=3))
    system.tick()
    assert client.post(again).status_code == 200
    assert status_of(system, "dee@example.com") == SubscriberStatus.ACTIVE


def test_a_confirmation_sent_again_works_as_long_as_it_says_and_is_purged_after(
    client: FlaskClient, system: System
) -> None:
    """Signing up again while pending sends the confirmation again, with no new signup
    event; that email promises its link for DRIP_CONFIRM_DAYS from when it went, so the
    purge counts from then, and deletes the signup once the link has expired."""
    client.post("/subscribe", data={"email": "dee@example.com"})
    system.drain()
    system.clock.advance(timedelta(days=6, hours=12))
    client.post("/subscribe", data={"email": "dee@example.com"})
    again = link(system, "dee@example.com", "confirm")
    text = system.smtp.to("dee@example.com")[-1].get_body(("plain",)).get_content()
    assert "This link works for 7 days" in text

    system.clock.advance(timedelta(days=7, minutes=-1))
    assert system.tick().purged == 0
    assert client.get(again).status_code == 200
    system.clock.advance(timedelta(minutes=2))
    assert client.get(again).status_code == 400
    assert system.tick().purged == 1
    assert count(system, Subscriber) == 0


def test_a_signup_declined_from_its_confirmation_email_is_deleted_with_the_unconfirmed(
    client: FlaskClient, system: System, ana: str
) -> None:
    client.post("/subscribe", data={"email": "bob@example.com"})
    decline = link(system, "bob@example.com", "unsubscribe")
    client.post(decline, data={"List-Unsubscribe": "One-Click"})
    client.post(ana)
    system.clock.advance(timedelta(days=7, minutes=1))
    assert system.tick().purged == 1
    with transaction(system.sessions) as session:
        assert session.scalars(sa.select(Subscriber.email)).all() == ["ana@example.com"]
        assert session.scalars(sa.select(Suppression.reason)).all() == ["declined"]


def test_a_signup_whose_confirmation_hard_bounced_is_deleted_with_the_unconfirmed(
    client: FlaskClient, system: System, ana: str
) -> None:
    """The privacy page says signups never confirmed are deleted after DRIP_PENDING_DAYS;
    a mistyped address whose confirmation bounced ended as BOUNCED, and was kept for
    DRIP_RETENTION_DAYS. Its suppression is a row of its own: the address stays barred."""
    client.post("/subscribe", data={"email": "typo@example.com"})
    system.drain()
    report(system, "hard", sent_ids(system, "typo@example.com")[-1], "typo@example.com")
    assert status_of(system, "typo@example.com") == SubscriberStatus.BOUNCED
    system.clock.advance(system.settings.pending_ttl + timedelta(minutes=1))
    assert system.tick().purged == 1
    with transaction(system.sessions) as session:
        assert session.scalars(sa.select(Subscriber.email)).all() == ["ana@example.com"]
        assert session.scalars(sa.select(Suppression.reason)).all() == ["bounced"]
    assert system.signup("typo@example.com") is None
    system.drain()
    assert len(system.smtp.to("typo@example.com")) == 1, "only the confirmation that bounced"


def test_a_declined_signup_leaves_nothing_once_its_quiet_period_is_over(
    client: FlaskClient, system: System
) -> None:
    """ "This wasn't me" keeps a hash of the address so that nobody can have it asked
    again for DECLINE_QUIET. The hash then stayed for good, refusing any import of the
    address; the scheduler now deletes it, and nothing of the address is left."""
    client.post("/subscribe", data={"email": "bob@example.com"})
    decline = link(system, "bob@example.com", "unsubscribe")
    client.post(decline, data={"List-Unsubscribe": "One-Click"})
    system.clock.advance(DECLINE_QUIET - timedelta(minutes=1))
    assert system.tick().purged == 1
    assert count(system, Suppression) == 1
    system.clock.advance(timedelta(minutes=1))
    system.tick()
    assert (count(system, Subscriber), count(system, Suppression)) == (0, 0)


def test_the_purge_never_touches_a_subscriber_who_confirmed(system: System, ana: str) -> None:
    with transaction(system.sessions) as session, erasing(session):
        session.execute(sa.delete(ConsentEvent))  # e.g. rows from before the consent log
    system.clock.advance(timedelta(days=40))
    assert system.tick().purged == 0
    assert status_of(system, "ana@example.com") == SubscriberStatus.ACTIVE


RETENTION_PEOPLE = ("carl", "dora", "eve", "fay", "hal", "ian")


def rows_of(system: System, emails: list[str]) -> dict[str, tuple[object, ...]]:
    """Each subscription of `emails` as retention could change it, with its consent log's
    and deliveries' ids."""
    with transaction(system.sessions) as session:
        found = {}
        for subscriber in session.scalars(
            sa.select(Subscriber).where(Subscriber.email.in_(emails))
        ):
            events = session.scalars(
                sa.select(ConsentEvent.id).where(ConsentEvent.subscriber_id == subscriber.id)
            ).all()
            deliveries = session.scalars(
                sa.select(Delivery.id).where(Delivery.subscriber_id == subscriber.id)
            ).all()
            found[subscriber.email] = (
                subscriber.id,
                subscriber.status,
                subscriber.first_name,
                subscriber.timezone,
                subscriber.confirmed_at,
                subscriber.ended_at,
                tuple(events),
                frozenset(deliveries),
            )
        return found


def test_subscriptions_ended_longer_ago_than_the_retention_period_are_erased_and_nothing_else(
    client: FlaskClient, system: System, ana: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Standards LAW-16: consent evidence is kept while the subscription lasts, then for
    DRIP_RETENTION_DAYS; a pass on the clock seam then erases the subscriptions that ended
    before that, each as an erasure would, and touches nothing else: not one that ended
    later, nor an active, paused or pending one."""
    emails = {name: f"{name}@example.com" for name in RETENTION_PEOPLE}
    for email in emails.values():
        system.signup(email, first_name="Tester", timezone="Asia/Tokyo")
    system.drain()
    for email in emails.values():
        system.confirm(email)
    system.drain()
    for name in ("carl", "fay"):
        client.post(
            link(system, emails[name], "unsubscribe"), data={"List-Unsubscribe": "One-Click"}
        )
    secret, now = system.settings.secret_key, system.clock.now()
    with transaction(system.sessions) as session:
        mark_bounced(
            session, system.subscriber(emails["dora"], session=session), now, secret=secret
        )
        session.execute(  # the series is over for eve, as the last lesson's send leaves it
            sa.update(Subscriber)
            .where(Subscriber.email == emails["eve"])
            .values(
                status=SubscriberStatus.COMPLETED, next_step=None, next_send_at=None, ended_at=now
            )
        )
    system.clock.advance(timedelta(days=30))
    client.post(link(system, emails["hal"], "unsubscribe"), data={"List-Unsubscribe": "One-Click"})
    system.clock.advance(system.settings.retention - timedelta(days=30, minutes=-1))
    system.signup(emails["fay"])  # back after years: pending again, on the same row
    system.drain()
    with transaction(system.sessions) as session:
        ian = system.subscriber(emails["ian"], session=session)
        pause(session, ian.id, system.clock.now(), default_timezone="UTC")
    kept = ["ana@example.com", emails["fay"], emails["hal"], emails["ian"]]
    before = rows_of(system, kept)
    assert [before[email][1] for email in kept] == [
        SubscriberStatus.ACTIVE,
        SubscriberStatus.PENDING,
        SubscriberStatus.UNSUBSCRIBED,
        SubscriberStatus.ACTIVE,
    ]

    with caplog.at_level(logging.INFO, logger="drip.scheduler"):
        assert system.tick().erased == 3
    [logged] = [r.getMessage() for r in caplog.records if "retention_erased" in r.getMessage()]
    assert logged.startswith("retention_erased count=3") and "@" not in logged

    after = rows_of(system, [*emails.values(), "ana@example.com"])
    assert sorted(after) == sorted(kept)
    for email in kept:
        *columns, deliveries = after[email]
        assert columns == list(before[email][:-1]), email
        assert deliveries >= before[email][-1], f"{email} lost a delivery"
    gone = ("carl@example.com", "dora@example.com", "eve@example.com")
    with transaction(system.sessions) as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(sa.select(table)).all():
                for email in gone:
                    assert email not in repr(tuple(row)), (table.name, email)
        assert (
            session.scalar(
                sa.select(sa.func.count()).where(
                    ~Delivery.subscriber_id.in_([r[0] for r in after.values()])
                )
            )
            == 0
        )
        suppressed = dict(
            session.execute(sa.select(Suppression.email_hash, Suppression.reason)).all()
        )
    assert suppressed == {
        email_hash(secret, "carl@example.com"): "erased",
        email_hash(secret, "dora@example.com"): "bounced",
        email_hash(secret, "eve@example.com"): "erased",
    }
    assert_not_on_disk(system, "carl@example.com")

    system.clock.advance(timedelta(days=30))
    assert system.tick().erased == 2, "hal's period has run out too, and fay's had"
    with transaction(system.sessions) as session:
        assert sorted(session.scalars(sa.select(Subscriber.email))) == [
            "ana@example.com",
            emails["ian"],
        ], "fay's new signup, never confirmed, was purged, and her subscription as it ended"


def test_retention_erases_the_oldest_ended_first_and_a_batch_at_most(system: System) -> None:
    """A list years old has a backlog on its first pass: each pass erases a batch in one
    short transaction, and the next passes take the rest."""
    addresses = system.join_many(3)
    for address in reversed(addresses):
        with transaction(system.sessions) as session:
            subscriber_id = system.subscriber(address, session=session).id
            unsubscribe(session, subscriber_id, system.clock.now(), method=ConsentMethod.ADMIN)
        system.clock.advance(timedelta(days=1))
    system.clock.advance(system.settings.retention)
    left = []
    for _ in range(3):
        with transaction(system.sessions) as session:
            erased = erase_ended(
                session,
                secret=system.settings.secret_key,
                now=system.clock.now(),
                older_than=system.settings.retention,
                limit=2,
            )
            left.append((erased, sorted(session.scalars(sa.select(Subscriber.email)))))
    assert left == [(2, [addresses[0]]), (1, []), (0, [])]


def test_retention_leaves_the_address_mailable_while_it_is_confirmed_on_another_series(
    system: System,
) -> None:
    """Retention goes by subscription: an address may have ended one series years ago and
    be reading another. Its hash would stop that one's lessons, so it comes only once
    no confirmed subscription of the address is left. A signup still to confirm does
    not count: its confirmation lifts the hash, as after an erasure."""
    system.join("ana@example.com")
    ended_long_ago(system, "ana@example.com", "bob@example.com")
    system.signup("bob@example.com")
    system.drain()
    mailed = len(system.smtp.to("ana@example.com"))

    assert system.tick().erased == 2
    system.drain()
    assert len(system.smtp.to("ana@example.com")) == mailed + 1, "her lesson still goes"
    hashes = {
        email_hash(system.settings.secret_key, e): e for e in ("ana@example.com", "bob@example.com")
    }
    with transaction(system.sessions) as session:
        suppressed = [hashes[h] for h in session.scalars(sa.select(Suppression.email_hash))]
    assert suppressed == ["bob@example.com"]
    system.confirm("bob@example.com")
    system.drain()
    assert status_of(system, "bob@example.com") == SubscriberStatus.ACTIVE
    assert "Welcome" in system.smtp.to("bob@example.com")[-1]["Subject"]
    assert count(system, Suppression) == 0, "his confirmation lifted it"


def test_retention_counts_a_past_reader_signed_up_again_as_confirmed(system: System) -> None:
    """Ana left the first series lately, and someone has signed her up to it again, not
    confirmed yet, when her subscription to a second series runs out its retention
    period. That signup cleared `confirmed_at`, and the sweep took her for someone who
    never confirmed and added the hash; once the purge dropped the signup, her undo link
    restarted a series whose lessons the hash then refused."""
    system.join("ana@example.com")
    ended_long_ago(system, "ana@example.com")
    with transaction(system.sessions) as session:
        subscriber_id = system.subscriber("ana@example.com", session=session).id
        unsubscribe(session, subscriber_id, system.clock.now(), method=ConsentMethod.LINK)
    system.signup("ana@example.com")
    system.drain()

    assert system.tick().erased == 1
    assert count(system, Suppression) == 0
    system.clock.advance(system.settings.pending_ttl + timedelta(minutes=1))
    assert system.tick().purged == 1
    with transaction(system.sessions) as session:
        resubscribe(session, subscriber_id, system.clock.now(), default_timezone="UTC")
    mailed = len(system.smtp.to("ana@example.com"))
    system.clock.advance(timedelta(days=2))
    system.tick()
    system.drain()
    assert len(system.smtp.to("ana@example.com")) == mailed + 1, "her lesson goes"


def test_a_browser_post_from_the_landing_page_is_accepted(
    client: FlaskClient, system: System
) -> None:
    """Browsers send Origin: null under a no-referrer policy; the landing page must not
    have one, and a same-origin post that still says null is recognised as ours."""
    assert client.get("/").headers["Referrer-Policy"] == "same-origin"
    client.post(
        "/subscribe",
        data={"email": "ana@example.com"},
        headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"},
    )
    system.drain()
    assert status_of(system, "ana@example.com") == SubscriberStatus.PENDING


@pytest.mark.parametrize(
    ("address", "sec_fetch_site"),
    [
        ("http://127.0.0.1:5000", "same-origin"),  # the link the dev server prints
        ("http://192.168.1.20:5000", "same-origin"),  # a phone, under make run HOST=0.0.0.0
        ("http://192.168.1.20:5000", None),  # a browser that sends no Sec-Fetch-Site
    ],
    ids=["loopback", "lan", "lan-no-fetch-metadata"],
)
def test_the_landing_page_signs_up_at_an_address_other_than_the_base_url(
    client: FlaskClient, system: System, address: str, sec_fetch_site: str | None
) -> None:
    """drip's own page, opened at another address than DRIP_BASE_URL's, posts its form
    with that address as Origin: a foreign page cannot send drip's own origin, so it is a
    signup, not a bot's post dropped behind "Check your inbox"."""
    headers = {"Origin": address}
    if sec_fetch_site:
        headers["Sec-Fetch-Site"] = sec_fetch_site
    response = client.post(
        "/subscribe", data={"email": "ana@example.com"}, headers=headers, base_url=address
    )
    assert (response.status_code, response.headers["Location"]) == (303, "/check-inbox")
    system.drain()
    assert status_of(system, "ana@example.com") == SubscriberStatus.PENDING


def test_a_foreign_origin_is_dropped_whatever_address_drip_was_reached_at(
    client: FlaskClient, system: System
) -> None:
    """Only the request's own origin counts as drip's, not any other address."""
    client.post(
        "/subscribe",
        data={"email": "ana@example.com"},
        headers={"Origin": "http://192.168.1.99:5000"},
        base_url="http://192.168.1.20:5000",
    )
    assert count(system, ReceivedSignup) == 0


def test_the_embedded_form_signs_up_from_a_site_whose_referrer_policy_hides_its_origin(
    blog: FlaskClient, system: System
) -> None:
    """Under Referrer-Policy no-referrer or same-origin (Helmet's default) a browser
    posts the form to drip with Origin: null, which names no site, as a post without
    Origin names none: both are signups, and double opt-in protects the address
    (standards SEC-14). The evidence keeps what the browser said."""
    response = blog.post(
        "/subscribe",
        data={"email": "ana@example.com", "page": f"{BLOG}/posts/sleep"},
        headers={"Origin": "null", "Sec-Fetch-Site": "cross-site"},
    )
    assert (response.status_code, response.headers["Location"]) == (303, f"{BLOG}/thanks")
    system.drain()
    assert status_of(system, "ana@example.com") == SubscriberStatus.PENDING
    with transaction(system.sessions) as session:
        signup = session.scalars(sa.select(ConsentEvent)).one()
    assert (signup.form_id, signup.embed_origin) == ("embed", "null")


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # refused before any write
def test_the_api_refuses_a_call_from_a_page_that_names_no_origin(
    blog: FlaskClient, system: System
) -> None:
    """Origin: null on the API is a sandboxed frame, a file or a page hiding its origin:
    none of them an allowed site, so 403 as for a foreign one. A browser preflights a
    JSON call, which CORS refuses to such a page, so only a non-browser client gets here."""
    refused = blog.post(
        "/api/v1/subscribers",
        json={"email": "ana@example.com"},
        headers={"Origin": "null", "Sec-Fetch-Site": "cross-site"},
    )
    assert refused.status_code == 403
    assert count(system, ReceivedSignup) == 0


@pytest.mark.parametrize(
    ("form", "headers", "reason"),
    [
        ({"website": "https://spam.example"}, {}, "the hidden field was filled"),
        ({"shown": "1.2.3"}, {}, "sent back sooner than a person fills the form"),
        ({}, {"Origin": "https://evil.example"}, "'https://evil.example'"),
    ],
    ids=["honeypot", "too-fast", "foreign-origin"],
)
@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # the log line only
def test_a_dropped_signup_is_logged_with_why_never_with_the_address(
    client: FlaskClient,
    system: System,
    caplog: pytest.LogCaptureFixture,
    form: dict[str, str],
    headers: dict[str, str],
    reason: str,
) -> None:
    """A writer wondering where their signups went finds the reason in the log; the
    visitor, or the bot, still sees the usual answer. A bot's post carries no notice
    stamp, and is not taken for an out-of-date form on someone's site."""
    with caplog.at_level(logging.INFO, logger="drip"):
        response = client.post(
            "/subscribe", data={"email": "ana@example.com", **form}, headers=headers
        )
    assert response.status_code == 303
    [logged] = [r for r in caplog.records if "signup_dropped" in r.getMessage()]
    assert logged.levelno == logging.INFO
    assert reason in logged.getMessage() and "ana@" not in logged.getMessage()
    assert "out_of_date" not in caplog.text
    assert count(system, ReceivedSignup) == 0


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # headers, not data
def test_pages_with_a_token_in_the_url_leak_no_referrer_and_are_not_cached(
    client: FlaskClient, system: System, ana: str
) -> None:
    """Standards SEC-18: the real confirm, unsubscribe and privacy pages, as opened from
    their emails."""
    client.post("/subscribe", data={"email": "bob@example.com"})
    client.post("/privacy", data={"email": "ana@example.com"})
    privacy = link(system, "ana@example.com", "privacy")
    for path in (link(system, "bob@example.com", "confirm"), ana, privacy):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["Referrer-Policy"] == "no-referrer", path
        assert response.headers["Cache-Control"] == "no-store", path


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # redirects only
def test_the_writers_thank_you_page_is_used_for_their_site_only(blog: FlaskClient) -> None:
    own = blog.post(
        "/subscribe", data={"email": "a@example.com"}, headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert own.headers["Location"] == "/check-inbox", "the landing page's CSP allows no other"
    theirs = blog.post("/subscribe", data={"email": "b@example.com"}, headers={"Origin": BLOG})
    assert theirs.headers["Location"] == f"{BLOG}/thanks"


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # counted in Redis
def test_look_alike_spellings_of_one_address_share_its_privacy_request_limit(
    app: Flask, system: System
) -> None:
    spellings = [
        "victim@example.com",
        "Victim@Example.com",
        " victim@EXAMPLE.com ",
        "victim@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com",
        "VICTIM@example.COM",
    ]
    answers = [
        app.test_client()
        .post("/privacy", data={"email": spelling}, environ_base={"REMOTE_ADDR": f"10.2.0.{n}"})
        .status_code
        for n, spelling in enumerate(spellings)
    ]
    assert answers == [303, 303, 303, 429, 429]
    keys = [k.decode() for k in system.broker.client.keys("*address*")]
    assert keys and not any("victim" in k for k in keys), "counters never hold the address"


def test_a_returning_subscriber_is_not_purged_by_their_first_signups_age(
    client: FlaskClient, system: System, ana: str
) -> None:
    client.post(ana)
    system.clock.advance(timedelta(days=40))
    client.post("/subscribe", data={"email": "ana@example.com"})
    system.drain()
    assert system.tick().purged == 0
    assert status_of(system, "ana@example.com") == SubscriberStatus.PENDING


def test_a_past_reader_signed_up_again_loses_only_the_signup_nobody_confirmed(
    client: FlaskClient, system: System, ana: str
) -> None:
    """Anyone can type a past reader's address into the form, and the signup it makes
    clears `confirmed_at`. The purge of signups never confirmed then took Ana for one:
    a week later her confirmation, withdrawal and emails were gone, not kept for
    DRIP_RETENTION_DAYS (standards LAW-16, LAW-21). Only the new signup goes now, with
    its confirmation email, the notice only it was shown and the name it gave: Ana is
    unsubscribed as she was, and her link can still undo it."""
    client.post(ana)
    system.clock.advance(timedelta(days=2))
    kept = rows_of(system, ["ana@example.com"])["ana@example.com"]
    notices = count(system, ConsentText)
    system.signup("ana@example.com", first_name="Visit spam.example", timezone="Asia/Tokyo")
    system.drain()
    system.clock.advance(timedelta(days=7, minutes=1))

    assert system.tick().purged == 1
    after = rows_of(system, ["ana@example.com"])["ana@example.com"]
    assert (after[:2], after[4:]) == (kept[:2], kept[4:]), "her subscription as it ended"
    assert after[2] == "", "a name nobody confirmed is not kept"
    assert count(system, ConsentText) == notices
    assert client.post(f"/resubscribe/{ana.rsplit('/', 1)[1]}").status_code == 200
    assert status_of(system, "ana@example.com") == SubscriberStatus.ACTIVE


def test_a_past_reader_who_declines_a_signup_made_for_them_keeps_their_subscription(
    client: FlaskClient, system: System, ana: str
) -> None:
    """Declining it from its confirmation email unsubscribes the new signup: the row is
    ended and `confirmed_at` empty, as for a stranger's declined signup, which the purge
    deletes. Only the declined signup goes; the decline's suppression stays."""
    client.post(ana)
    system.clock.advance(timedelta(days=2))
    kept = rows_of(system, ["ana@example.com"])["ana@example.com"]
    client.post("/subscribe", data={"email": "ana@example.com"})
    decline = link(system, "ana@example.com", "unsubscribe")
    client.post(decline, data={"List-Unsubscribe": "One-Click"})
    system.clock.advance(timedelta(days=7, minutes=1))

    assert system.tick().purged == 1
    after = rows_of(system, ["ana@example.com"])["ana@example.com"]
    assert (after[:2], after[4:]) == (kept[:2], kept[4:])
    with transaction(system.sessions) as session:
        assert session.scalars(sa.select(Suppression.reason)).all() == ["declined"]


def test_a_past_reader_whose_new_signup_bounced_stays_bounced_and_cannot_be_undone_back(
    client: FlaskClient, system: System, ana: str
) -> None:
    """The confirmation of a signup made for her bounced, ending the row as BOUNCED with
    `confirmed_at` empty, as a stranger's bounced signup, which the purge deletes. Hers
    is a past reader's record: purging the new signup turned it back into "unsubscribed"
    and deleted the bounce from her consent record, so the old page's Undo made an
    address barred for good active again. It stays bounced, kept as any ended
    subscription is (the retention sweep), and nothing mails her."""
    unsubscribe = ana
    client.post(unsubscribe)
    system.clock.advance(timedelta(days=2))
    client.post("/subscribe", data={"email": "ana@example.com"})
    system.drain()
    report(system, "hard", sent_ids(system, "ana@example.com")[-1], "ana@example.com")
    system.clock.advance(timedelta(days=7, minutes=1))

    assert system.tick().purged == 0
    token = unsubscribe.rsplit("/", 1)[1]
    client.post(f"/resubscribe/{token}")
    assert status_of(system, "ana@example.com") == SubscriberStatus.BOUNCED
    with transaction(system.sessions) as session:
        assert session.scalars(sa.select(Suppression.reason)).all() == ["bounced"]
        withdrawals = session.scalars(
            sa.select(ConsentEvent.kind).where(ConsentEvent.kind == ConsentEventKind.WITHDRAW)
        ).all()
    assert len(withdrawals) == 2, "her unsubscribe and the bounce, both on record"


def test_an_unsubscribe_can_be_undone_for_thirty_days_only(
    client: FlaskClient, system: System, ana: str
) -> None:
    client.post(ana)
    system.clock.advance(timedelta(days=31))
    token = ana.rsplit("/", 1)[1]
    page = client.post(f"/resubscribe/{token}").get_data(as_text=True)
    assert "Undo" not in page
    assert "Welcome back" not in page, "the notice follows what the undo did"
    assert "can no longer be undone" in page
    assert status_of(system, "ana@example.com") == SubscriberStatus.UNSUBSCRIBED


def test_undoing_after_every_email_was_sent_says_none_is_left(
    client: FlaskClient, system: System, ana: str
) -> None:
    client.post(ana)
    with transaction(system.sessions) as session:
        subscriber = system.subscriber("ana@example.com", session=session)
        for step_id in session.scalars(
            sa.select(Step.id).where(Step.sequence_id == subscriber.sequence_id)
        ):
            insert_delivery(
                session,
                subscriber_id=subscriber.id,
                kind=DeliveryKind.STEP,
                step_id=step_id,
                now=system.clock.now(),
            )
        session.execute(
            sa.update(Delivery)
            .where(Delivery.status == DeliveryStatus.QUEUED)
            .values(status=DeliveryStatus.SENT, sent_at=system.clock.now())
        )
    page = client.post(f"/resubscribe/{ana.rsplit('/', 1)[1]}").get_data(as_text=True)
    assert status_of(system, "ana@example.com") == SubscriberStatus.COMPLETED
    assert "carries on tomorrow" not in page
    assert "every email of the series already" in page


def test_undoing_after_the_last_lesson_failed_promises_nothing_tomorrow(
    client: FlaskClient, system: System, ana: str
) -> None:
    """Ana's last lesson failed, so she has not finished the series; undoing her
    unsubscribe said she had had every email, as it called her complete."""
    lessons_fail_from(system, "ana@example.com", 10, "552 5.2.2 Mailbox full")
    client.post(ana)
    page = client.post(f"/resubscribe/{ana.rsplit('/', 1)[1]}").get_data(as_text=True)
    assert status_of(system, "ana@example.com") == SubscriberStatus.ACTIVE
    assert "Welcome back. You are subscribed again." in page
    assert "carries on tomorrow" not in page and "every email" not in page


def test_odd_preference_values_are_refused_not_errors(client: FlaskClient, ana: str) -> None:
    token = ana.rsplit("/", 1)[1]
    for value in ("\u00b2", "-1", "", "8.5", "\u0668"):
        response = client.post(f"/preferences/{token}", data={"action": "hour", "send_hour": value})
        assert response.status_code == 400, value
    deep = "[" * 5000
    assert (
        client.post("/api/v1/subscribers", data=deep, content_type="application/json").status_code
        == 400
    )


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # refused before any write
def test_a_mistake_on_the_landing_page_is_shown_beside_the_form_with_the_input_kept(
    client: FlaskClient, system: System
) -> None:
    response = client.post(
        "/subscribe",
        data={"email": "ana@example", "first_name": "Ana"},
        headers={"Sec-Fetch-Site": "same-origin"},
    )
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert 'role="alert"' in page and 'aria-invalid="true"' in page
    assert 'value="ana@example"' in page and 'value="Ana"' in page
    assert count(system, Subscriber) == 0


@pytest.mark.parametrize(
    ("form", "said"),
    [
        ({"email": "ana@example"}, "Email address: "),
        ({"email": "ana@example.com", "first_name": "x" * 101}, "First name: at most 100"),
        ({"email": "ana@example.com", "first_name": "Ana\nBcc: x@y.z"}, "First name: control"),
    ],
    ids=["address", "long-name", "name-with-a-line-break"],
)
@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # refused before any write
def test_a_mistake_is_named_in_the_visitors_words_and_the_page_title_says_so(
    client: FlaskClient, blog: FlaskClient, form: dict[str, str], said: str
) -> None:
    """The visitor reads "First name", never the field's name in the code; a screen
    reader user hears that the page came back with an error as soon as it loads."""
    landing = client.post("/subscribe", data=form, headers={"Sec-Fetch-Site": "same-origin"})
    page = landing.get_data(as_text=True)
    shown = re.search(r'<p class="error"[^>]*>([^<]*)</p>', page)
    assert shown is not None and shown.group(1).startswith(said)
    assert "<title>Error: Calm Back, Calm Mind</title>" in page
    embedded = blog.post("/subscribe", data=form, headers={"Origin": BLOG})
    answer = embedded.get_data(as_text=True)
    assert embedded.status_code == 400 and said in answer
    assert "first_name" not in answer and "email:" not in answer


def test_health_and_readiness_for_load_balancers(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {
        "status": "ready",
        "database": "ok",
        "migrations": "ok",
        "redis": "ok",
    }

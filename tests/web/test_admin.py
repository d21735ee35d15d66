"""The admin through the Flask test client, with CSRF protection on."""

from __future__ import annotations

import dataclasses
import html
import mailbox
import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from drip import lessons, rendering
from drip.consent import events_of
from drip.db import transaction
from drip.models import (
    ConsentEvent,
    ConsentEventKind,
    ConsentMethod,
    ConsentText,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    ErasureMark,
    Sequence,
    Step,
    Subscriber,
    SubscriberStatus,
    TemplateVersion,
)
from drip.rendering import MAX_SOURCE, PARTS
from drip.snapshots import recount_series
from drip.subscriptions import unsubscribe, withdraw_address
from drip.transports import MaildirTransport
from drip.web import create_app
from drip.web.admin import outbox as admin_outbox
from drip.web.admin.charts import bar_chart
from drip.web.context import ctx
from tests.helpers import (
    System,
    assert_not_on_disk,
    commits_conflicting,
    nested_parts,
    sent_today,
)
from tests.web.conftest import BLOG, hidden_fields, link, log_in, post, status_of
from tests.web.test_consent import F5
from tests.web.test_journey import erase_button

SSTI = [
    "{{ ''.__class__.__mro__ }}",
    "{{ config }}",
    "{{ self.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ request.environ }}",
]
SVG = "http://www.w3.org/2000/svg"


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # refused before any query
def test_every_admin_page_refuses_anonymous_visitors(app: Flask) -> None:
    client = app.test_client()
    rules = [r for r in app.url_map.iter_rules() if r.rule.startswith("/admin")]
    assert len(rules) > 10
    for rule in rules:
        if rule.endpoint.startswith("admin_auth."):
            continue
        path = re.sub(r"<(?:int:)?(\w+)>", "1", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            response = client.open(path, method=method)
            assert response.status_code in (302, 401), (method, path)
            if response.status_code == 302:
                assert response.headers["Location"].startswith("/admin/login")
        assert client.get(path, headers={"Accept": "application/json"}).status_code in (401, 405)


CSRF_EXEMPT = {
    "signup.subscribe_form": "the cross-origin blog form: Origin allow-list, honeypot, "
    "rate limits and double opt-in stand in for a session token (SEC-14)",
    "signup.confirm": "the signed, single-use confirm token is the authority, not a cookie",
    "manage.unsubscribe_now": "RFC 8058 one-click: the mail client posts without cookies; "
    "the signed unsubscribe token is the authority",
    "manage.test_email": "changes nothing: a test email's one-click unsubscribe only "
    "answers that it was a test",
    "manage.undo": "the signed unsubscribe token is the authority, not a cookie",
    "manage.preferences": "the signed unsubscribe token is the authority, not a cookie",
    "privacy.ask_for_link": "acts on no session: it only mails a link to the address typed, "
    "rate-limited per IP and per address, and answers the same either way",
    "privacy.erase_everything": "the signed privacy-erase token is the authority, not a cookie",
    "privacy.unsubscribe_everything": "the signed privacy-withdraw token is the authority, "
    "not a cookie",
    "api.create_subscriber": "the JSON API uses no cookies (CORS allow-list, rate limits); "
    "it only starts a double opt-in",
    "hooks.receive": "providers' webhooks, each verified by the provider's signature or secret",
}
"""Every route that changes state without a CSRF token, and why that is safe: none of
them acts on a cookie, so a forged cross-site request gains nothing (standards SEC-15)."""


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # CSRF, before any query
def test_every_state_changing_route_needs_a_csrf_token_unless_exempt_for_a_reason(
    app: Flask, admin: FlaskClient
) -> None:
    rules = [
        rule
        for rule in app.url_map.iter_rules()
        if rule.methods and rule.methods & {"POST", "PUT", "PATCH", "DELETE"}
    ]
    assert CSRF_EXEMPT.keys() <= {rule.endpoint for rule in rules}, "a stale exemption"
    checked = 0
    for rule in rules:
        if rule.endpoint in CSRF_EXEMPT:
            continue
        path = re.sub(r"<(?:\w+:)?\w+>", "1", rule.rule)
        for method in sorted(rule.methods & {"POST", "PUT", "PATCH", "DELETE"}):
            response = admin.open(path, method=method, data={"action": "pause"})
            assert response.status_code == 400, (method, path)
            assert "CSRF" in response.get_data(as_text=True), (method, path)
            checked += 1
    assert checked >= 10


def test_the_dashboard_shows_the_series_in_numbers_and_charts(
    admin: FlaskClient, system: System
) -> None:
    system.join("ana@example.com")
    page = admin.get("/admin/").get_data(as_text=True)
    assert page.count("<svg") == 3
    assert "Calm Back, Calm Mind" in page
    assert "100%" in page, "one signup, confirmed"


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # markup only
def test_each_dashboard_chart_is_named_by_its_own_title(admin: FlaskClient) -> None:
    """aria-labelledby must point at a real <title>, not at escaped text showing its tags."""
    page = admin.get("/admin/").get_data(as_text=True)
    charts = re.findall(r"<svg.*?</svg>", page, flags=re.DOTALL)
    assert len(charts) == 3
    for chart in charts:
        svg = ElementTree.fromstring(chart)
        title = svg.find(f"{{{SVG}}}title")
        assert title is not None and title.get("id") == svg.get("aria-labelledby")
    assert "&lt;" not in page


def test_a_chart_escapes_each_label_once_and_its_markup_never() -> None:
    chart = bar_chart([("<b>&", 2)], title='"Signups" & <more>')
    svg = ElementTree.fromstring(chart)
    title = svg.find(f"{{{SVG}}}title")
    assert title is not None and title.text == '"Signups" & <more>: <b>& 2'
    assert [t.text for t in svg.iter(f"{{{SVG}}}text")][-1] == "<b>&"
    assert "&amp;amp;" not in chart


def count_now(system: System) -> None:
    """Store a worker's count of the series as of now."""
    with transaction(system.sessions) as session:
        sequence_id = session.scalars(sa.select(Sequence.id)).first() or 0
    recount_series(system.sessions, sequence_id, now=system.clock.now())


def test_a_small_list_shows_live_numbers(admin: FlaskClient, system: System) -> None:
    system.join("ana@example.com")
    system.tick()
    system.drain()
    system.join("ben@example.com")
    page = admin.get("/admin/").get_data(as_text=True)
    assert '<span class="n">2</span> signups' in page
    assert "Numbers as of" not in page and "Recount now" not in page


@pytest.mark.parametrize("system_env", [{}, {"DRIP_LIVE_COUNT_UP_TO": "1"}])
def test_the_dashboard_keeps_the_signups_retention_erased_but_not_their_status(
    admin: FlaskClient, system: System
) -> None:
    """Erasing an ended subscription (standards LAW-16) takes the person out of the
    subscribers by status, live or counted by a worker, but their signup and
    confirmation stay in the totals as anonymous counts (drip.retired), so the
    confirmation rate does not sink as old readers go."""
    leaving, _ = system.join_many(2)
    with transaction(system.sessions) as session:
        subscriber_id = system.subscriber(leaving, session=session).id
        unsubscribe(session, subscriber_id, system.clock.now(), method=ConsentMethod.ADMIN)
    system.clock.advance(system.settings.retention + timedelta(minutes=1))
    assert system.tick().erased == 1
    system.drain()  # the recount the pass asked for
    count_now(system)
    response = admin.get("/admin/")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert '<span class="n">2</span> signups' in page
    assert '<span class="n">1</span> active' in page
    assert '<span class="n">0</span> unsubscribed' in page
    assert '<span class="n">100%</span> confirmed' in page


@pytest.mark.parametrize("system_env", [{"DRIP_LIVE_COUNT_UP_TO": "1"}])
def test_a_big_list_shows_the_last_count_and_can_be_recounted(
    admin: FlaskClient, system: System
) -> None:
    system.join("ana@example.com")
    system.clock.set(system.clock.now().replace(hour=9, minute=5))
    count_now(system)
    system.clock.advance(timedelta(minutes=3))
    system.join("ben@example.com")

    page = admin.get("/admin/").get_data(as_text=True)
    assert "Numbers as of 24 Oct 09:05 UTC (3 min ago)" in page
    assert '<span class="n">1</span> signups' in page, "the stored count, not the live 2"

    response = post(admin, "/admin/recount", {"series": "feel-better"})
    assert response.status_code == 302
    assert len(system.recounts) == 1
    system.drain()
    page = admin.get("/admin/").get_data(as_text=True)
    assert "A worker is counting again" in page
    assert "Numbers as of 24 Oct 09:08 UTC (0 min ago)" in page
    assert '<span class="n">2</span> signups' in page, "the worker's new count"


@pytest.fixture
def lesson_1(system: System) -> int:
    with transaction(system.sessions) as session:
        return session.scalar(sa.select(Step.id).where(Step.number == 1)) or 0


def versions(system: System, step_id: int) -> list[TemplateVersion]:
    with transaction(system.sessions) as session:
        return list(
            session.scalars(sa.select(TemplateVersion).where(TemplateVersion.step_id == step_id))
        )


def edit(step_id: int, **changes: str) -> dict[str, str]:
    base = {
        "subject": "Why stress settles in your back",
        "preheader": "A short lesson on how tension and worry feed each other.",
        "body_html": "<p>Hi {{ first_name or 'there' }},</p><p>Lesson {{ lesson_number }}.</p>",
        "body_text": "Hi {{ first_name or 'there' }},\n\nLesson {{ lesson_number }}.",
    }
    return {**base, **changes}


def test_saving_a_lesson_adds_a_version_by_its_author(
    admin: FlaskClient, system: System, lesson_1: int
) -> None:
    before = len(versions(system, lesson_1))
    response = post(
        admin, f"/admin/lessons/{lesson_1}", edit(lesson_1), page=f"/admin/lessons/{lesson_1}"
    )
    assert response.status_code == 302
    saved = versions(system, lesson_1)
    assert len(saved) == before + 1
    assert saved[-1].created_by == "writer@example.com"
    page = admin.get(f"/admin/lessons/{lesson_1}").get_data(as_text=True)
    assert "Lesson {{ lesson_number }}." in page.replace("&#39;", "'") or "lesson_number" in page


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # form fields only
def test_the_admin_writes_a_lessons_content_but_never_its_name_or_file(
    admin: FlaskClient, system: System, lesson_1: int
) -> None:
    """Standards SEC-02: Jinja's CVE-2024-56201 ran code in the sandbox for whoever chose
    both a template's content and its filename. The server names a lesson by its step; the
    editor has no field for a name or a file, a version has nowhere to keep one, and one
    posted anyway is ignored."""
    page = f"/admin/lessons/{lesson_1}"
    form = re.search(r'<form id="editor".*?</form>', admin.get(page).get_data(as_text=True), re.S)
    assert form is not None
    fields = set(re.findall(r'<(?:input|textarea|select)\b[^>]*\bname="([^"]+)"', form[0]))
    assert fields == {"csrf_token", "base_version", *PARTS, "preview_as"}
    columns = {column.name for column in TemplateVersion.__table__.columns}
    assert not {c for c in columns if re.search("name|file|path|template", c)}, columns

    named = {"name": "../../evil", "filename": "evil.html", "template": "evil", "path": "/tmp"}
    for extra in ({}, named):
        assert post(admin, page, edit(lesson_1) | extra, page=page).status_code == 302
    plain, posted = versions(system, lesson_1)[-2:]
    assert [getattr(posted, part) for part in PARTS] == [getattr(plain, part) for part in PARTS]
    for folder in (system.settings.instance_dir, system.settings.emails_dir):
        assert not list(folder.rglob("evil*")), folder


@pytest.mark.parametrize("database_kind", ["postgresql"], indirect=True)
def test_a_save_the_database_aborts_at_commit_leaves_no_saved_message_behind(
    admin: FlaskClient, system: System, lesson_1: int
) -> None:
    """The editor says "Saved as version N" before the transaction commits. When
    PostgreSQL then aborts it for a clash (drip.db.CONFLICTS), the answer is the 503 that
    says nothing changed, and the next page must not say it was saved."""
    page = f"/admin/lessons/{lesson_1}"
    before = len(versions(system, lesson_1))
    with commits_conflicting(system, "template_versions"):
        aborted = post(admin, page, edit(lesson_1), page=page)
    assert aborted.status_code == 503
    assert len(versions(system, lesson_1)) == before
    assert "Saved as version" not in admin.get(page).get_data(as_text=True)
    post(admin, page, edit(lesson_1), page=page)
    assert "Saved as version" in admin.get(page).get_data(as_text=True), "as it was"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"body_html": "<p>{% if %}</p>"}, "HTML body, line 1: "),
        ({"body_text": "line one\n{{ unknown_thing }}"}, "Plain-text body: unknown variable"),
        ({"subject": "Re: your back"}, "reply or a forward"),
        ({"preheader": "short"}, "Preheader: "),
        ({"subject": "A" * 201}, "Subject: at most 200 characters"),
        ({"subject": "Why stress\x00 settles"}, "Subject: contains a NUL"),
        ({"body_html": "<p>Hi\x00 there</p>"}, "HTML body: contains a NUL"),
        ({"body_text": "Hi\x00"}, "Plain-text body: contains a NUL"),
        ({"body_html": "{% if 1 %}" * 200 + "{% endif %}" * 200}, "HTML body: nested too deeply"),
        ({"body_html": "{{ ('%010000000d' % 1)|length }}"}, "precision of 10,000,000 is over"),
        ({"subject": "Hi {{ '\\r\\nBcc: x@y.z' }}"}, "Subject, as rendered: control characters"),
        ({"body_text": "Hi {{ first_name.split()[0] }}"}, "(for a reader who gave no first name)"),
        *[({"body_html": payload}, "") for payload in SSTI],
    ],
)
def test_a_lesson_that_would_fail_in_the_worker_is_not_saved(
    admin: FlaskClient, system: System, lesson_1: int, changes: dict[str, str], message: str
) -> None:
    before = len(versions(system, lesson_1))
    response = post(
        admin,
        f"/admin/lessons/{lesson_1}",
        edit(lesson_1, **changes),
        page=f"/admin/lessons/{lesson_1}",
    )
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert message in body
    assert system.settings.secret_key not in body
    assert len(versions(system, lesson_1)) == before


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"subject": ""}, "Subject: write a subject"),
        ({"subject": "   "}, "Subject: write a subject"),
        ({"subject": "a\r\nBcc: x@y.z"}, "Subject: control characters and line breaks"),
        ({"body_html": ""}, "HTML body: write the HTML body"),
        ({"body_text": " \r\n "}, "Plain-text body: write the plain-text body"),
    ],
)
def test_a_lesson_without_a_subject_or_a_body_is_not_saved_and_the_edit_is_kept(
    admin: FlaskClient, system: System, lesson_1: int, changes: dict[str, str], message: str
) -> None:
    """A subject's line break was folded into a space and mailed as one subject; empty
    bodies made a text or HTML part that held only the footer."""
    page = f"/admin/lessons/{lesson_1}"
    before = len(versions(system, lesson_1))
    draft = edit(lesson_1, preheader="A preheader typed in this edit and never saved before.")
    response = post(admin, page, draft | changes, page=page)
    assert response.status_code == 400
    shown = response.get_data(as_text=True)
    assert f'<p class="error" role="alert">{message}' in shown
    assert 'value="A preheader typed in this edit and never saved before."' in shown
    assert len(versions(system, lesson_1)) == before


def test_a_lesson_with_every_body_at_its_longest_saves_and_previews(
    admin: FlaskClient, system: System, lesson_1: int
) -> None:
    """Both bodies at MAX_SOURCE characters, each one that a form sends percent-encoded
    as up to twelve bytes, go far past the 64 KB the rest of the app accepts."""
    page = f"/admin/lessons/{lesson_1}"
    html_body = "<p>" + "é<>" * ((MAX_SOURCE - 7) // 3) + "</p>"
    text_body = "ü" * MAX_SOURCE
    long = edit(lesson_1, body_html=html_body, body_text=text_body)
    assert post(admin, f"{page}/preview.json", long, page=page).get_json()["ok"]
    assert post(admin, f"{page}/preview", long, page=page).status_code == 200
    assert post(admin, page, long, page=page).status_code == 302
    assert versions(system, lesson_1)[-1].body_text == text_body


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # refused by its size
def test_a_lesson_too_large_even_for_the_editor_is_refused_with_a_clear_message(
    admin: FlaskClient, system: System, lesson_1: int
) -> None:
    page = f"/admin/lessons/{lesson_1}"
    huge = edit(lesson_1, body_html="a" * (len(PARTS) * MAX_SOURCE * 12 + 1))
    before = len(versions(system, lesson_1))
    response = post(admin, page, huge, page=page)
    assert response.status_code == 413
    assert "too large to save" in response.get_data(as_text=True)
    assert len(versions(system, lesson_1)) == before
    preview = post(admin, f"{page}/preview.json", huge, page=page)
    assert preview.status_code == 413
    assert "too large to save" in preview.get_json()["error"]
    elsewhere = post(admin, f"{page}/test", {"to": "w@example.com", "x": "a" * 70_000}, page=page)
    assert elsewhere.status_code == 413, "other forms keep the small limit"


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # renders only
def test_the_preview_renders_in_a_sandbox_of_its_own(admin: FlaskClient, lesson_1: int) -> None:
    page = f"/admin/lessons/{lesson_1}"
    html = post(admin, f"{page}/preview", edit(lesson_1), page=page)
    assert "Lesson 1." in html.get_data(as_text=True)
    assert "sandbox" in html.headers["Content-Security-Policy"]
    assert "script-src" not in html.headers["Content-Security-Policy"]
    parts = post(admin, f"{page}/preview.json", edit(lesson_1), page=page).get_json()
    assert parts["ok"] and parts["text"].startswith("A short lesson")
    broken = post(
        admin, f"{page}/preview.json", edit(lesson_1, body_html="{{ config }}"), page=page
    ).get_json()
    assert not broken["ok"] and "config" in broken["error"]
    assert 'sandbox title="Preview' in admin.get(page).get_data(as_text=True)


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # renders only
def test_the_preview_shows_the_footer_readers_get_with_sample_reader_data(
    admin: FlaskClient, system: System, lesson_1: int
) -> None:
    """The preview's footer said "(your name), (your postal address)" where a test send
    shows the real ones, so the writer could not check what readers see."""
    page = f"/admin/lessons/{lesson_1}"
    settings = system.settings
    html_part = post(admin, f"{page}/preview", edit(lesson_1), page=page).get_data(as_text=True)
    text_part = post(admin, f"{page}/preview.json", edit(lesson_1), page=page).get_json()["text"]
    for shown in (html.unescape(html_part), text_part):
        assert "(your" not in shown
        for real in (settings.postal_address, settings.sender.display_name, settings.contact):
            assert real in shown
        assert "Hi Ada," in shown, "the sample reader's name"


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # markup only
def test_the_preheader_box_asks_for_what_a_save_accepts(admin: FlaskClient, lesson_1: int) -> None:
    """It took 200 characters, where a save takes 40 to 100."""
    for page in (f"/admin/lessons/{lesson_1}", NEW_LESSON):
        shown = admin.get(page).get_data(as_text=True)
        box = re.search(r'<input id="preheader"[^>]*>', shown)
        assert box is not None
        assert 'minlength="40"' in box[0] and 'maxlength="100"' in box[0]
        assert "40 to 100 characters" in shown


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # renders only
def test_the_preview_refuses_a_huge_value_and_a_subject_that_breaks_a_line(
    admin: FlaskClient, lesson_1: int
) -> None:
    """SEC-03 and SEC-04 hold in the preview too: `center(10**7)` was built and printed,
    and a rendered line break was folded into a space and shown as one line."""
    page = f"/admin/lessons/{lesson_1}"
    huge = edit(lesson_1, body_html="{{ ('x'|center(10000000))|length }}")
    shown = post(admin, f"{page}/preview", huge, page=page)
    assert shown.status_code == 200
    assert "The preview cannot be shown: HTML body: not allowed here: center" in html.unescape(
        shown.get_data(as_text=True)
    )
    checked = post(admin, f"{page}/preview.json", huge, page=page).get_json()
    assert not checked["ok"] and "width of 10,000,000 is over 100,000" in checked["error"]
    bcc = edit(lesson_1, subject="Hi {{ '\\r\\nBcc: x@y.z' }}")
    checked = post(admin, f"{page}/preview.json", bcc, page=page).get_json()
    assert not checked["ok"] and "Subject, as rendered: control characters" in checked["error"]


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # renders only
def test_the_preview_stops_a_template_that_takes_too_long(
    admin: FlaskClient, lesson_1: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SEC-03: the preview renders in the web process, where no actor time limit applies.
    The deadline is shortened here; tests/test_rendering.py checks the real one."""
    monkeypatch.setattr(rendering, "RENDER_DEADLINE", 0.5)
    page = f"/admin/lessons/{lesson_1}"
    endless = edit(
        lesson_1,
        body_html="{% set s = 'x' * 99999 %}{% for a in s %}{% for b in s %}"
        "{% endfor %}{% endfor %}",
    )
    started = time.monotonic()
    html = post(admin, f"{page}/preview", endless, page=page).get_data(as_text=True)
    assert f"The preview cannot be shown: HTML body: {rendering.TOO_SLOW}" in html
    parts = post(admin, f"{page}/preview.json", endless, page=page).get_json()
    assert not parts["ok"] and parts["error"] == f"HTML body: {rendering.TOO_SLOW}"
    assert time.monotonic() - started < 3


def test_an_old_version_can_be_compared_and_restored(
    admin: FlaskClient, system: System, lesson_1: int
) -> None:
    page = f"/admin/lessons/{lesson_1}"
    original = versions(system, lesson_1)[-1]
    post(admin, page, edit(lesson_1, subject="A new subject line"), page=page)
    current = versions(system, lesson_1)[-1]
    assert 'id="diff-a"' in admin.get(page).get_data(as_text=True), "any two versions"
    diff = admin.get(f"{page}/diff?a={original.id}&b={current.id}").get_data(as_text=True)
    assert "+A new subject line" in diff
    post(admin, f"/admin/versions/{original.id}/restore", page=page)
    restored = versions(system, lesson_1)[-1]
    assert restored.id > current.id
    assert restored.subject == original.subject


def test_versions_are_numbered_in_order_for_each_lesson(
    admin: FlaskClient, system: System, lesson_1: int
) -> None:
    """Versions were labelled by database id, shared by every lesson, so lesson 1's went
    v2, v12, v13. The URLs still name versions by id."""
    page = f"/admin/lessons/{lesson_1}"
    for subject in ("The second subject", "The third subject"):
        post(admin, page, edit(lesson_1, subject=subject), page=page)
    first, _, third = versions(system, lesson_1)
    shown = admin.get(page).get_data(as_text=True)
    assert "Saved as version 3." in shown
    assert re.findall(r"<li>\s*v(\d+),", shown) == ["3", "2", "1"]
    assert re.findall(r'<option value="\d+"(?: selected)?>v(\d+)</option>', shown) == [
        *("3", "2", "1"),
        *("3", "2", "1"),
    ]
    assert f'value="{third.id}" selected>v3<' in shown

    diff = admin.get(f"{page}/diff?a={first.id}&b={third.id}").get_data(as_text=True)
    assert "<h1>v1 compared with v3</h1>" in diff
    assert "--- v1" in diff and "+++ v3" in diff
    post(admin, f"/admin/versions/{first.id}/restore", page=page)
    assert "Restored as version 4." in admin.get(page).get_data(as_text=True)


def test_the_list_of_versions_reads_no_version_s_bodies(
    admin: FlaskClient, system: System, lesson_1: int
) -> None:
    """The editor listed a lesson's versions by reading every one whole, bodies and all."""
    page = f"/admin/lessons/{lesson_1}"
    for n in range(3):
        post(admin, page, edit(lesson_1, body_text=f"Version {n}. " + "x" * 10_000), page=page)
    with transaction(system.sessions) as session:
        listed = lessons.history(session, lesson_1)
        assert len(listed) == 4
        for version in listed:
            assert {"preheader", "body_html", "body_text"} <= sa.inspect(version.row).unloaded
        assert listed[0].row.body_text.startswith("Version 2."), "read when asked for"


def test_an_edit_reaches_only_emails_not_yet_sent(
    admin: FlaskClient, system: System, lesson_1: int
) -> None:
    system.join("ana@example.com")
    page = f"/admin/lessons/{lesson_1}"
    post(admin, page, edit(lesson_1, subject="The edited lesson one"), page=page)
    system.clock.advance(timedelta(days=1, hours=3))
    system.tick()
    system.drain()
    assert system.smtp.to("ana@example.com")[-1]["Subject"] == "The edited lesson one"
    with transaction(system.sessions) as session:
        sent = session.scalars(sa.select(Delivery).where(Delivery.step_id == lesson_1)).one()
    assert sent.template_version_id == versions(system, lesson_1)[-1].id


def test_the_subscriber_page_names_each_email_s_version_as_the_editor_does(
    admin: FlaskClient, system: System, lesson_1: int
) -> None:
    """The subscriber page showed the version's database id, shared by every lesson: the
    welcome's first version was "v1" but lesson 1's third "v13", a version the editor
    never lists."""
    system.join("ana@example.com")
    page = f"/admin/lessons/{lesson_1}"
    for subject in ("The second subject", "The third subject"):
        post(admin, page, edit(lesson_1, subject=subject), page=page)
    system.clock.advance(timedelta(hours=3))
    a_day_passes(system)
    assert re.findall(r"<li>\s*v(\d+),", admin.get(page).get_data(as_text=True))[0] == "3"

    shown = admin.get(f"/admin/subscribers/{system.subscriber('ana@example.com').id}").text
    rows = re.findall(
        r"<td>(welcome|lesson \d+)</td>\s*<td>sent</td>\s*<td>[^<]*</td>\s*<td>([^<]*)</td>", shown
    )
    assert rows == [("welcome", "v1"), ("lesson 1", "v3")]


SERIES = "/admin/sequences/feel-better"
NEW_LESSON = f"{SERIES}/steps/new"


def step_id(system: System, number: int) -> int:
    with transaction(system.sessions) as session:
        return session.scalar(sa.select(Step.id).where(Step.number == number)) or 0


def days(system: System) -> list[int]:
    with transaction(system.sessions) as session:
        return list(session.scalars(sa.select(Step.day_offset).order_by(Step.number)))


def test_a_new_lesson_exists_only_once_its_writer_saves_it(
    admin: FlaskClient, system: System
) -> None:
    """ "Add a lesson" made lesson 11 at once, a copy of lesson 10 marked "(copy)", and
    readers got it as it was if the writer did not edit it in time."""
    assert f'href="{NEW_LESSON}"' in admin.get(SERIES).get_data(as_text=True)
    editor = admin.get(NEW_LESSON).get_data(as_text=True)
    assert "<h1>New lesson 11</h1>" in editor
    assert '<input id="subject" name="subject" value=""' in editor
    assert days(system) == list(range(11)), "opening the editor adds nothing"

    assert post(admin, f"{SERIES}/steps", page=NEW_LESSON).status_code == 400
    refused = post(admin, f"{SERIES}/steps", edit(0, preheader="Too short."), page=NEW_LESSON)
    assert refused.status_code == 400
    shown = refused.get_data(as_text=True)
    assert '<p class="error" role="alert">Preheader: write one sentence' in shown
    assert 'value="Too short."' in shown, "the edit is kept"
    assert days(system) == list(range(11))

    draft = edit(0, body_text="Lesson {{ lesson_number }} of {{ lesson_total }}.")
    preview = post(admin, f"{NEW_LESSON}/preview.json", draft, page=NEW_LESSON).get_json()
    assert preview["ok"] and "Lesson 11 of 11." in preview["text"]
    html = post(admin, f"{NEW_LESSON}/preview", draft, page=NEW_LESSON).get_data(as_text=True)
    assert "Lesson 11." in html

    saved = post(admin, f"{SERIES}/steps", edit(0, subject="A bonus lesson"), page=NEW_LESSON)
    assert saved.status_code == 302
    lesson_11 = step_id(system, 11)
    assert saved.headers["Location"] == f"/admin/lessons/{lesson_11}"
    assert days(system) == list(range(12)), "a day after the last lesson"
    (version,) = versions(system, lesson_11)
    assert (version.subject, version.created_by) == ("A bonus lesson", "writer@example.com")
    assert "Added lesson 11" in admin.get(f"/admin/lessons/{lesson_11}").get_data(as_text=True)


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # the checks' samples
def test_a_lesson_that_fails_where_it_stands_is_neither_saved_nor_added(
    admin: FlaskClient, system: System
) -> None:
    """The checks rendered every lesson as lesson 1 of 10, so a template that divides by
    zero on the last lesson was saved, and failed in the worker for every reader."""
    body = "{{ 'Only %d to go' % (100 // (lesson_total - lesson_number)) }}"
    lesson_9, lesson_10 = step_id(system, 9), step_id(system, 10)
    page = f"/admin/lessons/{lesson_10}"
    before = len(versions(system, lesson_10))
    refused = post(admin, page, edit(lesson_10, body_text=body), page=page)
    assert refused.status_code == 400
    assert "(for this lesson as it stands, lesson 10 of 10)" in refused.text
    assert len(versions(system, lesson_10)) == before
    preview = post(admin, f"{page}/preview.json", edit(lesson_10, body_text=body), page=page)
    assert not preview.get_json()["ok"], "the live preview says so too"

    page = f"/admin/lessons/{lesson_9}"
    assert post(admin, page, edit(lesson_9, body_text=body), page=page).status_code == 302
    added = post(admin, f"{SERIES}/steps", edit(0, body_text=body), page=NEW_LESSON)
    assert added.status_code == 400
    assert "(for this lesson as it stands, lesson 11 of 11)" in added.text
    assert days(system) == list(range(11))


def test_a_lesson_is_checked_with_the_sender_name_the_worker_uses(
    admin: FlaskClient, system: System
) -> None:
    """The check of a lesson as it stands named the series as its sender, while the
    worker names DRIP_FROM's display name ("Calm Back"), so a template that fails only
    with that name was saved, and failed in the worker."""
    body = "{{ 100 // (sender_name != 'Calm Back') }}"
    lesson_9 = step_id(system, 9)
    page = f"/admin/lessons/{lesson_9}"
    before = len(versions(system, lesson_9))
    refused = post(admin, page, edit(lesson_9, body_text=body), page=page)
    assert refused.status_code == 400
    assert len(versions(system, lesson_9)) == before
    added = post(admin, f"{SERIES}/steps", edit(0, body_text=body), page=NEW_LESSON)
    assert added.status_code == 400
    assert days(system) == list(range(11))


def test_an_add_lesson_sent_twice_adds_the_lesson_once(admin: FlaskClient, system: System) -> None:
    """A double click on "Add lesson 11", or the page reloaded and sent again, added two
    identical lessons 11 and 12. The form says which lesson it adds."""
    form = edit(0, subject="A bonus lesson") | hidden_fields(admin.get(NEW_LESSON).text)
    assert form["number"] == "11"
    assert post(admin, f"{SERIES}/steps", form, page=NEW_LESSON).status_code == 302
    again = post(admin, f"{SERIES}/steps", form, page=NEW_LESSON)
    assert again.status_code == 409
    shown = again.get_data(as_text=True)
    assert "Lesson 11 was added already (this form was sent twice" in shown
    assert 'value="A bonus lesson"' in shown, "the edit is kept"
    assert days(system) == list(range(12)), "one lesson added"
    assert [v.subject for v in versions(system, step_id(system, 11))] == ["A bonus lesson"]

    assert hidden_fields(shown)["number"] == "12", "saving this page again adds it as 12"
    chosen = post(admin, f"{SERIES}/steps", form | {"number": "12"}, page=NEW_LESSON)
    assert chosen.status_code == 302
    assert days(system) == list(range(13))


def test_a_save_from_an_editor_opened_before_another_admins_save_is_refused(
    admin: FlaskClient, system: System, lesson_1: int
) -> None:
    """Two admins open lesson 1; one saves a fix. The other's save, from the page opened
    before it, silently undid the fix. The editor says which version it shows."""
    page = f"/admin/lessons/{lesson_1}"
    opened = hidden_fields(admin.get(page).text)["base_version"]
    assert opened == str(versions(system, lesson_1)[-1].id)
    theirs = post(
        admin, page, edit(lesson_1, subject="Their fix") | {"base_version": opened}, page=page
    )
    assert theirs.status_code == 302
    mine = edit(lesson_1, subject="My own text") | {"base_version": opened}
    preview = post(admin, f"{page}/preview.json", mine, page=page).get_json()
    assert preview["ok"] and preview["subject"] == "My own text", "the preview still works"

    refused = post(admin, page, mine, page=page)
    assert refused.status_code == 409
    shown = refused.get_data(as_text=True)
    assert "Not saved: writer@example.com saved this lesson as version 2 at" in shown
    assert 'value="My own text"' in shown, "the edit is kept"
    assert [v.subject for v in versions(system, lesson_1)][-1] == "Their fix"

    latest = str(versions(system, lesson_1)[-1].id)
    assert hidden_fields(shown)["base_version"] == latest, "saving again replaces theirs"
    assert post(admin, page, mine | {"base_version": latest}, page=page).status_code == 302
    assert [v.subject for v in versions(system, lesson_1)][-2:] == ["Their fix", "My own text"]


def test_a_restore_from_an_editor_opened_before_another_admins_save_is_refused(
    admin: FlaskClient, system: System, lesson_1: int
) -> None:
    """Restore, pressed on a page opened before another admin saved a fix, replaced the
    fix with the old version, and nobody was told. It is checked as a save is."""
    page = f"/admin/lessons/{lesson_1}"
    original = versions(system, lesson_1)[-1]
    post(admin, page, edit(lesson_1, subject="A second subject"), page=page)
    opened = hidden_fields(admin.get(page).text)["base_version"]
    theirs = edit(lesson_1, subject="Their fix") | {"base_version": opened}
    assert post(admin, page, theirs, page=page).status_code == 302
    restore = f"/admin/versions/{original.id}/restore"

    refused = post(admin, restore, {"base_version": opened}, page=page)
    assert refused.status_code == 409
    shown = refused.get_data(as_text=True)
    assert "Not restored: writer@example.com saved this lesson as version 3 at" in shown
    assert 'value="Their fix"' in shown, "the editor as it stands"
    assert [v.subject for v in versions(system, lesson_1)][-1] == "Their fix"

    latest = hidden_fields(shown)["base_version"]
    assert latest == str(versions(system, lesson_1)[-1].id), "restoring again replaces theirs"
    assert post(admin, restore, {"base_version": latest}, page=page).status_code == 302
    assert versions(system, lesson_1)[-1].subject == original.subject


def test_the_page_after_a_save_names_the_draft_the_save_used_up(
    admin: FlaskClient, system: System, lesson_1: int
) -> None:
    """The editor keeps unsaved edits in the browser until a save succeeds (admin.js);
    only the page after a save knows that it did, so it names the draft to forget. A
    refused save, a reload and any other page name none."""
    page = f"/admin/lessons/{lesson_1}"
    shown = admin.get(page).get_data(as_text=True)
    assert f'data-draft="lesson-{lesson_1}"' in shown
    assert f'data-version="{versions(system, lesson_1)[-1].id}"' in shown
    assert 'data-saved-draft=""' in shown
    refused = post(admin, page, edit(lesson_1, subject=""), page=page)
    assert 'data-saved-draft=""' in refused.get_data(as_text=True)

    post(admin, page, edit(lesson_1), page=page)
    after_save = admin.get(page).get_data(as_text=True)
    assert f'data-saved-draft="lesson-{lesson_1}"' in after_save
    assert f'data-version="{versions(system, lesson_1)[-1].id}"' in after_save
    assert 'data-saved-draft=""' in admin.get(page).get_data(as_text=True), "once only"

    new = admin.get(NEW_LESSON).get_data(as_text=True)
    assert 'data-draft="new-feel-better" data-version=""' in new
    added = post(admin, f"{SERIES}/steps", edit(0, subject="A bonus lesson"), page=NEW_LESSON)
    after_add = admin.get(added.headers["Location"]).get_data(as_text=True)
    assert f'data-draft="lesson-{step_id(system, 11)}"' in after_add
    assert 'data-saved-draft="new-feel-better"' in after_add


def a_day_passes(system: System, days: int = 1) -> None:
    for _ in range(days):
        system.clock.advance(timedelta(days=1))
        system.tick()
        system.drain()


def test_a_lesson_added_reaches_readers_still_in_the_series_not_those_who_finished(
    admin: FlaskClient, system: System
) -> None:
    """Someone who has had the last lesson has completed the series: a lesson added later
    is not mailed to them out of the blue. Readers still in it get it after lesson 10."""
    system.join("ana@example.com")
    system.clock.advance(timedelta(hours=3))
    a_day_passes(system, 5)
    system.join("ben@example.com")
    a_day_passes(system, 5)
    assert status_of(system, "ana@example.com") == SubscriberStatus.COMPLETED
    had = len(system.smtp.to("ana@example.com"))
    assert (
        "Lesson 10 of 10"
        in system.smtp.to("ana@example.com")[-1].get_body(("plain",)).get_content()
    )

    added = post(admin, f"{SERIES}/steps", edit(0, subject="A bonus lesson"), page=NEW_LESSON)
    assert added.status_code == 302
    a_day_passes(system, 6)

    assert len(system.smtp.to("ana@example.com")) == had
    assert status_of(system, "ana@example.com") == SubscriberStatus.COMPLETED
    *_, tenth, bonus = system.smtp.to("ben@example.com")
    assert "Lesson 10 of 11" in tenth.get_body(("plain",)).get_content()
    assert bonus["Subject"] == "A bonus lesson"
    assert parsedate_to_datetime(bonus["Date"]) - parsedate_to_datetime(tenth["Date"]) == timedelta(
        days=1
    )


def test_a_lessons_day_must_fall_after_the_lesson_before_and_before_the_next(
    admin: FlaskClient, system: System
) -> None:
    """Lesson 2 moved to day 0 was listed before lesson 1 yet went out the day after it:
    the scheduler waits at least a day between lessons (drip.timing.next_send_at)."""
    lesson_2, lesson_10 = step_id(system, 2), step_id(system, 10)
    for typed, message in [
        ("0", "lesson 2 goes out after lesson 1 (day 1) and before lesson 3 (day 3)"),
        ("1", "choose day 2"),
        ("3", "choose day 2"),
        ("x", "day: a whole number from 0 to 365"),
        ("366", "day: a whole number from 0 to 365"),
    ]:
        refused = post(admin, f"/admin/steps/{lesson_2}/day", {"day_offset": typed}, page=SERIES)
        assert refused.status_code == 400, typed
        shown = refused.get_data(as_text=True)
        assert re.search(f'<p class="error" role="alert">[^<]*{re.escape(message)}', shown), typed
        assert f'id="day-{lesson_2}"' in shown, "the list, to pick another day"
    assert days(system) == list(range(11)), "nothing changed"

    listed = admin.get(SERIES).get_data(as_text=True)
    assert re.search(f'id="day-{lesson_2}"[^>]* min="2" max="2"', listed)
    assert re.search(f'id="day-{lesson_10}"[^>]* min="10" max="365"', listed)
    moved = post(admin, f"/admin/steps/{lesson_10}/day", {"day_offset": "14"}, page=SERIES)
    assert moved.status_code == 302
    assert days(system)[-1] == 14


def test_readers_waiting_for_a_lesson_follow_its_new_day(
    admin: FlaskClient, system: System
) -> None:
    """Ana waits for lesson 10 (set by hand, as a pause or an outage leaves it), Ben for
    lesson 3. Moving lesson 10 moves Ana's next email by as many days, never into the
    past; Ben's is left alone."""
    system.join("ana@example.com")
    system.join("ben@example.com")
    due = datetime(2026, 10, 27, 8, tzinfo=UTC)
    with transaction(system.sessions) as session:
        for address, number in (("ana@example.com", 10), ("ben@example.com", 3)):
            reader = system.subscriber(address, session=session)
            reader.next_step, reader.next_send_at = number, due
    lesson_10 = step_id(system, 10)

    def move_to(day: int) -> datetime | None:
        moved = post(admin, f"/admin/steps/{lesson_10}/day", {"day_offset": str(day)}, page=SERIES)
        assert moved.status_code == 302
        with transaction(system.sessions) as session:
            assert system.subscriber("ben@example.com", session=session).next_send_at == due
            return system.subscriber("ana@example.com", session=session).next_send_at

    assert move_to(14) == due + timedelta(days=4)
    shown = admin.get(SERIES).get_data(as_text=True)
    assert "Lesson 10 is now on day 14: 1 reader waiting for it gets it on the new day" in shown
    assert move_to(11) == due + timedelta(days=1)
    system.clock.set(datetime(2026, 10, 27, 12, tzinfo=UTC))  # past Ana's 08:00 on day 10
    assert move_to(10) == due + timedelta(days=1), "at her next send hour, not 08:00 today"


def test_the_last_lesson_can_be_removed_until_someone_has_had_it(
    admin: FlaskClient, system: System
) -> None:
    post(admin, f"{SERIES}/steps", edit(0), page=NEW_LESSON)
    lesson_2, lesson_11 = step_id(system, 2), step_id(system, 11)
    assert post(admin, f"/admin/steps/{lesson_2}/delete", page=SERIES).status_code == 400
    assert post(admin, f"/admin/steps/{lesson_11}/delete", page=SERIES).status_code == 302
    assert days(system) == list(range(11))


@pytest.fixture
def readers(system: System) -> list[str]:
    addresses = [f"reader{n:03d}@example.com" for n in range(60)]
    for address in addresses:
        system.signup(address, first_name="Zed" if address.endswith("7@example.com") else "")
    system.drain()
    return addresses


def test_the_subscriber_list_searches_filters_and_pages(
    admin: FlaskClient, readers: list[str]
) -> None:
    first = admin.get("/admin/subscribers/").get_data(as_text=True)
    assert first.count("@example.com</a>") == 50
    assert "reader059@example.com" in first and "reader009@example.com" not in first
    more = re.search(r'href="(/admin/subscribers/\?[^"]*before=\d+)"', first)
    assert more
    second = admin.get(more.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert second.count("@example.com</a>") == 10
    assert "reader000@example.com" in second
    found = admin.get("/admin/subscribers/?q=reader042@").get_data(as_text=True)
    assert found.count("@example.com</a>") == 1
    named = admin.get("/admin/subscribers/?q=zed").get_data(as_text=True)
    assert named.count("@example.com</a>") == 6
    assert (
        admin.get("/admin/subscribers/?status=active")
        .get_data(as_text=True)
        .count("@example.com</a>")
        == 0
    )
    assert admin.get("/admin/subscribers/?status=nonsense").status_code == 400
    for term, count in {"%00": 50, "z%00ed": 6, "reader042%00@": 1}.items():
        response = admin.get(f"/admin/subscribers/?q={term}")  # a NUL is ignored, not refused
        assert response.status_code == 200, term
        assert response.get_data(as_text=True).count("@example.com</a>") == count, term


def test_an_admin_can_see_and_act_on_one_subscriber(
    admin: FlaskClient, system: System, client: FlaskClient
) -> None:
    client.post("/subscribe", data={"email": "ana@example.com"})
    client.post(link(system, "ana@example.com", "confirm"))
    system.drain()
    ana = system.subscriber("ana@example.com")
    page = f"/admin/subscribers/{ana.id}"
    detail = admin.get(page).get_data(as_text=True)
    assert "By signing up" in detail and "welcome" in detail
    post(admin, f"{page}/action", {"action": "pause"}, page=page)
    paused = system.subscriber("ana@example.com").paused_until
    assert paused is not None and paused - system.clock.now() > timedelta(days=6)
    post(admin, f"{page}/action", {"action": "resume"}, page=page)
    resumed = system.subscriber("ana@example.com").next_send_at
    assert resumed is not None and resumed - system.clock.now() < timedelta(days=2)
    post(admin, f"{page}/action", {"action": "unsubscribe"}, page=page)
    assert status_of(system, "ana@example.com") == SubscriberStatus.UNSUBSCRIBED
    post(admin, f"{page}/action", {"action": "resume"}, page=page)
    assert status_of(system, "ana@example.com") == SubscriberStatus.ACTIVE
    with transaction(system.sessions) as session:
        message_id = session.scalar(
            sa.select(Delivery.message_id).where(Delivery.kind == DeliveryKind.CONFIRMATION)
        )
    evidence = admin.get(page).get_data(as_text=True)
    for shown in ("Signup", "127.0.0.1", "version 1", "Confirm", str(message_id)):
        assert shown in evidence or html.escape(shown) in evidence, shown
    assert "Withdraw" in evidence and "Resubscribe" in evidence and "(admin)" in evidence
    post(admin, f"{page}/erase", {"understood": "yes"}, page=f"{page}/erase")
    with transaction(system.sessions) as session:
        for model in (Subscriber, ConsentEvent, ConsentText, ErasureMark):
            assert session.scalar(sa.select(sa.func.count()).select_from(model)) == 0, model
    assert_not_on_disk(system, "ana@example.com")


def on_page(name: str, value: object, text: ConsentText | None) -> str:
    """How the subscriber page writes one CON-01 field of an event."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if name == "consent_text_id":
        assert text is not None
        return f"version {text.version}, sha256 {text.sha256}"
    if name == "signup_id":
        return f"after signup event {value}"
    if name == "subscriber_id":
        return f"Subscriber {value}"
    return str(getattr(value, "value", value))


def in_download(name: str, value: object, document: dict[str, Any], record: dict[str, Any]) -> None:
    """Assert the downloaded proof holds one CON-01 field of an event, as written."""
    if name == "subscriber_id":
        assert document["subscriber_id"] == value
    elif name == "consent_text_id":
        assert record["notice_shown"]["id"] == value
    elif name == "signup_id":
        assert record["signup_event"] == value
    elif isinstance(value, datetime):
        assert record[name] == value.isoformat(), name
    else:
        assert record[name] == getattr(value, "value", value), name


def test_the_proof_of_consent_shows_and_downloads_every_con_01_field(
    admin: FlaskClient, app: Flask, blog: FlaskClient, client: FlaskClient, system: System
) -> None:
    """LAW-21: the subscriber page, and the document it offers for download, carry every
    field of CON-01 for a signup (embedded form), its confirmation and a withdrawal,
    with the signup's and the confirmation's own IP and user agent."""
    blog.post(
        "/subscribe",
        data={
            "email": " Ana@Example.COM ",
            "page": f"{BLOG}/posts/sleep",
            "referrer": "https://search.example/?q=sleep",
        },
        headers={"Origin": BLOG, "User-Agent": "laptop-browser"},
        environ_overrides={"REMOTE_ADDR": "198.51.100.7"},
    )
    client.post(
        link(system, "ana@example.com", "confirm"),
        headers={"User-Agent": "phone-browser"},
        environ_overrides={"REMOTE_ADDR": "203.0.113.9"},
    )
    system.drain()
    ana = system.subscriber("ana@example.com")
    page = f"/admin/subscribers/{ana.id}"
    post(admin, f"{page}/action", {"action": "unsubscribe"}, page=page)
    with transaction(system.sessions) as session:
        events = events_of(session, ana.id)
    assert [e.kind for e, _ in events] == list(F5)

    shown = html.unescape(admin.get(page).get_data(as_text=True))
    download = admin.get(f"{page}/consent.json")
    assert download.status_code == 200
    assert download.headers["Content-Disposition"].startswith("attachment;")
    document = download.get_json()
    assert (document["email"], document["series"]) == ("ana@example.com", "feel-better")
    for (event, text), record in zip(events, document["consent_events"], strict=True):
        assert record["kind"] == event.kind.value
        for name in F5[event.kind]:
            value = getattr(event, name)
            assert value not in (None, ""), name
            assert on_page(name, value, text) in shown, (event.kind, name)
            in_download(name, value, document, record)
        assert text is not None and record["notice_shown"]["text"] == text.body
    assert events[0][1] is not None and events[0][1].body in shown, "the notice, verbatim"
    assert "198.51.100.7, laptop-browser" in shown and "203.0.113.9, phone-browser" in shown
    assert app.test_client().get(f"{page}/consent.json").status_code == 302, "admins only"
    assert admin.get("/admin/subscribers/999999/consent.json").status_code == 404


@pytest.mark.parametrize("way", ["one click", "privacy page"])
def test_an_admin_cannot_resume_someone_who_unsubscribed_themselves(
    admin: FlaskClient, system: System, way: str
) -> None:
    """Re-adding a person who opted out needs their new consent (GDPR Art. 7(3),
    CAN-SPAM): the admin's Resume undoes an admin's unsubscribe only, and the page says
    why it offers none. The privacy page's button (LAW-12) is the person's own too."""
    system.join("ana@example.com")
    if way == "one click":
        admin.post(
            link(system, "ana@example.com", "unsubscribe"), data={"List-Unsubscribe": "One-Click"}
        )
    else:
        with transaction(system.sessions) as session:
            now, secret = system.clock.now(), system.settings.secret_key
            withdraw_address(session, "ana@example.com", now, secret=secret)
    page = f"/admin/subscribers/{system.subscriber('ana@example.com').id}"
    detail = admin.get(page).get_data(as_text=True)
    assert 'value="resume"' not in detail and "unsubscribed themselves" in detail
    refused = post(admin, f"{page}/action", {"action": "resume"}, page=page)
    assert refused.status_code == 400
    assert "unsubscribed themselves" in refused.get_data(as_text=True)
    assert status_of(system, "ana@example.com") == SubscriberStatus.UNSUBSCRIBED
    with transaction(system.sessions) as session:
        kinds = session.scalars(sa.select(ConsentEvent.kind).order_by(ConsentEvent.id)).all()
    assert ConsentEventKind.RESUBSCRIBE not in kinds


def test_a_failed_email_can_be_sent_again(admin: FlaskClient, system: System) -> None:
    system.signup("bob@example.com")
    system.smtp.script("bob@example.com", "554 5.7.1 Rejected for policy reasons")
    system.drain()
    with transaction(system.sessions) as session:
        failed = session.scalars(sa.select(Delivery)).one()
    assert failed.status == DeliveryStatus.FAILED
    page = f"/admin/subscribers/{failed.subscriber_id}"
    post(admin, f"{page}/action", {"action": "resend", "delivery": str(failed.id)}, page=page)
    system.drain()
    assert len(system.smtp.to("bob@example.com")) == 1


@pytest.fixture
def maildir_app(system: System) -> Iterator[Flask]:
    settings = dataclasses.replace(system.settings, mail_url="maildir:")
    app = create_app(
        settings, clock=system.clock, enqueue=system.enqueue, signups=system.enqueue_signups
    )
    yield app
    app.extensions["drip"].engine.dispose()


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # reads the Maildir only
def test_the_outbox_shows_local_mail_as_the_reader_sees_it(
    maildir_app: Flask, system: System, writer: str
) -> None:
    outbox = MaildirTransport(system.settings.outbox_dir)
    system.signup("ana@example.com")
    system.drain()
    outbox.send(system.smtp.received[0].raw, mail_from="", rcpt_to="ana@example.com")
    client = maildir_app.test_client()
    assert log_in(client) == 302
    listing = client.get("/admin/outbox/").get_data(as_text=True)
    key = re.search(r'href="/admin/outbox/([^"]+)"', listing)
    assert key and "Please confirm your subscription" in listing
    shown = client.get(f"/admin/outbox/{key.group(1)}").get_data(as_text=True)
    assert "List-Unsubscribe" in shown and "sandbox" in shown
    html = client.get(f"/admin/outbox/{key.group(1)}/html")
    assert "sandbox" in html.headers["Content-Security-Policy"]
    assert client.get("/admin/outbox/nope").status_code == 404


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # the Maildir's part
@pytest.mark.parametrize("by", ["privacy page", "admin"])
def test_an_erasure_deletes_the_addresss_emails_from_the_local_outbox(
    maildir_app: Flask, system: System, writer: str, by: str
) -> None:
    """The outbox is a copy drip keeps: erased, the address must not be readable there."""
    system.join("ana@example.com", first_name="Ana")
    system.join("bob@example.com")
    outbox = MaildirTransport(system.settings.outbox_dir)
    for received in system.smtp.received:
        outbox.send(received.raw, mail_from="", rcpt_to=received.rcpt_tos[0])
    client = maildir_app.test_client()
    if by == "privacy page":
        client.post("/privacy", data={"email": "ana@example.com"})
        erase = erase_button(client, link(system, "ana@example.com", "privacy"))
        assert client.post(erase).status_code == 200
    assert log_in(client) == 302
    if by == "admin":
        page = f"/admin/subscribers/{system.subscriber('ana@example.com').id}"
        post(client, f"{page}/erase", {"understood": "yes"}, page=f"{page}/erase")
    left = [message["To"] for message in mailbox.Maildir(system.settings.outbox_dir)]
    assert left == ["bob@example.com"] * 2, "Bob's confirmation and welcome stay"
    assert "ana@example.com" not in client.get("/admin/outbox/").get_data(as_text=True)


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # reads the Maildir only
def test_the_outbox_lists_a_message_nested_too_deep_to_parse(
    maildir_app: Flask, system: System, writer: str
) -> None:
    """The list parsed every message whole, so one Python's parser raises RecursionError
    on made the page fail; opened, it is refused with a reason."""
    key = mailbox.Maildir(system.settings.outbox_dir, create=True).add(nested_parts())
    client = maildir_app.test_client()
    assert log_in(client) == 302
    listing = client.get("/admin/outbox/")
    assert listing.status_code == 200
    assert f'href="/admin/outbox/{key}"' in listing.get_data(as_text=True)
    shown = client.get(f"/admin/outbox/{key}")
    assert shown.status_code == 400
    assert "nested too deeply to show" in shown.get_data(as_text=True)


def outbox_page(client: FlaskClient, url: str) -> tuple[str, list[str], str | None]:
    """What an outbox page says of its count, the subjects it lists, and its link to
    older mail."""
    page = client.get(url).text
    count = re.search(r'<p id="count">(.*?)</p>', page, re.DOTALL)
    older = re.search(r'<a href="([^"]+)">Older messages', page)
    subjects = re.findall(r'<a href="/admin/outbox/[^"?]+">([^<]*)</a>', page)
    return (
        count.group(1) if count else "",
        [html.unescape(subject) for subject in subjects],
        html.unescape(older.group(1)) if older else None,
    )


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # reads the Maildir only
def test_the_outbox_counts_its_mail_and_pages_back_to_the_oldest(
    maildir_app: Flask, system: System, writer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outbox listed the 200 newest messages, saying neither how many there were nor
    offering the older ones. Pages follow one another by the time and name of the last
    message shown, so two written in the same instant are not lost between two pages,
    and mail arriving meanwhile does not shift the older pages."""
    monkeypatch.setattr(admin_outbox, "SHOWN", 3)
    box = mailbox.Maildir(system.settings.outbox_dir, create=True)

    def write(subject: str, at: int) -> None:
        message = EmailMessage()
        message["To"], message["Subject"] = "ana@example.com", subject
        message.set_content("Hello.")
        key = box.add(message.as_bytes())
        (path,) = Path(system.settings.outbox_dir).glob(f"*/{key}*")
        os.utime(path, ns=(at, at))

    for n, second in enumerate([1, 2, 3, 4, 4, 5, 6]):  # messages 3 and 4 at once
        write(f"<b>Message {n}</b>", (1_800_000_000 + second) * 10**9)
    client = maildir_app.test_client()
    assert log_in(client) == 302

    count, first, older = outbox_page(client, "/admin/outbox/")
    assert count == "The 3 newest of 7 messages."
    assert first[:2] == ["<b>Message 6</b>", "<b>Message 5</b>"]
    assert older
    write("<b>Message 7</b>", 1_900_000_000 * 10**9)
    count, second, older = outbox_page(client, older)
    assert count == "Messages 5 to 7 of 8, newest first."
    assert older
    count, third, older = outbox_page(client, older)
    assert (count, third) == ("Messages 8 to 8 of 8, newest first.", ["<b>Message 0</b>"])
    assert older is None
    assert sorted(first + second + third) == [f"<b>Message {n}</b>" for n in range(7)]
    assert first[2:] + second[:1] in (
        ["<b>Message 4</b>", "<b>Message 3</b>"],
        ["<b>Message 3</b>", "<b>Message 4</b>"],
    ), "written in the same instant, the two keep an order"
    assert second[1:] == ["<b>Message 2</b>", "<b>Message 1</b>"]
    assert "<b>Message" not in client.get("/admin/outbox/").text, "escaped"
    assert outbox_page(client, "/admin/outbox/")[0] == "The 3 newest of 8 messages."
    assert client.get("/admin/outbox/?older=yesterday").status_code == 400
    assert client.get(f"/admin/outbox/?older={TOO_LONG_FOR_INT}.x").status_code == 400


def test_the_admin_can_download_every_subscriber_as_csv(
    admin: FlaskClient, readers: list[str]
) -> None:
    response = admin.get("/admin/subscribers/export.csv")
    assert response.mimetype == "text/csv"
    lines = response.get_data(as_text=True).splitlines()
    assert lines[0].startswith("email,first_name,status")
    assert len(lines) == 61


def test_a_test_sends_unsubscribe_link_says_so_and_unsubscribes_nobody(
    admin: FlaskClient, app: Flask, system: System, lesson_1: int
) -> None:
    """A proof has no subscriber, so no token for its link; the generic bad-link page
    told the writer that drip's unsubscribe link was broken."""
    system.join("ana@example.com")
    page = f"/admin/lessons/{lesson_1}"
    post(admin, f"{page}/test", {"to": "writer@example.com"}, page=page)
    system.drain()
    (proof,) = system.smtp.to("writer@example.com")
    url = proof["List-Unsubscribe"].strip("<>")
    assert url in proof.get_body(("plain",)).get_content()
    path = url.removeprefix(system.settings.base_url)
    bare = app.test_client(use_cookies=False)
    shown = bare.get(path)
    assert shown.status_code == 200
    assert "test email" in shown.get_data(as_text=True)
    assert "nobody was unsubscribed" in shown.get_data(as_text=True)
    one_click = bare.post(path, data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200
    assert status_of(system, "ana@example.com") == SubscriberStatus.ACTIVE


def test_an_export_of_an_unknown_series_is_not_found(admin: FlaskClient) -> None:
    """The series is looked up before the body streams: an error raised while streaming
    escapes Flask's error pages and breaks the download half-way."""
    response = admin.get("/admin/subscribers/export.csv?series=nope")
    body = response.get_data(as_text=True)
    assert response.status_code == 404
    assert "no series" in body


def test_a_test_send_arrives_marked_test_with_a_chosen_subscribers_data(
    admin: FlaskClient, system: System, lesson_1: int
) -> None:
    system.signup("ana@example.com", first_name="Ana")
    system.drain()
    page = f"/admin/lessons/{lesson_1}"
    response = post(
        admin, f"{page}/test", {"to": "writer@example.com", "as": "ana@example.com"}, page=page
    )
    assert response.status_code == 302
    system.drain()
    (proof,) = system.smtp.to("writer@example.com")
    assert proof["Subject"] == "[TEST] Why stress settles in your back"
    assert "Hi Ana," in proof.get_body(("plain",)).get_content()


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"to": "not an address"}, "Email address: An email address must have an @-sign"),
        ({"to": "w@example.com", "as": "nobody@example.com"}, "no subscriber nobody@example.com"),
    ],
)
def test_a_test_send_to_a_bad_address_is_refused_in_the_editor(
    admin: FlaskClient, system: System, lesson_1: int, form: dict[str, str], message: str
) -> None:
    """It answered with a bare error page, away from the editor and the addresses typed."""
    page = f"/admin/lessons/{lesson_1}"
    response = post(admin, f"{page}/test", form, page=page)
    assert response.status_code == 400
    shown = html.unescape(response.get_data(as_text=True))
    assert '<form id="editor"' in shown
    assert re.search(f'<p class="error" role="alert">No test was sent: {message}', shown)
    for typed in form.values():
        assert f'value="{typed}"' in shown
    system.drain()
    assert not system.smtp.received


def test_the_preview_can_use_a_real_subscribers_data(
    admin: FlaskClient, system: System, lesson_1: int
) -> None:
    system.signup("ana@example.com", first_name="Anabel")
    page = f"/admin/lessons/{lesson_1}"
    parts = post(
        admin,
        f"{page}/preview.json",
        {**edit(lesson_1), "preview_as": "ana@example.com"},
        page=page,
    )
    assert parts.get_json()["text"].count("Hi Anabel,") == 1


def test_lessons_can_be_reordered_and_keep_rising_days(admin: FlaskClient, system: System) -> None:
    page = "/admin/sequences/feel-better"
    with transaction(system.sessions) as session:
        lesson_3 = session.scalar(sa.select(Step.id).where(Step.number == 3))
    post(admin, f"/admin/steps/{lesson_3}/move", {"to": "earlier"}, page=page)
    with transaction(system.sessions) as session:
        moved = session.get_one(Step, lesson_3)
        days = session.scalars(sa.select(Step.day_offset).order_by(Step.number)).all()
    assert (moved.number, moved.day_offset) == (2, 2)
    assert list(days) == sorted(days)
    with transaction(system.sessions) as session:
        welcome = session.scalar(sa.select(Step.id).where(Step.number == 0))
    assert (
        post(admin, f"/admin/steps/{welcome}/move", {"to": "later"}, page=page).status_code == 400
    )


def test_moving_a_lesson_sent_twice_moves_it_one_place(admin: FlaskClient, system: System) -> None:
    """ "Move earlier" pressed twice (or the page reloaded and sent again) moved lesson 3
    two places. The form says which place the page showed."""
    lesson_3 = step_id(system, 3)
    move = f"/admin/steps/{lesson_3}/move"
    form = re.search(rf'action="{move}">(.*?)</form>', admin.get(SERIES).text, re.S)
    assert form is not None
    shown = hidden_fields(form[1]) | {"to": "earlier"}
    assert shown["number"] == "3"
    assert post(admin, move, shown, page=SERIES).status_code == 302
    again = post(admin, move, shown, page=SERIES)
    assert again.status_code == 409
    assert "Lesson 3 has moved since that page was shown (it is lesson 2 now)" in again.text
    assert f'id="day-{lesson_3}"' in again.text, "the list as it stands"
    with transaction(system.sessions) as session:
        assert session.get_one(Step, lesson_3).number == 2
    assert days(system) == list(range(11))


def test_an_admin_can_move_a_subscriber_to_another_step(admin: FlaskClient, system: System) -> None:
    system.join("ana@example.com")
    ana = system.subscriber("ana@example.com")
    page = f"/admin/subscribers/{ana.id}"
    post(admin, f"{page}/action", {"action": "move", "step": "5"}, page=page)
    system.tick()
    assert system.tick().issued == [], "not two emails on one day, even when moved"
    system.clock.advance(timedelta(days=1, hours=3))
    system.tick()
    system.drain()
    assert system.smtp.to("ana@example.com")[-1]["Subject"].startswith("150 minutes a week")
    assert (
        post(admin, f"{page}/action", {"action": "move", "step": "0"}, page=page).status_code == 400
    )
    assert (
        post(admin, f"{page}/action", {"action": "move", "step": "x"}, page=page).status_code == 400
    )


def test_moving_a_lesson_later_works_and_nobody_skips_a_lesson(
    admin: FlaskClient, system: System
) -> None:
    system.join("ana@example.com")
    system.clock.advance(timedelta(days=1, hours=3))
    system.tick()
    system.drain()  # Ana has had lesson 1 and waits for lesson 2
    page = "/admin/sequences/feel-better"
    with transaction(system.sessions) as session:
        lesson_1, lesson_2 = (
            session.scalar(sa.select(Step.id).where(Step.number == n)) for n in (1, 2)
        )
    assert (
        post(admin, f"/admin/steps/{lesson_1}/move", {"to": "later"}, page=page).status_code == 302
    )
    system.clock.advance(timedelta(days=1))
    system.tick()
    system.drain()
    with transaction(system.sessions) as session:
        sent = session.scalars(
            sa.select(Delivery.step_id).where(Delivery.step_id.is_not(None)).order_by(Delivery.id)
        )
        assert list(sent)[-1] == lesson_2, "she gets the lesson she was waiting for"


@pytest.mark.parametrize(
    "path",
    [
        "/admin/subscribers/?before=99999999999999999999999",
        "/admin/subscribers/?step=99999999999999999999999",
        "/admin/subscribers/99999999999999999999999",
        "/admin/lessons/99999999999999999999999/diff?a=1&b=99999999999999999999999",
    ],
)
def test_huge_numbers_in_admin_urls_are_not_found_not_errors(admin: FlaskClient, path: str) -> None:
    """PostgreSQL refuses them (DataError, integer out of range), SQLite too
    (OverflowError): either way they name nothing that exists."""
    response = admin.get(path)
    assert response.status_code == 404
    assert "not found" in response.get_data(as_text=True)


TOO_LONG_FOR_INT = "9" * 5000
"""Past the 4,300 digits Python's int() takes (it raises ValueError, a 500), and well
under the 64 KiB a form may send."""


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # refused before any query
def test_a_number_longer_than_int_takes_is_a_clear_400_not_a_500(
    admin: FlaskClient, system: System
) -> None:
    system.join("ana@example.com")
    ana = f"/admin/subscribers/{system.subscriber('ana@example.com').id}"
    lesson_2 = step_id(system, 2)
    day = post(admin, f"/admin/steps/{lesson_2}/day", {"day_offset": TOO_LONG_FOR_INT}, page=SERIES)
    assert day.status_code == 400
    assert "day: a whole number from 0 to 365" in day.get_data(as_text=True)
    moved = {"action": "move", "step": TOO_LONG_FOR_INT}
    move = post(admin, f"{ana}/action", moved, page=ana)
    assert move.status_code == 400
    assert "choose a step number" in move.get_data(as_text=True)
    assert days(system) == list(range(11))
    assert system.subscriber("ana@example.com").next_step == 1


def test_a_value_the_database_refuses_is_a_clear_400_not_a_404(
    app: Flask, client: FlaskClient, database_kind: str
) -> None:
    """Text PostgreSQL cannot store (a NUL, or too long for its column) is input that
    slipped past validation: "not found" would send the admin looking for a record."""
    if database_kind != "postgresql":
        pytest.skip("SQLite stores any text; only PostgreSQL refuses a value")

    @app.get("/refused/<kind>")
    def refused(kind: str) -> str:
        name = "a\x00b" if kind == "nul" else "x" * 201  # sequences.name is String(200)
        with ctx().transaction() as session:
            session.execute(sa.update(Sequence).values(name=name))
        return "stored"

    for kind in ("nul", "long"):
        response = client.get(f"/refused/{kind}")
        assert response.status_code == 400, kind
        assert "cannot be stored" in response.get_data(as_text=True), kind


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # checked before any write
def test_a_template_that_calls_itself_is_refused(
    admin: FlaskClient, system: System, lesson_1: int
) -> None:
    page = f"/admin/lessons/{lesson_1}"
    body = "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}"
    response = post(admin, page, edit(lesson_1, body_html=body), page=page)
    assert response.status_code == 400
    assert "calls itself" in response.get_data(as_text=True)


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # CSV escaping only
def test_exported_names_cannot_run_as_spreadsheet_formulas(
    admin: FlaskClient, system: System
) -> None:
    system.signup("eve@example.com", first_name='=HYPERLINK("http://evil.example")')
    lines = admin.get("/admin/subscribers/export.csv").get_data(as_text=True).splitlines()
    assert "'=HYPERLINK" in lines[1]


def test_complaints_at_a_quarter_percent_hold_new_lessons_until_the_admin_resumes(
    system: System, admin: FlaskClient
) -> None:
    system.join("ana@example.com")
    system.clock.advance(timedelta(days=1, hours=3))
    sent_today(system, 10_000, complaints=26)

    assert system.tick().issued == [], "lesson 1 is due, but held"
    page = admin.get("/admin/").get_data(as_text=True)
    assert "New lessons are on hold" in page
    assert "26 spam complaints since 2026-10-25 00:00 UTC, against 10000 emails" in page
    assert system.tick().issued == []

    assert post(admin, "/admin/resume-sending").status_code == 302
    assert "New lessons are on hold" not in admin.get("/admin/").get_data(as_text=True)
    assert len(system.tick().issued) == 1, "resumed, and not held again the same day"


def test_complaints_under_the_line_only_warn(system: System, admin: FlaskClient) -> None:
    system.join("ana@example.com")
    system.clock.advance(timedelta(days=1, hours=3))
    sent_today(system, 10_000, complaints=9)

    assert len(system.tick().issued) == 1
    system.drain()  # lesson 1 goes out too: counted, whenever the worker sends it
    page = admin.get("/admin/").get_data(as_text=True)
    assert (
        "Spam complaints today (since 00:00 UTC): 9, against 10001 emails sent in the last "
        "24 hours (0.09%)" in page
    )
    assert "New lessons are on hold" not in page

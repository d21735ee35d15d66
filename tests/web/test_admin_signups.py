"""/admin/signups: the signups workers gave up on, seen and handed back by the writer."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from drip.web.admin import signups
from tests.helpers import System
from tests.test_intake import give_up, receive, row
from tests.web.conftest import post

NOTICE = "could not be handled"


def test_the_dashboard_tells_of_given_up_signups_only_when_there_are_some(
    admin: FlaskClient, system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    receive(system, "cy@example.com")  # in the workers' hands: nothing to tell
    assert NOTICE not in admin.get("/admin/").get_data(as_text=True)
    give_up(system, monkeypatch, "ana@example.com")
    page = admin.get("/admin/").get_data(as_text=True)
    assert '<a href="/admin/signups/">1 signup could not be handled</a>' in page
    give_up(system, monkeypatch, "bo@example.com")
    assert "2 signups could not be handled" in admin.get("/admin/").get_data(as_text=True)


def test_the_page_lists_given_up_signups_newest_first(
    admin: FlaskClient, system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    give_up(system, monkeypatch, "ana@example.com")
    system.clock.advance(system.settings.requeue_after)
    bo = give_up(system, monkeypatch, "bo@example.com")
    received = system.clock.now().strftime("%Y-%m-%d %H:%M")
    receive(system, "cy@example.com")
    page = admin.get("/admin/signups/").get_data(as_text=True)
    assert page.index("bo@example.com") < page.index("ana@example.com")
    assert "cy@example.com" not in page
    assert "<td>Calm Back, Calm Mind</td>" in page
    attempts = system.settings.max_attempts + 1
    assert f"<td>{bo}</td><td>{received}</td>" in page
    assert f"<td>{attempts}</td>" in page
    assert "Try again (all 2)" in page


def test_the_page_shows_the_newest_and_counts_them_all(
    admin: FlaskClient, system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(signups, "SHOWN", 1)
    give_up(system, monkeypatch, "ana@example.com")
    give_up(system, monkeypatch, "bo@example.com")
    page = admin.get("/admin/signups/").get_data(as_text=True)
    assert "bo@example.com" in page and "ana@example.com" not in page
    assert "The 1 most recent of 2." in page


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # CSRF, before any query
def test_trying_again_without_a_csrf_token_is_refused_and_changes_nothing(
    admin: FlaskClient, system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    received_id = give_up(system, monkeypatch, "ana@example.com")
    response = admin.post("/admin/signups/retry")
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)
    kept = row(system, received_id)
    assert kept is not None and kept.queued_at is None
    assert system.tick(sweep_only=True).requeued_signups == []


def test_trying_again_hands_them_to_the_next_sweep_and_a_worker_signs_them_up(
    admin: FlaskClient, system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    ana = give_up(system, monkeypatch, "ana@example.com")
    bo = give_up(system, monkeypatch, "bo@example.com")
    response = post(admin, "/admin/signups/retry", page="/admin/signups/")
    assert response.status_code == 302
    page = admin.get(response.headers["Location"]).get_data(as_text=True)
    assert "which queues them at its next pass: 2." in page
    assert "None: workers handled every signup." in page
    assert sorted(system.tick(sweep_only=True).requeued_signups) == [ana, bo]
    system.drain()
    assert len(system.smtp.to("ana@example.com")) == len(system.smtp.to("bo@example.com")) == 1
    assert NOTICE not in admin.get("/admin/").get_data(as_text=True)


def test_one_signup_can_be_tried_again_alone(
    admin: FlaskClient, system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    ana = give_up(system, monkeypatch, "ana@example.com")
    give_up(system, monkeypatch, "bo@example.com")
    response = post(admin, "/admin/signups/retry", {"id": ana}, page="/admin/signups/")
    assert "which queues them at its next pass: 1." in admin.get(
        response.headers["Location"]
    ).get_data(as_text=True)
    assert system.tick(sweep_only=True).requeued_signups == [ana]
    system.drain()
    assert len(system.smtp.to("ana@example.com")) == 1
    assert system.smtp.to("bo@example.com") == []
    assert "1 signup could not be handled" in admin.get("/admin/").get_data(as_text=True)


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # refused before any query
def test_a_malformed_number_is_refused_and_hands_nothing_back(
    admin: FlaskClient, system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not read as "no number given", which means all of them."""
    received_id = give_up(system, monkeypatch, "ana@example.com")
    response = post(admin, "/admin/signups/retry", {"id": "1x"}, page="/admin/signups/")
    assert response.status_code == 400
    kept = row(system, received_id)
    assert kept is not None and kept.queued_at is None

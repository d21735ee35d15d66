"""What the web side still does when a part it depends on is down (standards UNS-09): the
unsubscribe route and signing up need only the database, and /readyz says when the
database cannot take the write that unsubscribing makes."""

from __future__ import annotations

import dataclasses
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from drip.db import transaction
from drip.models import Step, SubscriberStatus
from drip.tasks import Enqueuer, create_broker
from drip.web import create_app
from tests.helpers import System, unreachable
from tests.web.conftest import link, log_in, post, status_of


@pytest.fixture
def without_redis(system: System, tmp_path: Path) -> Iterator[Flask]:
    """The app wired the production way (no test queue), to a Redis that is not there."""
    dead = dataclasses.replace(system.settings, redis_url=f"unix://{tmp_path}/no-redis.sock")
    app = create_app(dead, clock=system.clock)
    yield app
    app.extensions["drip"].engine.dispose()


@pytest.fixture
def without_database(system: System) -> Iterator[Flask]:
    """The app wired to a PostgreSQL port that is bound but not listening, so every
    connection is refused at once, as when the server is down."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        dead = dataclasses.replace(
            system.settings, database_url=f"postgresql+psycopg://drip@127.0.0.1:{port}/drip"
        )
        app = create_app(
            dead, clock=system.clock, enqueue=system.enqueue, signups=system.enqueue_signups
        )
        yield app
        app.extensions["drip"].engine.dispose()


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # the dead one is PostgreSQL
def test_while_the_database_is_down_pages_ask_to_come_back_shortly(
    without_database: Flask, system: System, caplog: pytest.LogCaptureFixture
) -> None:
    """A 503 with Retry-After, a page for people and JSON for the API, and one short
    warning per request: the operator learns of the outage from /readyz and these lines,
    not from a traceback on every page view (the one-click unsubscribe included)."""
    system.join("ana@example.com")
    system.signup("cy@example.com")
    confirm = link(system, "cy@example.com", "confirm")
    unsubscribe = link(system, "ana@example.com", "unsubscribe")
    client = without_database.test_client(use_cookies=False)
    caplog.clear()

    with caplog.at_level(logging.INFO):
        pages = [
            client.get("/"),
            client.get("/embed"),
            client.post("/subscribe", data={"email": "bob@example.com"}),
            client.get(confirm),
            client.get(unsubscribe),
        ]
        api = client.post("/api/v1/subscribers", json={"email": "bob@example.com"})
        one_click = client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})

    for answer in [*pages, api, one_click]:
        assert answer.status_code == 503
        assert 1 <= int(answer.headers["Retry-After"]) <= 10
    for page in [*pages, one_click]:
        assert "try again shortly" in page.get_data(as_text=True)
    assert "try again shortly" in api.get_json()["error"]
    assert [r.levelno for r in caplog.records] == [logging.WARNING] * 7
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in caplog.records)
    assert "database_unreachable endpoint=manage.unsubscribe_now" in caplog.messages[-1]
    assert unsubscribe.split("/")[2] not in caplog.text
    assert status_of(system, "ana@example.com") == SubscriberStatus.ACTIVE


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)
def test_a_failed_statement_is_still_a_bug_shown_in_full(
    app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A statement the database refuses (here: a table that is gone) is a bug, not an
    outage: a 500 with its traceback logged."""
    with app.extensions["drip"].engine.begin() as connection:
        connection.execute(sa.text("ALTER TABLE sequences RENAME TO gone"))
    app.testing = False  # a 500 answers instead of raising into the test
    with caplog.at_level(logging.WARNING):
        response = client.get("/")
    assert response.status_code == 500
    assert any(r.exc_info and r.levelno == logging.ERROR for r in caplog.records)


@pytest.mark.parametrize("button", [{"List-Unsubscribe": "One-Click"}, {}])
def test_unsubscribing_works_while_redis_is_down(
    without_redis: Flask, system: System, button: dict[str, str]
) -> None:
    system.join("ana@example.com")
    unsubscribe = link(system, "ana@example.com", "unsubscribe")
    client = without_redis.test_client(use_cookies=False)

    response = client.post(unsubscribe, data=button)

    assert response.status_code == 200
    assert status_of(system, "ana@example.com") == SubscriberStatus.UNSUBSCRIBED
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["redis"].startswith("error")
    assert ready.get_json()["database"] == "ok"


def test_not_ready_when_the_database_answers_reads_but_refuses_writes(
    app: Flask, client: FlaskClient
) -> None:
    engine = app.extensions["drip"].engine
    read_only = (
        "PRAGMA query_only = ON"
        if engine.dialect.name == "sqlite"
        else "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"
    )

    def refuse_writes(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(read_only)
        cursor.close()
        dbapi_connection.commit()  # psycopg opened a transaction for the SET

    assert client.get("/readyz").status_code == 200
    event.listen(engine, "connect", refuse_writes)
    engine.dispose()

    ready = client.get("/readyz")

    assert ready.status_code == 503
    assert ready.get_json()["database"].startswith("error")
    assert ready.get_json()["migrations"] == "ok"


def test_signing_up_works_while_redis_is_down(without_redis: Flask, system: System) -> None:
    """The per-IP limit goes uncounted; the signup waits in the database, and the
    sweeper queues it once Redis is back (standards REL-03)."""
    client = without_redis.test_client(use_cookies=False)
    response = client.post("/subscribe", data={"email": "ana@example.com"})
    assert response.status_code == 303
    system.drain()
    assert system.smtp.received == []
    system.clock.advance(system.settings.requeue_after)
    assert len(system.tick(sweep_only=True).requeued_signups) == 1
    assert link(system, "ana@example.com", "confirm")
    assert status_of(system, "ana@example.com") == SubscriberStatus.PENDING


def test_the_signup_limit_goes_uncounted_and_logged_while_redis_is_down(
    without_redis: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    client = without_redis.test_client(use_cookies=False)
    with caplog.at_level(logging.WARNING, logger="drip.web.limits"):
        answers = [
            client.post("/subscribe", data={"email": f"p{n}@example.com"}).status_code
            for n in range(6)
        ]
    assert answers == [303] * 6, "one more than the per-IP limit"
    assert "not counted: Redis did not answer" in caplog.text


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # Redis only
def test_an_admin_logs_in_and_out_while_redis_is_down(
    without_redis: Flask, writer: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The login limits go uncounted, logged, as the signup limits do."""
    client = without_redis.test_client()
    with caplog.at_level(logging.WARNING, logger="drip.web.limits"):
        assert log_in(client, writer, "wrong" * 3) == 401
        assert log_in(client, writer) == 302
    assert "not counted: Redis did not answer" in caplog.text
    assert post(client, "/admin/logout").status_code == 302
    assert client.get("/admin/").status_code == 302


def test_a_test_send_while_the_queue_is_down_tells_the_admin_to_try_again(
    system: System, tmp_path: Path, writer: str
) -> None:
    app = create_app(
        system.settings,
        clock=system.clock,
        enqueue=system.enqueue,
        signups=system.enqueue_signups,
        proofs=Enqueuer(create_broker(unreachable(tmp_path))).proof,
    )
    client = app.test_client()
    assert log_in(client) == 302
    with transaction(system.sessions) as session:
        page = f"/admin/lessons/{session.scalar(sa.select(Step.id).where(Step.number == 1))}"
    response = post(client, f"{page}/test", {"to": "writer@example.com"}, page=page)
    assert response.status_code == 302
    shown = client.get(page).get_data(as_text=True)
    assert "The queue is unreachable" in shown and "on its way" not in shown
    app.extensions["drip"].engine.dispose()

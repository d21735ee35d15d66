"""Fixtures for tests that go through HTTP: the app on the test System, and link helpers."""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from drip.admins import create_admin
from drip.db import transaction
from drip.models import SubscriberStatus
from drip.tasks import Enqueuer
from drip.web import create_app
from tests.helpers import System

BASE = "https://drip.example.com"
BLOG = "https://blog.example.com"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def app(system: System) -> Iterator[Flask]:
    app = create_app(
        system.settings,
        clock=system.clock,
        enqueue=system.enqueue,
        signups=system.enqueue_signups,
        proofs=Enqueuer(system.broker).proof,
        recount=system.recount,
    )
    yield app
    app.extensions["drip"].engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def blog(system: System) -> Iterator[FlaskClient]:
    """A client of drip set up for a writer whose blog embeds the form."""
    settings = dataclasses.replace(
        system.settings,
        allowed_origins=system.settings.allowed_origins | {BLOG},
        thanks_url=f"{BLOG}/thanks",
    )
    app = create_app(
        settings, clock=system.clock, enqueue=system.enqueue, signups=system.enqueue_signups
    )
    yield app.test_client()
    app.extensions["drip"].engine.dispose()


@pytest.fixture
def unlimited_app(system: System) -> Iterator[Flask]:
    """The app with rate limits out of the way, for tests about input, not volume."""
    settings = dataclasses.replace(
        system.settings, signup_limit="1000 per second", address_limit="1000 per second"
    )
    app = create_app(
        settings, clock=system.clock, enqueue=system.enqueue, signups=system.enqueue_signups
    )
    yield app
    app.extensions["drip"].engine.dispose()


@pytest.fixture
def unlimited_client(unlimited_app: Flask) -> FlaskClient:
    return unlimited_app.test_client()


def link(system: System, address: str, kind: str) -> str:
    """The path of the newest `kind` link (confirm, unsubscribe, privacy) emailed to `address`."""
    system.drain()
    text = system.smtp.to(address)[-1].get_body(("plain",)).get_content()
    urls = re.findall(rf"{re.escape(BASE)}(/{kind}/[\w.-]+)", text)
    assert urls, f"no {kind} link in the email"
    return urls[-1]


@pytest.fixture
def active(client: FlaskClient, system: System) -> str:
    """Ana, confirmed: her subscription page's path (the unsubscribe link of her welcome
    email)."""
    client.post("/subscribe", data={"email": "ana@example.com"})
    client.post(link(system, "ana@example.com", "confirm"))
    return link(system, "ana@example.com", "unsubscribe")


def snippet(client: FlaskClient, path: str = "/embed") -> str:
    """The HTML the embed page hands a writer, as they paste it into their site."""
    found = re.search(
        r"<textarea[^>]*>(.*?)</textarea>", client.get(path).get_data(as_text=True), re.S
    )
    assert found, f"no snippet on {path}"
    return html.unescape(found.group(1))


def hidden_fields(page: str) -> dict[str, str]:
    """The hidden fields of the signup form on `page`, as a browser posts them."""
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)
    return {name: html.unescape(value) for name, value in fields}


def notice_on(page: str) -> str:
    """The consent notice a signup form on `page` shows, as a visitor reads it."""
    found = re.search(r">(By signing up [^<]*?) <a ", page)
    assert found, "no consent notice on the page"
    return html.unescape(found.group(1))


def status_of(system: System, address: str) -> SubscriberStatus:
    return system.subscriber(address).status


@pytest.fixture
def app_with(system: System) -> Iterator[Callable[..., Flask]]:
    """Apps on the test system with some settings changed."""
    built: list[Flask] = []

    def build(**changes: object) -> Flask:
        if changes.get("production"):  # the test client's host, as DRIP_BASE_URL would give
            changes.setdefault("trusted_hosts", frozenset({"localhost"}))
        settings = dataclasses.replace(system.settings, **changes)
        built.append(
            create_app(
                settings, clock=system.clock, enqueue=system.enqueue, signups=system.enqueue_signups
            )
        )
        return built[-1]

    yield build
    for app in built:
        app.extensions["drip"].engine.dispose()


def csrf_token(client: FlaskClient, path: str = "/admin/login") -> str:
    page = client.get(path).get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, f"no CSRF token on {path}"
    return found.group(1)


def log_in(
    client: FlaskClient,
    email: str = "writer@example.com",
    password: str = PASSWORD,
    *,
    ip: str = "127.0.0.1",
) -> int:
    token = csrf_token(client)
    return client.post(
        "/admin/login",
        data={"email": email, "password": password, "csrf_token": token},
        environ_base={"REMOTE_ADDR": ip},
    ).status_code


@pytest.fixture
def writer(system: System) -> str:
    with transaction(system.sessions) as session:
        create_admin(session, "writer@example.com", PASSWORD, now=system.clock.now())
    return "writer@example.com"


@pytest.fixture
def admin(client: FlaskClient, writer: str) -> FlaskClient:
    """The test client, logged in as the writer."""
    assert log_in(client) == 302
    return client


def post(
    client: FlaskClient, path: str, data: dict[str, object] | None = None, *, page: str = "/admin/"
):
    """POST a form with the CSRF token of the admin page `page`."""
    return client.post(path, data={**(data or {}), "csrf_token": csrf_token(client, page)})

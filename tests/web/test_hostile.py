"""A table of malformed and hostile signups, by form and by JSON: never a 500, always a
clear error, no row written, no email sent."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from drip.db import transaction
from drip.models import ConsentEvent, ConsentText, Delivery, Subscriber
from tests.helpers import System

OK = {"email": "ana@example.com"}
HOSTILE: list[tuple[str, dict[str, object]]] = [
    ("no email", {}),
    ("empty email", {"email": ""}),
    ("spaces", {"email": "   "}),
    ("no at sign", {"email": "ana.example.com"}),
    ("two at signs", {"email": "ana@@example.com"}),
    ("no domain", {"email": "ana@"}),
    ("no local part", {"email": "@example.com"}),
    ("no dot in domain", {"email": "ana@localhost"}),
    ("reserved domain", {"email": "ana@example.invalid"}),
    ("ip literal", {"email": "ana@[127.0.0.1]"}),
    ("display name", {"email": "Ana <ana@example.com>"}),
    ("two addresses", {"email": "ana@example.com, bob@example.com"}),
    ("crlf in email", {"email": "ana@example.com\r\nBcc: x@example.com"}),
    ("lf in email", {"email": "ana@example.com\nBcc: x@example.com"}),
    ("nul in email", {"email": "ana\x00@example.com"}),
    ("encoded word in email", {"email": "=?utf-8?q?ana?=@example.com"}),
    ("unicode local part", {"email": "anä@example.com"}),
    ("too long local part", {"email": "a" * 65 + "@example.com"}),
    ("too long address", {"email": "a" * 60 + "@" + "b" * 200 + ".com"}),
    ("quoted local part with space", {"email": '"a b"@example.com'}),
    ("trailing dot", {"email": "ana.@example.com"}),
    ("double dot", {"email": "an..a@example.com"}),
    ("html in email", {"email": "<script>@example.com"}),
    ("sql in email", {"email": "'; DROP TABLE subscribers; --@example.com"}),
    ("crlf in name", {**OK, "first_name": "Eve\r\nBcc: x@example.com"}),
    ("lf in name", {**OK, "first_name": "Eve\nBcc: x@example.com"}),
    ("encoded word in name", {**OK, "first_name": "A =?UTF-8?Q?=0A?=Bcc: x@example.com"}),
    ("nul in name", {**OK, "first_name": "A\x00B"}),
    ("line separator in name", {**OK, "first_name": "A\u2028B"}),
    ("next line in name", {**OK, "first_name": "A\x85B"}),
    ("tab in name", {**OK, "first_name": "A\tB"}),
    ("escape in name", {**OK, "first_name": "A\x1b[31mB"}),
    ("name too long", {**OK, "first_name": "x" * 101}),
    ("unknown series", {**OK, "sequence": "no-such-series"}),
    ("nul in series", {**OK, "sequence": "feel\x00better"}),
    ("sql in series", {**OK, "sequence": "x' OR '1'='1"}),
    ("surrogate in series", {**OK, "sequence": "\udfff"}),
    ("very long series", {**OK, "sequence": "a" * 5000}),
]
BAD_ZONES: list[tuple[str, dict[str, object]]] = [
    ("unknown timezone", {**OK, "timezone": "Mars/Olympus_Mons"}),
    ("path as timezone", {**OK, "timezone": "../../etc/passwd"}),
    ("absolute path as timezone", {**OK, "timezone": "/etc/localtime"}),
    ("nul in timezone", {**OK, "timezone": "Europe/Berlin\x00"}),
]
"""Refused by the API; the form, whose field a script fills, takes the default instead."""
JSON_ONLY: list[tuple[str, object]] = [
    ("lone surrogate in name", {**OK, "first_name": "A\ud800B"}),
    ("number as email", {"email": 5}),
    ("list as email", {"email": ["ana@example.com"]}),
    ("object as email", {"email": {"address": "ana@example.com"}}),
    ("null email", {"email": None}),
    ("true as name", {**OK, "first_name": True}),
    ("a list body", ["ana@example.com"]),
    ("a string body", "ana@example.com"),
    ("a number body", 42),
    ("null body", None),
]


def nothing_happened(system: System) -> None:
    system.drain()
    with transaction(system.sessions) as session:
        for model in (Subscriber, ConsentEvent, ConsentText, Delivery):
            assert session.scalar(sa.select(sa.func.count()).select_from(model)) == 0, model
    assert system.smtp.received == []


def test_hostile_form_posts_are_refused_cleanly(
    unlimited_client: FlaskClient, system: System
) -> None:
    assert len(HOSTILE) + len(JSON_ONLY) >= 40
    for name, form in HOSTILE:
        body = urlencode(form, encoding="utf-8", errors="surrogatepass")
        response = unlimited_client.post(
            "/subscribe", data=body, content_type="application/x-www-form-urlencoded"
        )
        assert response.status_code in (400, 404), name
        assert "Sorry" in response.get_data(as_text=True), name
    nothing_happened(system)


def test_hostile_timezones_on_the_form_are_replaced_by_the_default(
    unlimited_client: FlaskClient, system: System
) -> None:
    for n, (name, form) in enumerate(BAD_ZONES):
        body = urlencode({**form, "email": f"zone{n}@example.com"})
        response = unlimited_client.post(
            "/subscribe", data=body, content_type="application/x-www-form-urlencoded"
        )
        assert response.status_code == 303, name
    system.drain()
    with transaction(system.sessions) as session:
        zones = session.scalars(sa.select(Subscriber.timezone)).all()
    assert zones == [system.settings.default_timezone] * len(BAD_ZONES)


def test_hostile_json_is_refused_cleanly(unlimited_client: FlaskClient, system: System) -> None:
    for name, body in [*HOSTILE, *BAD_ZONES, *JSON_ONLY]:
        response = unlimited_client.post(
            "/api/v1/subscribers",
            data=json.dumps(body),
            content_type="application/json",
        )
        assert response.status_code in (400, 404), name
        assert response.get_json()["error"], name
    nothing_happened(system)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("{", "application/json"),
        ('{"email": "a@example.com"', "application/json"),
        ("\xff\xfe", "application/json"),
        ("email=%ZZ", "application/x-www-form-urlencoded"),
        ("x" * 70_000, "application/json"),
    ],
)
def test_broken_bodies_are_refused_cleanly(
    unlimited_client: FlaskClient, system: System, body: str, content_type: str
) -> None:
    for path in ("/subscribe", "/api/v1/subscribers"):
        response = unlimited_client.post(path, data=body, content_type=content_type)
        assert 400 <= response.status_code < 500, (path, body[:20])
    nothing_happened(system)


def test_odd_paths_are_not_found_not_errors(unlimited_client: FlaskClient) -> None:
    for path in ("/s/%00", "/s/..%2F..", "/s/" + "a" * 300, "/confirm/%00", "/unsubscribe/%ff"):
        assert unlimited_client.get(path).status_code in (400, 404), path

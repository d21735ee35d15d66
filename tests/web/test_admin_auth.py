"""Logging into the admin and out of it: throttling, sessions and where a login leads
(standards SEC-16, SEC-17)."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from drip.admin_sessions import LIFETIME
from drip.admins import create_admin, set_password
from drip.db import transaction
from drip.models import Admin, AdminSession
from tests.helpers import System
from tests.web.conftest import PASSWORD, csrf_token, log_in, post

WRONG = "wrong" * 3
sqlite_only = pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)


def without_token(page: str) -> str:
    """The page with its CSRF token (signed with a timestamp, so it changes) blanked."""
    return re.sub(r'name="csrf_token" value="[^"]+"', 'name="csrf_token"', page)


@sqlite_only  # compares two answers
def test_login_fails_the_same_way_for_a_wrong_password_and_an_unknown_account(
    client: FlaskClient, writer: str
) -> None:
    wrong = client.post(
        "/admin/login",
        data={"email": writer, "password": "nope" * 4, "csrf_token": csrf_token(client)},
    )
    unknown = client.post(
        "/admin/login",
        data={
            "email": "nobody@example.com",
            "password": "nope" * 4,
            "csrf_token": csrf_token(client),
        },
    )
    assert wrong.status_code == unknown.status_code == 401
    assert without_token(wrong.get_data(as_text=True)) == without_token(
        unknown.get_data(as_text=True)
    )
    assert client.get("/admin/").status_code == 302


@sqlite_only  # cookie flags only
def test_logging_in_sets_safe_cookies_and_logging_out_ends_the_session(
    client: FlaskClient, writer: str
) -> None:
    token = csrf_token(client)
    response = client.post(
        "/admin/login", data={"email": writer, "password": PASSWORD, "csrf_token": token}
    )
    session_cookie, device_cookie = sorted(
        response.headers.getlist("Set-Cookie"), key=lambda c: not c.startswith("session=")
    )
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie
    assert "Secure" in session_cookie
    assert "HttpOnly" in device_cookie and "SameSite=Strict" in device_cookie
    assert "Secure" in device_cookie and "Path=/admin/login" in device_cookie
    assert client.get("/admin/").status_code == 200
    assert post(client, "/admin/logout").status_code == 302
    assert client.get("/admin/").status_code == 302


@sqlite_only  # cookies and one row
def test_a_copy_of_the_session_cookie_is_useless_once_its_admin_logged_out(
    app: Flask, admin: FlaskClient
) -> None:
    """Logging out ends the session on the server, not only in the browser that asked:
    a cookie copied before (from a shared machine, a proxy's log) no longer logs in."""
    cookie = admin.get_cookie("session")
    assert cookie is not None
    copy = app.test_client()
    copy.set_cookie("session", cookie.value)
    assert copy.get("/admin/").status_code == 200
    assert post(admin, "/admin/logout").status_code == 302
    assert copy.get("/admin/").status_code == 302


def test_a_session_ends_eight_hours_after_its_login_however_busy(
    admin: FlaskClient, system: System
) -> None:
    """Every request renews the cookie (the idle timeout slides with use), so a session
    in steady use, or a stolen cookie kept warm, must still end 8 hours after its
    login (SEC-17)."""

    def started_earlier(by: timedelta) -> None:
        with transaction(system.sessions) as session:
            for started in session.scalars(sa.select(AdminSession)):
                started.started_at -= by

    started_earlier(LIFETIME - timedelta(minutes=1))
    assert admin.get("/admin/").status_code == 200
    started_earlier(timedelta(minutes=2))
    assert admin.get("/admin/").status_code == 302


def test_setting_a_password_ends_every_session_made_with_the_old_one(
    app: Flask, system: System, admin: FlaskClient, writer: str
) -> None:
    """`drip admin set-password` is what an admin runs when a password may have leaked:
    a session someone opened with it must not last its remaining 8 hours."""
    other = app.test_client()
    assert log_in(other) == 302
    assert admin.get("/admin/").status_code == other.get("/admin/").status_code == 200
    with transaction(system.sessions) as session:
        set_password(session, writer, "a brand new passphrase")
    assert admin.get("/admin/").status_code == other.get("/admin/").status_code == 302
    fresh = app.test_client()
    assert log_in(fresh, writer, PASSWORD) == 401
    assert log_in(fresh, writer, "a brand new passphrase") == 302
    assert fresh.get("/admin/").status_code == 200


def test_an_admin_at_an_international_domain_logs_in_spelled_either_way(
    app: Flask, system: System
) -> None:
    """The account is stored in punycode (drip.signup.normalise_email); a login or a new
    password typed with the Unicode spelling must find it all the same."""
    with transaction(system.sessions) as session:
        create_admin(session, "Writer@Bücher.example", PASSWORD, now=system.clock.now())
        set_password(session, "writer@BÜCHER.example", "a brand new passphrase")
    for spelling in ("writer@bücher.example", "WRITER@xn--bcher-kva.example"):
        assert log_in(app.test_client(), spelling, "a brand new passphrase") == 302, spelling


@sqlite_only  # counted in Redis
def test_login_is_rate_limited_per_ip(app: Flask, writer: str) -> None:
    """Standards SEC-16: the 11th failure from one IP in 15 minutes gets 429, whichever
    accounts it tried; another IP still logs in."""
    client = app.test_client()
    codes = [log_in(client, f"guess{n}@example.com", WRONG, ip="10.2.0.1") for n in range(11)]
    assert codes == [401] * 10 + [429]
    assert log_in(client, writer, PASSWORD, ip="10.2.0.1") == 429
    assert log_in(app.test_client(), writer, PASSWORD, ip="10.2.0.2") == 302


@pytest.mark.parametrize("database_kind", ["postgresql"], indirect=True)  # SQLite takes NUL
def test_a_login_to_an_address_with_a_nul_fails_and_counts_as_any_other(
    app: Flask, writer: str
) -> None:
    """PostgreSQL refuses a NUL even in a query: such a login answered 400, "cannot be
    stored", unlike every other failure (SEC-16), and went uncounted."""
    client = app.test_client()
    emails = ["writer\x00@example.com", "nul\x00"] * 5 + [writer]
    codes = [log_in(client, email, WRONG, ip="10.3.0.1") for email in emails]
    assert codes == [401] * 10 + [429]
    known = app.test_client()
    assert log_in(known, writer, PASSWORD, ip="10.3.0.2") == 302
    assert log_in(known, "writer\x00@example.com", WRONG, ip="10.3.0.2") == 401, "its browser"


@sqlite_only  # counted in Redis
def test_login_is_rate_limited_per_account_for_a_browser_never_logged_in_with(
    app: Flask, writer: str
) -> None:
    codes = [log_in(app.test_client(), writer, WRONG, ip=f"10.1.0.{n}") for n in range(11)]
    assert codes == [401] * 10 + [429]
    assert log_in(app.test_client(), writer, PASSWORD, ip="10.1.1.1") == 429


@sqlite_only  # counted in Redis
def test_only_failed_logins_count_towards_the_limits(app: Flask, writer: str) -> None:
    """An admin who logs in all day, from one place or from many, is never refused."""
    same_place = app.test_client()
    for n in range(11):
        assert log_in(app.test_client(), writer, PASSWORD, ip=f"10.3.0.{n}") == 302
        assert log_in(same_place, writer, PASSWORD, ip="10.3.1.1") == 302
    codes = [log_in(same_place, writer, WRONG, ip="10.3.1.1") for _ in range(11)]
    assert codes == [401] * 10 + [429]


@sqlite_only  # counted in Redis
def test_guesses_from_many_ips_cannot_lock_the_admin_out_of_a_browser_they_logged_in_with(
    app: Flask, writer: str
) -> None:
    """The per-account limit holds back only browsers that have not logged into the
    account before (OWASP's device cookies), so an attacker who fills it keeps out
    nobody but new browsers."""
    own = app.test_client()
    assert log_in(own, writer, PASSWORD, ip="10.4.0.1") == 302
    assert post(own, "/admin/logout").status_code == 302
    guesses = [log_in(app.test_client(), writer, WRONG, ip=f"10.4.1.{n}") for n in range(11)]
    assert guesses == [401] * 10 + [429]
    assert log_in(own, writer, PASSWORD, ip="10.4.0.2") == 302


@sqlite_only  # counted in Redis
def test_a_browser_logged_in_with_before_has_ten_wrong_passwords_of_its_own(
    app: Flask, writer: str
) -> None:
    """Its cookie, copied, is no way round the limits: it gets its own counter in place
    of the account's, as a browser's failures in 15 minutes, from whatever IPs."""
    own = app.test_client()
    assert log_in(own, writer, PASSWORD, ip="10.5.0.1") == 302
    assert post(own, "/admin/logout").status_code == 302
    codes = [log_in(own, writer, WRONG, ip=f"10.5.1.{n}") for n in range(11)]
    assert codes == [401] * 10 + [429]
    assert log_in(own, writer, PASSWORD, ip="10.5.2.1") == 429
    assert log_in(app.test_client(), writer, PASSWORD, ip="10.5.2.1") == 302


@sqlite_only  # counted in Redis
def test_a_browser_trusted_for_one_admin_is_not_trusted_for_another(
    app: Flask, system: System, writer: str
) -> None:
    with transaction(system.sessions) as session:
        create_admin(session, "editor@example.com", PASSWORD, now=system.clock.now())
    browser = app.test_client()
    assert log_in(browser, writer, PASSWORD, ip="10.6.0.1") == 302
    assert post(browser, "/admin/logout").status_code == 302
    codes = [log_in(browser, "editor@example.com", WRONG, ip=f"10.6.1.{n}") for n in range(11)]
    assert codes == [401] * 10 + [429]


@pytest.mark.argon2_defaults
def test_an_admin_password_is_stored_as_an_argon2id_hash(system: System, writer: str) -> None:
    """Standards SEC-16: Argon2id with argon2-cffi's defaults (64 MiB, 3 passes, 4 lanes)."""
    with transaction(system.sessions) as session:
        stored = session.scalars(sa.select(Admin.password_hash)).one()
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert PASSWORD not in stored


def log_in_to(client: FlaskClient, writer: str, target: str) -> TestResponse:
    """Log in with the right password, asking to be sent on to `target`."""
    return client.post(
        "/admin/login",
        data={
            "email": writer,
            "password": PASSWORD,
            "csrf_token": csrf_token(client),
            "next": target,
        },
    )


@sqlite_only  # redirects only
@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/admin/",
        "/admin/\r\nSet-Cookie: a=b",
        "/admin/\x00",
        "/admin/ x",
        "/admin\\evil.example",
        "/administrator",
        "javascript:alert(1)",
    ],
)
def test_a_next_that_is_no_plain_admin_path_leads_to_the_dashboard(
    client: FlaskClient, writer: str, target: str
) -> None:
    response = log_in_to(client, writer, target)
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"


@sqlite_only  # redirects only
def test_logging_in_leads_back_to_the_page_asked_for_with_its_query(
    client: FlaskClient, writer: str
) -> None:
    """A search or a diff is in the query string: the login must not drop it."""
    asked = "/admin/subscribers/?q=zed&status=active"
    sent_to = client.get(asked).headers["Location"]
    assert urlsplit(sent_to).path == "/admin/login"
    form = client.get(sent_to).get_data(as_text=True)
    found = re.search(r'name="next" value="([^"]*)"', form)
    assert found
    response = log_in_to(client, writer, html.unescape(found.group(1)))
    assert response.headers["Location"] == asked

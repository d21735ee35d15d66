"""Production delivery: DKIM signatures that cover the one-click headers, Feedback-ID,
health endpoints, and settings that refuse laptop defaults in production."""

from __future__ import annotations

import base64
import dataclasses
import email.policy
import re
from pathlib import Path

import dkim
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from drip.cli import main
from drip.dkim_signing import MIN_BITS, SIGNED_HEADERS, DkimSigner, generate_key, oversigned
from drip.errors import ConfigError
from drip.sending import send_delivery
from drip.settings import load_settings
from drip.wiring import make_signer
from tests.helpers import System, is_private
from tests.test_settings import PRODUCTION

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
    record = "".join(published_strings(result.output))
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


def published_strings(output: str) -> list[str]:
    """The quoted strings of the TXT record `drip dkim keygen` printed."""
    (line,) = [line for line in output.splitlines() if " IN TXT " in line]
    return re.findall(r'"([^"]*)"', line.partition(" IN TXT ")[2])


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


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # message bytes only
@pytest.mark.parametrize(
    "added",
    [
        b"List-Unsubscribe: <https://evil.example/u>",
        b"From: Calm Back <hello@evil.example>",
        b"Feedback-ID: 1:other:step:evil",
    ],
)
def test_a_header_added_to_a_signed_lesson_breaks_its_signature(
    system: System, added: bytes
) -> None:
    """Each signed header is named once more than the message holds it (oversigning,
    RFC 6376 8.15): a second List-Unsubscribe, From or Feedback-ID added above ours,
    which is the one most readers show, no longer passes as drip's. dkimpy's verifier
    checks an extra From on its own; others, and every other header, rely on h=."""
    pem, public = generate_key(1024)
    signer = DkimSigner("s1", "drip.example.com", pem)
    system.join("ana@example.com")
    _, welcome = [r.raw for r in system.smtp.received]
    signed = signer.sign(welcome)
    record = f"v=DKIM1; k=rsa; p={public}"
    assert dkim.verify(signed, dnsfunc=dns(record))
    names = signed_header_names(signed)
    for name in SIGNED_HEADERS:
        assert names.count(name) == 2, name

    assert not dkim.verify(added + b"\r\n" + signed, dnsfunc=dns(record))


def test_each_signed_header_is_named_once_more_than_the_message_holds_it() -> None:
    """A folded line continues its field; a name the message lacks is still named once."""
    raw = (
        b"From: a@example.com\r\nTo: b@example.com,\r\n c@example.com\r\n"
        b"TO: d@example.com\r\nReceived: x\r\nSubject: s\r\n\r\nTo: body"
    )
    names = oversigned(raw)
    assert names.count(b"from") == 2
    assert names.count(b"to") == 3
    assert names.count(b"feedback-id") == 1
    assert b"received" not in names and b" c@example.com" not in names


def signed_header_names(raw: bytes) -> list[bytes]:
    """The header names in the h= tag of the message's DKIM-Signature."""
    value = email.message_from_bytes(raw, policy=email.policy.compat32)["DKIM-Signature"]
    tags = dict(tag.strip().split("=", 1) for tag in re.sub(r"\s+", "", value).split(";") if tag)
    return [name.lower().encode() for name in tags["h"].split(":")]


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


def test_keygen_prints_the_record_in_strings_a_dns_server_accepts(tmp_path: Path) -> None:
    """A 2048-bit key is about 410 characters; BIND and many DNS forms refuse a TXT
    character-string over 255 (RFC 1035 3.3), so the record comes in several strings."""
    keys = tmp_path / "keys"
    result = CliRunner().invoke(
        main,
        ["dkim", "keygen", "example.com", "s1", "--out", str(keys)],
        env={"DRIP_INSTANCE": str(tmp_path / "instance")},
    )
    assert result.exit_code == 0, result.output
    strings = published_strings(result.output)
    assert strings[0] == "v=DKIM1; k=rsa; p="
    assert len(strings) >= 3 and all(len(part) <= 255 for part in strings)
    assert 'example.com. IN TXT "v=DKIM1; k=rsa; p=" "' in result.output
    assert "join the strings" in result.output, "some DNS forms want one string"
    key = serialization.load_pem_private_key((keys / "s1.example.com.pem").read_bytes(), None)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert "".join(strings) == "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


@pytest.mark.parametrize(
    ("domain", "selector", "refused"),
    [
        ("bad domain", "x y", "DOMAIN"),
        ("example.com", "x y", "SELECTOR"),
        ("example.com", "../../evil", "SELECTOR"),
        ("../../evil", "s1", "DOMAIN"),
        ("example..com", "s1", "DOMAIN"),
        ("example.com", "s1-", "SELECTOR"),
        ("example.com", "s1.", "SELECTOR"),
        ("example.com", "s_1", "SELECTOR"),
        ("example.com", "", "SELECTOR"),
        ("example.com", ".".join(["s" * 60] * 4), "SELECTOR"),
    ],
)
def test_keygen_refuses_a_name_dns_cannot_hold_and_writes_nothing(
    tmp_path: Path, domain: str, selector: str, refused: str
) -> None:
    instance = tmp_path / "instance"
    result = CliRunner().invoke(
        main, ["dkim", "keygen", domain, selector], env={"DRIP_INSTANCE": str(instance)}
    )
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{refused}'" in result.output
    assert list(tmp_path.rglob("*")) == []


@pytest.mark.usefixtures("usual_umask")
def test_keygen_writes_the_key_for_its_owner_alone_named_by_the_punycode_domain(
    tmp_path: Path,
) -> None:
    result = CliRunner().invoke(
        main,
        ["dkim", "keygen", "Bücher.Example", "s1"],
        env={"DRIP_INSTANCE": str(tmp_path)},
    )
    assert result.exit_code == 0, result.output
    key = tmp_path / "dkim" / "s1.xn--bcher-kva.example.pem"
    assert is_private(key) and is_private(key.parent)
    assert 's1._domainkey.xn--bcher-kva.example. IN TXT "v=DKIM1' in result.output


def test_keygen_works_with_the_environment_that_names_the_key_it_writes(tmp_path: Path) -> None:
    """docs/deploy.md's environment sets DRIP_DKIM_KEY to the file keygen is about to
    write; keygen loaded the settings for its default folder, and they refused a key
    file that was not there yet."""
    key = tmp_path / "instance" / "dkim" / "drip2026.example.com.pem"
    env = {
        "DRIP_INSTANCE": str(tmp_path / "instance"),
        "DRIP_DKIM_DOMAIN": "example.com",
        "DRIP_DKIM_SELECTOR": "drip2026",
        "DRIP_DKIM_KEY": str(key),
    }
    result = CliRunner().invoke(main, ["dkim", "keygen", "example.com", "drip2026"], env=env)
    assert result.exit_code == 0, result.output
    assert load_settings(env).dkim_key == key


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DRIP_DKIM_SELECTOR", "x y"),
        ("DRIP_DKIM_SELECTOR", "../../evil"),
        ("DRIP_DKIM_DOMAIN", "bad domain"),
        ("DRIP_DKIM_DOMAIN", "example.com/x"),
    ],
)
def test_dkim_settings_refuse_a_name_dns_cannot_hold(tmp_path: Path, name: str, value: str) -> None:
    key = tmp_path / "s1.example.com.pem"
    key.write_bytes(generate_key(MIN_BITS)[0])
    env = {
        "DRIP_INSTANCE": str(tmp_path),
        "DRIP_DKIM_SELECTOR": "s1",
        "DRIP_DKIM_DOMAIN": "example.com",
        "DRIP_DKIM_KEY": str(key),
    }
    with pytest.raises(ConfigError, match=f"^{name}: "):
        load_settings({**env, name: value})
    assert load_settings({**env, "DRIP_DKIM_DOMAIN": "Example.COM."}).dkim_domain == "example.com"


def test_production_refuses_the_laptop_defaults(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({"DRIP_INSTANCE": str(tmp_path), "DRIP_ENV": "production"})
    for name in (
        "DRIP_REDIS_URL",
        "DRIP_MAIL_URL",
        "DRIP_DATABASE_URL",
        "DRIP_SECRET_KEY",
        "DRIP_BASE_URL",
        "DRIP_FROM",
    ):
        assert name in str(refused.value)
    settings = load_settings({"DRIP_INSTANCE": str(tmp_path), **PRODUCTION})
    assert settings.production


def test_a_dkim_key_under_1024_bits_is_refused_and_1024_is_the_floor(tmp_path: Path) -> None:
    weak = tmp_path / "weak.pem"
    weak.write_bytes(WEAK_KEY)
    with pytest.raises(ConfigError, match=f"RSA key of {MIN_BITS}\\+ bits"):
        DkimSigner.from_file("s1", "drip.example.com", weak)
    floor = tmp_path / "floor.pem"
    floor.write_bytes(generate_key(MIN_BITS)[0])
    assert DkimSigner.from_file("s1", "drip.example.com", floor).domain == "drip.example.com"

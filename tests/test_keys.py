"""Key rotation (standards SEC-11): a link signed before a rotation keeps working until its
key is retired, retiring waits 60 days after the key stopped signing, and the keyed
hashes stored in the database never change with a rotation."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from drip.cli import main
from drip.clock import FileClock, FixedClock
from drip.errors import BadToken, ConfigError
from drip.keys import KeyStillNeeded, note_stopped_signing, retired, rotated
from drip.privacy import email_hash
from drip.settings import load_settings
from drip.tokens import UNSUBSCRIBE, Tokens
from drip.web import create_app
from tests.helpers import System

A, B, C = "a" * 40, "b" * 40, "c" * 40
START = datetime(2026, 1, 5, 9, tzinfo=UTC)


def test_a_link_signed_with_the_old_key_verifies_after_rotation_until_the_key_is_dropped() -> None:
    clock = FixedClock(START)
    token = Tokens([A], clock).make(UNSUBSCRIBE, [7])
    assert Tokens([A, B], clock).read(UNSUBSCRIBE, token) == [7]
    with pytest.raises(BadToken):
        Tokens([B], clock).read(UNSUBSCRIBE, token)


def test_new_links_are_signed_with_the_newest_key() -> None:
    clock = FixedClock(START)
    token = Tokens([A, B], clock).make(UNSUBSCRIBE, [7])
    assert Tokens([B], clock).read(UNSUBSCRIBE, token) == [7]
    with pytest.raises(BadToken):
        Tokens([A], clock).read(UNSUBSCRIBE, token)


def test_an_admin_session_survives_a_rotation(system: System) -> None:
    before = create_app(
        dataclasses.replace(system.settings, secret_keys=(A,)), enqueue=print, signups=print
    )
    after = create_app(
        dataclasses.replace(system.settings, secret_keys=(A, B)), enqueue=print, signups=print
    )
    cookie = before.session_interface.get_signing_serializer(before).dumps({"admin": 1})  # type: ignore[attr-defined]
    assert after.session_interface.get_signing_serializer(after).loads(cookie) == {"admin": 1}  # type: ignore[attr-defined]
    for app in (before, after):
        app.extensions["drip"].engine.dispose()


def test_the_rotation_helper_refuses_to_drop_a_key_younger_than_60_days(tmp_path: Path) -> None:
    keys = rotated([A])
    assert keys[0] == A and len(keys) == 2 and len(keys[1]) >= 32
    note_stopped_signing(tmp_path, keys, START)
    with pytest.raises(KeyStillNeeded, match="on or after 2026-03-06"):
        retired(tmp_path, keys, START + timedelta(days=59, hours=23))
    assert retired(tmp_path, keys, START + timedelta(days=60)) == keys[1:]


def test_a_key_with_no_record_of_when_it_stopped_signing_starts_its_60_days_now(
    tmp_path: Path,
) -> None:
    with pytest.raises(KeyStillNeeded):
        retired(tmp_path, [A, B], START + timedelta(days=400))
    with pytest.raises(KeyStillNeeded):
        retired(tmp_path, [A, B], START + timedelta(days=459))
    assert retired(tmp_path, [A, B], START + timedelta(days=460)) == (B,)


def test_keyed_hashes_stay_the_same_through_a_rotation_and_a_retirement(tmp_path: Path) -> None:
    def settings(**env: str):  # type: ignore[no-untyped-def]
        return load_settings({"DRIP_INSTANCE": str(tmp_path), **env})

    one = settings(DRIP_SECRET_KEY=A)
    two = settings(DRIP_SECRET_KEYS=f"{A},{B}")
    three = settings(DRIP_SECRET_KEYS=f"{B},{C}", DRIP_HASH_KEY=A)
    assert (one.secret_keys, two.secret_keys, three.secret_keys) == ((A,), (A, B), (B, C))
    hashes = {email_hash(s.secret_key, "ana@example.com") for s in (one, two, three)}
    assert len(hashes) == 1


def test_the_cli_prints_the_rotated_keys_and_refuses_an_early_retirement(tmp_path: Path) -> None:
    clock = FileClock(tmp_path / "now")
    clock.set(START)
    env = {"DRIP_INSTANCE": str(tmp_path), "DRIP_CLOCK": f"file:{clock.path}"}
    rotate = CliRunner().invoke(main, ["keys", "rotate"], env={**env, "DRIP_SECRET_KEY": A})
    assert rotate.exit_code == 0, rotate.output
    lines = dict(line.split("=", 1) for line in rotate.output.splitlines())
    assert lines["DRIP_SECRET_KEYS"].startswith(f"{A},") and lines["DRIP_HASH_KEY"] == A
    rotated_env = {**env, **lines}
    early = CliRunner().invoke(main, ["keys", "retire"], env=rotated_env)
    assert early.exit_code == 1 and "retire it on or after 2026-03-06" in early.output
    clock.advance(timedelta(days=60))
    late = CliRunner().invoke(main, ["keys", "retire"], env=rotated_env)
    assert late.exit_code == 0, late.output
    new_key = lines["DRIP_SECRET_KEYS"].split(",")[1]
    assert late.output.splitlines() == [f"DRIP_SECRET_KEYS={new_key}", f"DRIP_HASH_KEY={A}"]


def test_two_key_settings_are_refused_with_a_clear_message(tmp_path: Path) -> None:
    base = {"DRIP_INSTANCE": str(tmp_path)}
    with pytest.raises(ConfigError, match="not both"):
        load_settings({**base, "DRIP_SECRET_KEY": A, "DRIP_SECRET_KEYS": f"{A},{B}"})
    with pytest.raises(ConfigError, match="DRIP_SECRET_KEYS"):
        load_settings({**base, "DRIP_SECRET_KEYS": f"{A},short"})
    with pytest.raises(ConfigError, match="twice"):
        load_settings({**base, "DRIP_SECRET_KEYS": f"{A},{A}"})

"""The local Maildir outbox: found from DRIP_MAIL_URL, and an address's mail deleted from
it on erasure, whatever the case or display name its To was written with."""

from __future__ import annotations

import dataclasses
import mailbox
from pathlib import Path

import pytest

from drip.outbox import addressed_to, delete_addressed_to, location
from drip.settings import Settings
from drip.transports import MaildirTransport
from tests.helpers import System


def mail(to: str) -> bytes:
    return f"From: drip@example.com\r\nTo: {to}\r\nSubject: hi\r\n\r\nhello\r\n".encode()


@pytest.fixture
def settings(system: System) -> Settings:
    return system.settings


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # settings only
def test_the_outbox_is_where_a_maildir_url_points_and_none_over_smtp(
    settings: Settings, tmp_path: Path
) -> None:
    assert location(dataclasses.replace(settings, mail_url="maildir:")) == settings.outbox_dir
    assert location(dataclasses.replace(settings, mail_url=f"maildir:{tmp_path}")) == tmp_path
    assert location(dataclasses.replace(settings, mail_url="smtp://relay.example")) is None


def test_only_the_erased_addresss_mail_is_deleted(tmp_path: Path) -> None:
    outbox = MaildirTransport(tmp_path / "outbox")
    for to in ("Ana Tester <ana@example.com>", "ANA@example.com", "bob@example.com"):
        outbox.send(mail(to), mail_from="drip@example.com", rcpt_to=to)
    assert len(addressed_to(tmp_path / "outbox", "ana@example.com")) == 2
    assert delete_addressed_to(tmp_path / "outbox", "ana@example.com") == 2
    left = [message["To"] for message in mailbox.Maildir(tmp_path / "outbox")]
    assert left == ["bob@example.com"]
    assert delete_addressed_to(tmp_path / "outbox", "ana@example.com") == 0


def test_an_outbox_never_written_to_holds_nothing_to_delete(tmp_path: Path) -> None:
    assert addressed_to(tmp_path / "none", "ana@example.com") == []
    assert delete_addressed_to(tmp_path / "none", "ana@example.com") == 0
    assert not (tmp_path / "none").exists()

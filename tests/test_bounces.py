"""Bounce and complaint intake: DSN and ARF reports from a Maildir, via `drip bounces`."""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from drip.bounces import parse
from drip.cli import main
from drip.db import transaction
from drip.models import Delivery, SubscriberStatus
from tests.helpers import System, drip_env

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str, message_id: str = "<none@example.com>") -> bytes:
    text = (FIXTURES / name).read_text().replace("{message_id}", message_id)
    return text.replace("\n", "\r\n").encode()


def welcome_id(system: System, address: str) -> str:
    with transaction(system.sessions) as session:
        subscriber = system.subscriber(address, session=session)
        return (
            session.scalars(
                sa.select(Delivery.message_id)
                .where(Delivery.subscriber_id == subscriber.id)
                .order_by(Delivery.id.desc())
            ).first()
            or ""
        )


@pytest.fixture
def readers(system: System) -> System:
    for address in ("ana@example.com", "bob@example.com", "cat@example.com"):
        system.signup(address)
    system.drain()
    for address in ("ana@example.com", "bob@example.com", "cat@example.com"):
        system.confirm(address)
    system.drain()
    return system


def test_reports_are_read_for_their_kind_recipient_and_original_message() -> None:
    (hard,) = parse(fixture("dsn_hard.eml", "<d1.x@drip.example.com>"))
    assert (hard.kind, hard.recipient, hard.message_id) == (
        "hard",
        "ana@example.com",
        "<d1.x@drip.example.com>",
    )
    (soft,) = parse(fixture("dsn_delayed.eml"))
    assert (soft.kind, soft.recipient) == ("soft", "bob@example.com")
    (complaint,) = parse(fixture("arf_abuse.eml", "<d9.y@drip.example.com>"))
    assert (complaint.kind, complaint.recipient, complaint.message_id) == (
        "complaint",
        "cat@example.com",
        "<d9.y@drip.example.com>",
    )
    assert parse(b"Subject: hello\r\n\r\njust a reply") == []
    assert (
        parse(
            b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x--"
        )
        == []
    )


def test_drip_bounces_process_stops_hard_bounces_and_complainers(
    readers: System, tmp_path: Path
) -> None:
    system = readers
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    box.add(fixture("dsn_hard.eml", welcome_id(system, "ana@example.com")))
    box.add(fixture("dsn_delayed.eml"))
    box.add(fixture("arf_abuse.eml", welcome_id(system, "cat@example.com")))
    box.add(b"Subject: out of office\r\n\r\nI am away.")
    env = drip_env(
        tmp_path, system.settings.database_url, system.broker.client.socket_file, system.smtp.port
    )
    result = CliRunner().invoke(main, ["bounces", "process", str(tmp_path / "bounces")], env=env)
    assert result.exit_code == 0, result.output
    assert "1 hard bounces, 1 complaints, 1 soft bounces (0 stopped" in result.output
    assert "1 not a report" in result.output
    assert system.subscriber("ana@example.com").status == SubscriberStatus.BOUNCED
    assert system.subscriber("bob@example.com").status == SubscriberStatus.ACTIVE
    assert system.subscriber("cat@example.com").status == SubscriberStatus.UNSUBSCRIBED
    for address in ("ana@example.com", "cat@example.com"):
        assert system.signup(address) is None, "a barred address is never mailed again"

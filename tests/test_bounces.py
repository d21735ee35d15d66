"""Bounce and complaint intake: DSN and ARF reports from a Maildir, via `drip bounces`."""

from __future__ import annotations

import mailbox
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import NoReturn

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from drip import verp
from drip.bounces import HELD_FOR, Tally, apply, process_maildir
from drip.cli import main
from drip.complaints import day_rate
from drip.db import SessionFactory, transaction
from drip.models import Delivery, Sequence, Subscriber, SubscriberStatus
from drip.privacy import erase, is_suppressed
from drip.reports import Report, parse
from tests.helpers import (
    System,
    commits_conflicting,
    drip_env,
    free_port,
    nested_parts,
    wait_until,
)
from tests.test_intake import ANA, Racer, assert_erased, erasing, lock_waits

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(
    name: str,
    message_id: str = "<none@example.com>",
    list_unsubscribe: str = "<https://drip.example.com/unsubscribe/none>",
    return_path: str = "hello@drip.example.com",
) -> bytes:
    text = (FIXTURES / name).read_text().replace("{message_id}", message_id)
    text = text.replace("{list_unsubscribe}", list_unsubscribe)
    text = text.replace("{return_path}", return_path)
    return text.replace("\n", "\r\n").encode()


def dated(raw: bytes, when: datetime) -> bytes:
    """A report with a Date header, as every real one has (the fixture has none)."""
    return f"Date: {format_datetime(when)}\r\n".encode() + raw


def bounce_with_unreadable_copy() -> bytes:
    """An Exchange NDR whose attached copy of the original gives a Date too large for a C
    integer: Python raises OverflowError when the copy's headers are read, and anyone can
    mail a bounce."""
    return fixture("ndr_exchange_2000.eml").replace(
        b"Date: Mon, 26 Oct 2026 08:01:10 +0000",
        b"Date: Mon, 26 Oct 2026 08:01:10 +99999999999999999999",
    )


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
    assert hard.dated == datetime(2026, 10, 26, 8, 1, 10, tzinfo=UTC), "its Arrival-Date"
    (soft,) = parse(fixture("dsn_delayed.eml"))
    assert (soft.kind, soft.recipient, soft.dated) == ("soft", "bob@example.com", None)
    (complaint,) = parse(fixture("arf_abuse.eml", "<d9.y@drip.example.com>"))
    assert (complaint.kind, complaint.recipient, complaint.message_id) == (
        "complaint",
        "cat@example.com",
        "<d9.y@drip.example.com>",
    )
    assert complaint.dated == datetime(2026, 10, 27, 8, 59, tzinfo=UTC)
    assert parse(b"Subject: hello\r\n\r\njust a reply") == []
    empty_report = (
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x--"
    )
    assert parse(empty_report) is None, "held"


def test_bounces_in_formats_of_their_own_are_read_by_flufl_bounce() -> None:
    """BNC-02's fallback: qmail's and older Exim's bounces have no DSN part, and name the
    failed address only in their text. A failure is hard, a delay soft, even where the
    detectors call an Exim warning a failure (it quotes the RCPT TO it was deferred at).
    The warning is dated by the date it gives of the original, the email it is about."""
    when = datetime(2026, 10, 26, 9, 0, tzinfo=UTC)
    sent = datetime(2026, 10, 26, 8, 1, 10, tzinfo=UTC)
    read = {
        name: [(r.kind, r.recipient, r.dated) for r in parse(dated(fixture(name), when))]
        for name in ("qmail_hard.eml", "exim_failed.eml", "exim_delayed.eml")
    }
    assert read == {
        "qmail_hard.eml": [("hard", "ana@example.com", when)],
        "exim_failed.eml": [("hard", "cat@example.com", when)],
        "exim_delayed.eml": [("soft", "bob@example.com", sent)],
    }
    plain_warning = b"".join(
        line
        for line in fixture("exim_delayed.eml").splitlines(keepends=True)
        if b"Delay reason" not in line and b"452 4.2.2" not in line
    ).replace(b"Warning: message 1vQx2b-0004Zm-2C delayed 24 hours", b"Mail delivery status")
    assert [(r.kind, r.recipient) for r in parse(plain_warning)] == [("soft", "bob@example.com")]


def test_a_failure_that_gives_no_permanent_code_is_soft() -> None:
    """Exim and qmail give up on an address after days of 4xx deferrals (here a full
    mailbox) with the same "permanent error" bounce as for an unknown user, and the
    detectors call both permanent; only a 5yz or 5.x.x code with no 4yz or 4.x.x beside
    it bars the address (BNC-02: 4.x.x is soft). Each address is judged by the words
    about it: Cat's 550 is hard next to Bob's retry timeout."""
    for name in ("exim_retry_timeout.eml", "qmail_queue_too_long.eml"):
        assert [(r.kind, r.recipient) for r in parse(fixture(name))] == [
            ("soft", "bob@example.com")
        ], name
    cat_unknown = fixture("exim_failed.eml")
    bob_timed_out = (
        b"  bob@example.com\r\n"
        b"    host mx.example.com [198.51.100.7]\r\n"
        b"    SMTP error from remote mail server after RCPT TO:<bob@example.com>:\r\n"
        b"    452 4.2.2 <bob@example.com>: Mailbox full\r\n"
        b"    retry timeout exceeded\r\n"
    )
    both = cat_unknown.replace(
        b"Recipients: cat@example.com", b"Recipients: cat@example.com, bob@example.com"
    ).replace(b"User unknown\r\n", b"User unknown\r\n" + bob_timed_out)
    assert [(r.kind, r.recipient) for r in parse(both)] == [
        ("soft", "bob@example.com"),
        ("hard", "cat@example.com"),
    ]
    diagnosis = cat_unknown.split(b"  cat@example.com\r\n")[1].split(b"\r\n\r\n")[0]
    unrouteable = cat_unknown.replace(diagnosis, b"    Unrouteable address")
    assert [(r.kind, r.recipient) for r in parse(unrouteable)] == [("soft", "cat@example.com")]


def test_an_exim_dsn_of_a_failure_after_4xx_deferrals_is_soft() -> None:
    """Exim's DSN part says "Action: failed" and "Status: 5.0.0" of every failure, here
    a mailbox full for five days; its Diagnostic-Code keeps the 452 4.2.2 reply, as
    BNC-02 counts 4.x.x soft."""
    (report,) = parse(fixture("exim_dsn_retry_timeout.eml", "<d5.0123456789@drip.example.com>"))
    assert (report.kind, report.recipient, report.message_id) == (
        "soft",
        "bob@example.com",
        "<d5.0123456789@drip.example.com>",
    )
    assert "failed 5.0.0 smtp; 452 4.2.2" in report.detail


def test_a_plain_text_bounce_names_its_email_by_the_copy_it_returns() -> None:
    """qmail and Exim return the original after their text: its Message-ID and
    List-Unsubscribe link tie the bounce to its email as a DSN's embedded headers do
    (BNC-04). Exim's delay warning returns no copy."""
    link = "<https://drip.example.com/unsubscribe/WzJd.a1-b_2>"
    for name in ("exim_retry_timeout.eml", "qmail_queue_too_long.eml"):
        (bounce,) = parse(fixture(name, "<d5.0123456789@drip.example.com>", link))
        assert (bounce.message_id, bounce.unsubscribe_token) == (
            "<d5.0123456789@drip.example.com>",
            "WzJd.a1-b_2",
        ), name
    (no_copy,) = parse(fixture("exim_delayed.eml"))
    assert (no_copy.message_id, no_copy.unsubscribe_token) == (None, None)


def test_a_bounce_a_person_forwards_is_soft_at_most() -> None:
    """A failure bars an address for good, so only a mail system's word counts as one: a
    bounce known by its subject alone may be someone forwarding another's bounce."""
    forwarded = fixture("qmail_hard.eml").replace(
        b"From: MAILER-DAEMON@mail.example.org", b"From: dana@example.org"
    )
    assert b"dana@example.org" in forwarded
    assert [(r.kind, r.recipient) for r in parse(forwarded)] == [("soft", "ana@example.com")]


def test_a_detector_that_fails_leaves_a_bounce_to_the_verp_rule_or_holds_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """One odd message must not stop `drip bounces process` for the rest. Without a VERP
    address it was counted as not a report and deleted, though it is plainly a bounce
    (from MAILER-DAEMON) naming someone; now it is held for a person to read."""

    def broken(_msg: object) -> NoReturn:
        raise TypeError("a detector's bug")

    monkeypatch.setattr("drip.plain_bounces.all_failures", broken)
    returned_to = verp.return_path("k" * 40, 7, "bounces.example.com")
    (report,) = parse(fixture("qmail_hard.eml", return_path=returned_to))
    assert (report.kind, report.recipient, report.envelope) == ("soft", "", (returned_to,))
    assert parse(fixture("qmail_hard.eml")) is None
    assert "bounce detectors failed (TypeError: a detector's bug)" in caplog.text


def test_drip_bounces_process_bars_addresses_a_plain_text_bounce_names(
    readers: System, tmp_path: Path
) -> None:
    """Without VERP (bounces come back to the From mailbox) a plain-text bounce is tied by
    the Message-ID of the copy it returns, else by the address the detectors find and the
    bounce's Date, as a DSN without a Message-ID."""
    system = readers
    welcomes = {who: sent_ids(system, f"{who}@example.com")[-1] for who in ("ana", "bob", "cat")}
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    for name, copy, who in (
        ("qmail_hard.eml", b"<d1.copy@drip.example.com>", "ana"),
        ("exim_failed.eml", b"<d3.copy@drip.example.com>", "cat"),
        ("exim_delayed.eml", b"", "bob"),
    ):
        raw = fixture(name).replace(copy, welcomes[who].encode()) if copy else fixture(name)
        box.add(dated(raw, system.clock.now()))

    summary = process(system, tmp_path)

    assert "2 hard bounces, 0 complaints, 1 soft bounces (0 stopped" in summary
    assert "0 not matched, 0 not a report" in summary
    assert "Running detector" not in summary, "flufl.bounce's tracing stays out of cron mail"
    for who, kind in (("ana", "hard"), ("bob", "soft"), ("cat", "hard")):
        assert bounces_of(system, f"{who}@example.com") == {welcomes[who]: kind}
    statuses = {who: status_of(system, who) for who in ("ana", "bob", "cat")}
    assert statuses == {
        "ana": SubscriberStatus.BOUNCED,
        "bob": SubscriberStatus.ACTIVE,
        "cat": SubscriberStatus.BOUNCED,
    }
    with transaction(system.sessions) as session:
        for who in ("ana", "cat"):
            assert is_suppressed(session, system.settings.secret_key, f"{who}@example.com")
    assert list(box.keys()) == []


def test_an_exchange_ndr_is_a_hard_bounce_that_bars_its_recipient(
    readers: System, tmp_path: Path
) -> None:
    """Standards BNC-02's Exchange fixture: Exchange Online puts its text for people in a
    multipart/alternative beside the delivery-status part, and reports an unknown
    recipient as 550 5.1.10 RESOLVER.ADR.RecipientNotFound (a three-digit detail)."""
    system = readers
    (hard,) = parse(fixture("ndr_exchange.eml", "<d1.x@drip.example.com>"))
    assert (hard.kind, hard.recipient, hard.message_id) == (
        "hard",
        "ana@example.com",
        "<d1.x@drip.example.com>",
    )
    assert hard.dated == datetime(2026, 10, 26, 8, 1, 12, tzinfo=UTC), "its Arrival-Date"
    assert "5.1.10 RESOLVER.ADR.RecipientNotFound" in hard.detail
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    box.add(fixture("ndr_exchange.eml", welcome_id(system, "ana@example.com")))
    assert "1 hard bounces, 0 complaints, 0 soft bounces" in process(system, tmp_path)
    assert system.subscriber("ana@example.com").status == SubscriberStatus.BOUNCED
    with transaction(system.sessions) as session:
        assert is_suppressed(session, system.settings.secret_key, "ana@example.com")
    assert system.subscriber("bob@example.com").status == SubscriberStatus.ACTIVE


def test_drip_bounces_process_stops_hard_bounces_and_complainers(
    readers: System, tmp_path: Path
) -> None:
    system = readers
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    box.add(fixture("dsn_hard.eml", welcome_id(system, "ana@example.com")))
    box.add(fixture("dsn_delayed.eml"))
    box.add(fixture("arf_abuse.eml", welcome_id(system, "cat@example.com")))
    forged = box.add(fixture("arf_abuse.eml").replace(b"<cat@example.com>", b"<bob@example.com>"))
    box.add(b"Subject: out of office\r\n\r\nI am away.")
    env = drip_env(
        tmp_path, system.settings.database_url, system.broker.client.socket_file, system.smtp.port
    )
    result = CliRunner().invoke(main, ["bounces", "process", str(tmp_path / "bounces")], env=env)
    assert result.exit_code == 0, result.output
    assert "1 hard bounces, 1 complaints, 1 soft bounces (0 stopped" in result.output
    assert "1 complaints known only by address held (not acted on)" in result.output
    assert "1 not a report" in result.output
    assert system.subscriber("ana@example.com").status == SubscriberStatus.BOUNCED
    assert system.subscriber("bob@example.com").status == SubscriberStatus.ACTIVE
    assert system.subscriber("cat@example.com").status == SubscriberStatus.UNSUBSCRIBED
    for address in ("ana@example.com", "cat@example.com"):
        assert system.signup(address) is None, "a barred address is never mailed again"
    assert list(box.keys()) == [forged], "each message is deleted once read, or held"


def process(system: System, tmp_path: Path) -> str:
    """`drip bounces process` on tmp_path/bounces, as cron runs it; its summary."""
    env = drip_env(
        tmp_path, system.settings.database_url, system.broker.client.socket_file, system.smtp.port
    )
    result = CliRunner().invoke(main, ["bounces", "process", str(tmp_path / "bounces")], env=env)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # the exit status only
def test_a_piped_complaint_drip_does_not_believe_is_logged_not_sent_back_for_retries(
    readers: System, tmp_path: Path
) -> None:
    """It exited 75 like an unreadable message, so the mail system piped it in again for
    days, applying again whatever else the message reported, and then returned it."""
    system = readers
    env = drip_env(
        tmp_path, system.settings.database_url, system.broker.client.socket_file, system.smtp.port
    )
    forged = fixture("arf_abuse.eml").replace(b"<cat@example.com>", b"<bob@example.com>")
    piped = CliRunner().invoke(main, ["bounces", "process", "-"], input=forged, env=env)
    assert piped.exit_code == 0, piped.output
    assert "1 complaints known only by address held (not acted on)" in piped.stdout
    assert "was not acted on" in piped.stderr
    assert system.subscriber("bob@example.com").status == SubscriberStatus.ACTIVE


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # the exit status only
def test_a_message_piped_in_to_hold_exits_with_a_temporary_failure(
    readers: System, tmp_path: Path
) -> None:
    """`drip bounces process -` is what a mail system pipes a message to, and it keeps
    the message only on a temporary failure (EX_TEMPFAIL, 75): drip exited 0 for one it
    could not read, so the mail system deleted it and nobody saw whom it named."""
    system = readers
    env = drip_env(
        tmp_path, system.settings.database_url, system.broker.client.socket_file, system.smtp.port
    )
    piped = [
        CliRunner().invoke(main, ["bounces", "process", "-"], input=message, env=env)
        for message in (UNREADABLE_DSN, dated(fixture("dsn_delayed.eml"), system.clock.now()))
    ]
    assert [result.exit_code for result in piped] == [75, 0]
    assert "1 unreadable reports held" in piped[0].stdout
    assert "EX_TEMPFAIL" in piped[0].stderr
    assert "1 soft bounces" in piped[1].stdout


def test_a_piped_message_the_database_cannot_take_now_exits_with_a_temporary_failure(
    tmp_path: Path,
) -> None:
    """With the database down, drip exited 1, which has the mail system return the
    message to its sender: a bounce has none, so it was lost. 75 keeps it queued."""
    port = free_port()
    env = {
        "DRIP_INSTANCE": str(tmp_path),
        "DRIP_DATABASE_URL": f"postgresql://drip:s3cret@127.0.0.1:{port}/drip",
    }
    bounce = fixture("dsn_hard.eml")
    piped = CliRunner().invoke(main, ["bounces", "process", "-"], input=bounce, env=env)
    assert piped.exit_code == 75, piped.output
    assert piped.stderr.startswith(
        f"cannot reach the database at postgresql+psycopg://drip:***@127.0.0.1:{port}/drip: "
    )
    assert piped.stderr.endswith(
        "; exiting with EX_TEMPFAIL for the mail system to try again later\n"
    )
    assert len(piped.stderr.splitlines()) == 1 and "s3cret" not in piped.output


@pytest.mark.parametrize("database_kind", ["postgresql"], indirect=True)  # SQLite has none
def test_a_piped_message_whose_transaction_the_database_aborts_is_kept_for_later(
    readers: System, tmp_path: Path
) -> None:
    """PostgreSQL aborting the transaction for a clash is over by the next try, which
    the mail system makes only for exit status 75; with 1 it returned the complaint to
    the provider."""
    system = readers
    env = drip_env(
        tmp_path, system.settings.database_url, system.broker.client.socket_file, system.smtp.port
    )
    complaint = fixture("arf_abuse.eml", welcome_id(system, "cat@example.com"))
    with commits_conflicting(system, "suppressions"):
        clashed = CliRunner().invoke(main, ["bounces", "process", "-"], input=complaint, env=env)
    assert clashed.exit_code == 75, clashed.output
    assert clashed.stderr == (
        "the database aborted the transaction for a clash with another change; "
        "exiting with EX_TEMPFAIL for the mail system to try again later\n"
    )
    assert system.subscriber("cat@example.com").status == SubscriberStatus.ACTIVE
    again = CliRunner().invoke(main, ["bounces", "process", "-"], input=complaint, env=env)
    assert again.exit_code == 0, again.output
    assert system.subscriber("cat@example.com").status == SubscriberStatus.UNSUBSCRIBED


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # SQLite's one writer
def test_a_piped_message_while_another_process_holds_sqlite_is_kept_for_later(
    readers: System, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process writing for longer than drip waits for SQLite's write lock
    ("database is locked") is over by the next try, which the mail system makes only
    for exit status 75; drip exited 1 with a traceback, and the complaint went back to
    the provider."""
    system = readers
    env = drip_env(
        tmp_path, system.settings.database_url, system.broker.client.socket_file, system.smtp.port
    )
    complaint = fixture("arf_abuse.eml", welcome_id(system, "cat@example.com"))
    monkeypatch.setattr("drip.db.BUSY_WAIT", 0.05)
    other_process = sqlite3.connect(make_url(system.settings.database_url).database or "")
    try:
        other_process.execute("BEGIN IMMEDIATE")
        locked = CliRunner().invoke(main, ["bounces", "process", "-"], input=complaint, env=env)
    finally:
        other_process.close()
    assert locked.exit_code == 75, locked.output
    assert locked.stderr == (
        "the database cannot take the message now: database is locked; "
        "exiting with EX_TEMPFAIL for the mail system to try again later\n"
    )
    assert system.subscriber("cat@example.com").status == SubscriberStatus.ACTIVE
    again = CliRunner().invoke(main, ["bounces", "process", "-"], input=complaint, env=env)
    assert again.exit_code == 0, again.output
    assert system.subscriber("cat@example.com").status == SubscriberStatus.UNSUBSCRIBED


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # the output only
def test_a_piped_message_that_meets_a_bug_fails_with_a_line_saying_so(
    readers: System, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug is no passing trouble: a later try meets it again, so the status stays 1.
    Python's traceback came alone, quoting the address the failed statement was given,
    into the mail system's log and the notice it may mail back to the report's sender."""
    system = readers
    env = drip_env(
        tmp_path, system.settings.database_url, system.broker.client.socket_file, system.smtp.port
    )

    def broken(*_args: object, **_kwargs: object) -> NoReturn:
        cause = Exception("UNIQUE constraint failed: suppressions.email_hash")
        raise sa.exc.IntegrityError("INSERT INTO suppressions", ("cat@example.com",), cause)

    monkeypatch.setattr("drip.bounces.process_message", broken)
    complaint = fixture("arf_abuse.eml", welcome_id(system, "cat@example.com"))
    piped = CliRunner().invoke(main, ["bounces", "process", "-"], input=complaint, env=env)
    assert piped.exit_code == 1, piped.output
    first, *traceback = piped.stderr.splitlines()
    assert "bounces_pipe_failed: a bug in drip, not the database's passing trouble" in first
    assert traceback[0] == "Traceback (most recent call last):"
    assert "sqlalchemy.exc.IntegrityError: " in piped.stderr, "the bug is shown in full"
    assert "cat@example.com" not in piped.output


def bounces_of(system: System, address: str) -> dict[str, str]:
    """The emails sent to `address` that are marked bouncing, by Message-ID."""
    with transaction(system.sessions) as session:
        subscriber = system.subscriber(address, session=session)
        marked = session.execute(
            sa.select(Delivery.message_id, Delivery.bounce).where(
                Delivery.subscriber_id == subscriber.id, Delivery.bounce.is_not(None)
            )
        )
        return {message_id: bounce for message_id, bounce in marked}


def test_bounces_repeated_about_one_email_count_once_without_verp(
    readers: System, tmp_path: Path
) -> None:
    """A reviewer's case: Bob's mailbox is full for days. Without VERP, Exim's warning
    about his welcome comes back to the From mailbox every 24 hours, then its bounce when
    it gives up, while lessons go out daily. Each was tied to the lesson sent before it
    came, so three of them barred Bob for one email; now the warnings are tied by the
    date of the original they give and the bounce by its copy's Message-ID, all to the
    welcome."""
    system = readers
    welcome = system.smtp.to("bob@example.com")[-1]
    warning = fixture("exim_delayed.eml").replace(
        b"Mon, 26 Oct 2026 08:01:10 +0000", str(welcome["Date"]).encode()
    )
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    for _day in range(4):
        next_lesson(system)
        box.add(dated(warning, system.clock.now()))
        assert (read_maildir(system, tmp_path).soft, status_of(system, "bob")) == (
            1,
            SubscriberStatus.ACTIVE,
        )
    next_lesson(system)
    box.add(dated(fixture("exim_retry_timeout.eml", welcome["Message-ID"]), system.clock.now()))
    tally = read_maildir(system, tmp_path)
    assert (tally.hard, tally.soft, tally.stopped) == (0, 1, 0)
    assert bounces_of(system, "bob@example.com") == {welcome["Message-ID"]: "soft"}
    assert status_of(system, "bob") == SubscriberStatus.ACTIVE


@pytest.mark.parametrize("with_date", [False, True], ids=["undated", "dated"])
def test_a_report_is_read_once_however_often_cron_runs(
    readers: System, tmp_path: Path, with_date: bool
) -> None:
    """A reviewer's case: one delayed DSN for Bob, and `drip bounces process` run each day
    as lessons go out. It used to be read again every day and pinned on that day's
    lesson, so on the third day Bob was barred for one "still retrying" notice."""
    system = readers
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    raw = fixture("dsn_delayed.eml")
    box.add(dated(raw, system.clock.now()) if with_date else raw)
    welcome = sent_ids(system, "bob@example.com")[-1]
    summaries = []
    for _day in range(3):
        summaries.append(process(system, tmp_path))
        next_lesson(system)
    assert "1 soft bounces (0 stopped" in summaries[0]
    assert all("0 soft bounces (0 stopped" in summary for summary in summaries[1:])
    assert system.subscriber("bob@example.com").status == SubscriberStatus.ACTIVE
    assert bounces_of(system, "bob@example.com") == ({welcome: "soft"} if with_date else {})
    assert list(box.keys()) == []


def read_maildir(system: System, tmp_path: Path) -> Tally:
    """`process_maildir` on tmp_path/bounces, in this process; its tally."""
    tally = Tally()
    process_maildir(
        tmp_path / "bounces",
        system.sessions,
        secret=system.settings.secret_key,
        tokens=system.mailer.tokens,
        clock=system.clock,
        tally=tally,
    )
    return tally


def test_a_report_read_again_after_a_crash_lands_on_the_same_email(
    readers: System, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies after a report's effect is committed and before its message is
    deleted; the next run, a lesson later, reads it again to the same email and no
    further effect."""
    system = readers
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    box.add(dated(fixture("dsn_delayed.eml"), system.clock.now()))
    welcome = sent_ids(system, "bob@example.com")[-1]

    def die(_box: mailbox.Maildir, _key: str) -> None:
        raise OSError("the process died here")

    with monkeypatch.context() as patched, pytest.raises(OSError):
        patched.setattr(mailbox.Maildir, "discard", die)
        read_maildir(system, tmp_path)
    assert bounces_of(system, "bob@example.com") == {welcome: "soft"}, "committed"
    next_lesson(system)
    tally = read_maildir(system, tmp_path)
    assert (tally.soft, tally.stopped) == (1, 0)
    assert bounces_of(system, "bob@example.com") == {welcome: "soft"}
    assert list(box.keys()) == []


@pytest.mark.parametrize(
    ("message_id_of", "link_of", "complained"),
    [
        ("cat", "bob", {"cat"}),
        ("nobody", "bob", {"bob"}),
        ("nobody", "forged", set()),
    ],
    ids=["message-id-first", "then-the-link", "the-address-alone-is-not-believed"],
)
def test_a_complaint_names_its_subscriber_by_the_surest_mark(
    readers: System, message_id_of: str, link_of: str, complained: set[str]
) -> None:
    """BNC-04's order of trust: the embedded original's Message-ID, then its
    List-Unsubscribe link. The address the report names (Cat's) is no mark of drip's, so
    a mailed report tied by nothing else changes nothing."""
    system = readers
    message_id = "<d0.none@example.com>"
    if message_id_of != "nobody":
        message_id = welcome_id(system, f"{message_id_of}@example.com")
    link = "<https://drip.example.com/unsubscribe/WzJd.forged.x>"
    if link_of != "forged":
        link = str(system.smtp.to(f"{link_of}@example.com")[-1]["List-Unsubscribe"])
    tally = apply_raw(system, fixture("arf_abuse.eml", message_id, link))
    assert (tally.complaints, tally.doubted) == (len(complained), 1 - len(complained))
    left = {r for r in ("ana", "bob", "cat") if status_of(system, r) != SubscriberStatus.ACTIVE}
    assert left == complained
    with transaction(system.sessions) as session:
        barred = {
            r
            for r in ("ana", "bob", "cat")
            if is_suppressed(session, system.settings.secret_key, f"{r}@example.com")
        }
    assert barred == complained


def test_a_mailed_complaint_known_only_by_its_address_changes_nothing(
    readers: System, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone can mail the bounce mailbox an ARF report whose Original-Rcpt-To is Cat,
    dated now, with a copy of no email of drip's: it unsubscribed Cat, barred her address
    for good and counted toward the complaint-rate guard (three could hold a small list's
    lessons). A forged VERP Original-Mail-From or unsubscribe link ties it no better.
    It may still be genuine, so it is held for a person to judge, not deleted."""
    system = readers
    system.clock.advance(timedelta(hours=1))
    forged_verp = b"Original-Mail-From: <bounces+ab-aaaaaaaaaaaaaaaa@drip.example.com>"
    forged = dated(fixture("arf_abuse.eml"), system.clock.now())
    with_verp = forged.replace(b"Original-Mail-From: <hello@drip.example.com>", forged_verp)
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    keys = {box.add(forged), box.add(with_verp)}
    tallies = [read_maildir(system, tmp_path) for _run in range(2)]
    assert set(box.keys()) == keys
    assert {box.get_message(key).get_flags() for key in keys} == {"FS"}
    assert status_of(system, "cat") == SubscriberStatus.ACTIVE
    with transaction(system.sessions) as session:
        assert not is_suppressed(session, system.settings.secret_key, "cat@example.com")
        marked = sa.select(Delivery.id).where(
            sa.or_(Delivery.bounce.is_not(None), Delivery.complained_at.is_not(None))
        )
        assert session.scalars(marked).all() == []
        assert day_rate(session, system.clock.now()).complaints == 0
    assert [(t.complaints, t.doubted, t.held, t.unmatched) for t in tallies] == [
        (0, 2, 0, 0),
        (0, 0, 0, 0),
    ], "read once"
    assert "complaint_not_believed" in caplog.text


def status_of(system: System, reader: str) -> SubscriberStatus:
    return system.subscriber(f"{reader}@example.com").status


def sent_ids(system: System, address: str) -> list[str]:
    """Message-IDs of the emails sent to `address`, oldest first."""
    with transaction(system.sessions) as session:
        subscriber = system.subscriber(address, session=session)
        return list(
            session.scalars(
                sa.select(Delivery.message_id)
                .where(Delivery.subscriber_id == subscriber.id, Delivery.sent_at.is_not(None))
                .order_by(Delivery.sent_at, Delivery.id)
            )
        )


def report(
    system: System,
    kind: str,
    message_id: str,
    recipient: str = "",
    *,
    dated: datetime | None = None,
) -> Tally:
    tally = Tally()
    with transaction(system.sessions) as session:
        apply(
            session,
            [Report(kind, recipient, message_id, "test", dated=dated)],
            secret=system.settings.secret_key,
            tokens=system.mailer.tokens,
            now=system.clock.now(),
            tally=tally,
        )
    return tally


def apply_raw(system: System, raw: bytes) -> Tally:
    tally = Tally()
    with transaction(system.sessions) as session:
        apply(
            session,
            parse(raw),
            secret=system.settings.secret_key,
            tokens=system.mailer.tokens,
            now=system.clock.now(),
            tally=tally,
        )
    return tally


def next_lesson(system: System) -> None:
    system.clock.advance(timedelta(days=1, hours=3))
    system.tick()
    system.drain()


def test_success_receipts_are_no_bounces_and_are_deleted(system: System, tmp_path: Path) -> None:
    """A receipt that Ana's server relayed each email (RFC 3464 Action: relayed) was read
    as a soft bounce of it, and three in a row stopped her, whose mail arrives."""
    system.join("ana@example.com")
    next_lesson(system)
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    sent = sent_ids(system, "ana@example.com")
    for message_id in sent:
        box.add(dated(fixture("dsn_relayed.eml", message_id), system.clock.now()))
    summary = process(system, tmp_path)
    assert "0 hard bounces, 0 complaints, 0 soft bounces (0 stopped" in summary
    assert f"{len(sent)} not a report, 0 unreadable reports held" in summary
    assert status_of(system, "ana") == SubscriberStatus.ACTIVE
    assert bounces_of(system, "ana@example.com") == {}
    assert list(box.keys()) == []


def test_three_soft_bounces_in_a_row_stop_the_subscriber_and_bar_the_address(
    system: System,
) -> None:
    system.join("ana@example.com")
    next_lesson(system)
    first, second, third = sent_ids(system, "ana@example.com")
    for message_id in (first, second, second):  # a report received twice counts once
        report(system, "soft", message_id)
    assert system.subscriber("ana@example.com").status == SubscriberStatus.ACTIVE
    assert report(system, "soft", third).stopped == 1
    assert system.subscriber("ana@example.com").status == SubscriberStatus.BOUNCED
    with transaction(system.sessions) as session:
        assert is_suppressed(session, system.settings.secret_key, "ana@example.com")
    sent = len(system.smtp.received)
    next_lesson(system)
    assert len(system.smtp.received) == sent


@pytest.mark.parametrize(
    ("sent_over", "stopped"),
    [(timedelta(days=7), 1), (timedelta(days=7, minutes=1), 0)],
    ids=["within-7-days", "over-7-days"],
)
def test_three_soft_bounces_stop_the_subscriber_only_within_seven_days(
    system: System, sent_over: timedelta, stopped: int
) -> None:
    """DEL-05: three soft bounces within 7 days suppress, measured from the first
    bounced email's sending to the last's. Spread wider, they are an address that is
    sometimes full, not one that is gone; the next three within the window still stop."""
    system.join("ana@example.com")
    system.clock.advance(sent_over)
    system.tick()
    system.drain()
    confirmation, welcome, first = sent_ids(system, "ana@example.com")
    assert report(system, "soft", confirmation).stopped == 0
    assert report(system, "soft", welcome).stopped == 0
    assert report(system, "soft", first).stopped == stopped
    if stopped:
        return
    assert status_of(system, "ana") == SubscriberStatus.ACTIVE
    next_lesson(system)
    assert report(system, "soft", sent_ids(system, "ana@example.com")[-1]).stopped == 0
    next_lesson(system)
    assert report(system, "soft", sent_ids(system, "ana@example.com")[-1]).stopped == 1
    assert status_of(system, "ana") == SubscriberStatus.BOUNCED
    with transaction(system.sessions) as session:
        assert is_suppressed(session, system.settings.secret_key, "ana@example.com")


def test_an_email_that_did_not_bounce_breaks_a_run_of_soft_bounces(system: System) -> None:
    system.join("ana@example.com")
    next_lesson(system)
    next_lesson(system)
    confirmation, welcome, _delivered, latest = sent_ids(system, "ana@example.com")
    for message_id in (confirmation, welcome, latest):
        assert report(system, "soft", message_id).stopped == 0
    assert system.subscriber("ana@example.com").status == SubscriberStatus.ACTIVE


def test_a_soft_bounce_known_only_by_address_counts_against_the_email_sent_before_it(
    system: System,
) -> None:
    system.join("ana@example.com")
    made = system.clock.now()
    next_lesson(system)
    first, second, third = sent_ids(system, "ana@example.com")
    report(system, "soft", "", "ana@example.com", dated=made)  # read a lesson late
    assert bounces_of(system, "ana@example.com") == {second: "soft"}
    report(system, "soft", "", "ana@example.com")  # undated: no email to pin it on
    assert bounces_of(system, "ana@example.com") == {second: "soft"}
    for _ in range(2):
        report(system, "soft", "", "ana@example.com", dated=system.clock.now())
    assert system.subscriber("ana@example.com").status == SubscriberStatus.ACTIVE
    assert report(system, "soft", first).stopped == 1
    assert bounces_of(system, "ana@example.com") == {m: "soft" for m in (first, second, third)}


def test_a_mailed_hard_bounce_known_only_by_its_address_counts_as_soft(
    system: System,
) -> None:
    """Anyone can mail the bounce mailbox: a forged "<ana@example.com>: 550 5.1.1" from
    MAILER-DAEMON@evil, dated now, in plain text or as a DSN, barred Ana for good, being
    tied by her address alone to an email drip had sent her. Only drip's signed marks (its
    Message-ID, unsubscribe link or VERP address) make a mailed bounce hard; known by
    the address it is soft, so it still counts toward three in a row (DEL-05). Without
    VERP, the bounce of the sender's own mail (its copy's Message-ID is not drip's) comes
    there too: dated before drip first mailed Ana, or undated, it marks no email."""
    bounced_at = system.clock.now()
    system.clock.advance(timedelta(hours=1))
    system.join("ana@example.com")
    next_lesson(system)
    first, second, third = sent_ids(system, "ana@example.com")
    forged = fixture("qmail_hard.eml").replace(
        b"From: MAILER-DAEMON@mail.example.org", b"From: MAILER-DAEMON@evil.example"
    )
    now = system.clock.now()
    forged_dsn = fixture("dsn_hard.eml").replace(
        b"Arrival-Date: Mon, 26 Oct 2026 08:01:10 +0000",
        f"Arrival-Date: {format_datetime(now)}".encode(),
    )
    for raw in (dated(forged, bounced_at), forged, dated(forged, now), forged_dsn):
        tally = apply_raw(system, raw)
        assert (tally.hard, tally.soft, tally.unmatched) == (0, 1, 0)
        assert status_of(system, "ana") == SubscriberStatus.ACTIVE
        with transaction(system.sessions) as session:
            assert not is_suppressed(session, system.settings.secret_key, "ana@example.com")
    assert bounces_of(system, "ana@example.com") == {third: "soft"}
    for message_id in (first, second):
        report(system, "soft", message_id)
    assert status_of(system, "ana") == SubscriberStatus.BOUNCED


@pytest.mark.parametrize("kind", ["hard", "complaint"])
def test_a_barred_address_gets_nothing_whatever_happens_to_its_subscriber_row(
    system: System, kind: str
) -> None:
    system.join("ana@example.com")
    report(system, kind, sent_ids(system, "ana@example.com")[-1])
    sent = len(system.smtp.received)
    with transaction(system.sessions) as session:  # an admin or a bug revives the row
        subscriber = system.subscriber("ana@example.com", session=session)
        subscriber.status = SubscriberStatus.ACTIVE
        subscriber.next_step = 2
        subscriber.next_send_at = system.clock.now()
    system.tick()
    system.drain()
    with transaction(system.sessions) as session:  # the person erases everything...
        erase(session, "ana@example.com", secret=system.settings.secret_key, now=system.clock.now())
    assert system.signup("ana@example.com") is None  # ...and signs up again
    system.drain()
    assert len(system.smtp.received) == sent


UNREADABLE_DSN = (
    b"From: MAILER-DAEMON@mx.example.net\r\nTo: hello@drip.example.com\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: message/delivery-status\r\n\r\n\x00\xff garbage ;;; \r\n--b"
)


@pytest.mark.parametrize(
    "unreadable",
    [
        UNREADABLE_DSN,
        bounce_with_unreadable_copy(),
        fixture("dsn_hard.eml").replace(b"Recipient: rfc822; ana", b"Recipient: rfc822; a\x00na"),
        fixture("dsn_hard.eml", "<d1\x00x@drip.example.com>"),
    ],
    ids=["dsn", "plain-text-bounce", "nul-in-address", "nul-in-message-id"],
)
def test_a_report_that_cannot_be_read_is_held_flagged_in_the_maildir(
    readers: System, tmp_path: Path, unreadable: bytes
) -> None:
    """Held once (Seen, so never read again), deleted HELD_FOR after it arrived; an
    out-of-office reply is deleted at once, like every message read. A plain-text bounce
    whose reading failed was counted as not a report and deleted, so no one saw whom it
    named. Anyone can mail one naming an address or Message-ID with a NUL: PostgreSQL
    refused the query, so the run stopped and left it for every later run to stop on."""
    system = readers
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    garbage = box.add(unreadable)
    box.add(b"Subject: out of office\r\n\r\nI am away.")
    assert "1 not a report, 1 unreadable reports held" in process(system, tmp_path)
    assert list(box.keys()) == [garbage]
    held = box.get_message(garbage)
    assert (held.get_subdir(), held.get_flags()) == ("cur", "FS")
    assert "0 not a report, 0 unreadable reports held" in process(system, tmp_path)

    held.set_date((system.clock.now() - HELD_FOR).timestamp() + 60)
    box[garbage] = held
    assert read_maildir(system, tmp_path).expired == 0
    held.set_date((system.clock.now() - HELD_FOR).timestamp() - 60)
    box[garbage] = held
    assert read_maildir(system, tmp_path).expired == 1
    assert list(box.keys()) == []


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # message reading only
def test_a_message_nested_too_deep_to_parse_is_held_not_left_to_stop_every_run(
    readers: System, tmp_path: Path
) -> None:
    """Anyone can mail the bounce address one: the mailbox module parsed it to read its
    flags, and RecursionError escaped `drip bounces process` before any guard, so it and
    every message behind it stayed unread on every run. Only the parser's guard reads it
    now, and holding it renames its file, which keeps its bytes and its time."""
    system = readers
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    nested = box.add(nested_parts())
    box.add(dated(fixture("dsn_delayed.eml"), system.clock.now()))
    summary = process(system, tmp_path)
    assert "1 soft bounces (0 stopped" in summary
    assert "1 unreadable reports held" in summary
    assert list(box.keys()) == [nested]
    assert "0 unreadable reports held" in process(system, tmp_path), "held once"
    held = tmp_path / "bounces" / "cur" / f"{nested}:2,FS"
    assert held.read_bytes() == nested_parts()
    os.utime(held, (0, (system.clock.now() - HELD_FOR).timestamp() - 60))
    assert read_maildir(system, tmp_path).expired == 1
    assert list(box.keys()) == []


@pytest.mark.parametrize("database_kind", ["postgresql"], indirect=True)
def test_a_bounce_and_an_erasure_of_one_address_lock_its_rows_in_the_same_order(
    system: System,
) -> None:
    """A report naming only the address locks every subscription of it, as an erasure
    does, and in the same order (by id), so neither can hold one the other waits for.
    Here the rows lie in the table in the other order, the higher id first, as a scan
    without ORDER BY then reads them, and a reader of the higher one (a foreign-key
    check, say) keeps the erasure waiting while the bounce's lock can still share it:
    the bounce took that one and waited for the lower, which the erasure held, and
    PostgreSQL aborted one of the two (deadlock_detected)."""
    now = system.clock.now()
    with transaction(system.sessions) as session:
        series = session.scalar(sa.select(Sequence.id))
        second = Sequence(slug="second", name="Second", created_at=now)
        session.add(second)
        session.flush()
        for subscriber_id, sequence_id in ((1001, second.id), (1000, series)):
            session.add(
                Subscriber(
                    id=subscriber_id,
                    sequence_id=sequence_id,
                    email=ANA[0],
                    status=SubscriberStatus.ACTIVE,
                    created_at=now,
                    confirmed_at=now,
                )
            )
            session.flush()

    def bouncing(sessions: SessionFactory) -> Tally:
        tally = Tally()
        with transaction(sessions) as session:
            report = Report("hard", ANA[0], None, "550 5.1.1", dated=now)
            apply(
                session,
                [report],
                secret=system.settings.secret_key,
                tokens=system.mailer.tokens,
                now=now,
                tally=tally,
            )
        return tally

    with transaction(system.sessions) as reader:
        reader.execute(
            sa.select(Subscriber.id)
            .where(Subscriber.id == 1001)
            .with_for_update(read=True, key_share=True)
        )
        eraser = Racer(system, erasing(system))
        eraser.wait_until_blocked(system)
        bouncer = Racer(system, bouncing)
        wait_until(lambda: bouncer.done or lock_waits(system) > 1, "the bounce to wait")
    assert eraser.result() == 2
    assert bouncer.result().unmatched == 1, "it found her erased"
    assert_erased(system)


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # message reading only
def test_a_bounce_with_an_absurd_date_is_read_and_deleted_not_left_to_stop_every_run(
    readers: System, tmp_path: Path
) -> None:
    """Its OverflowError escaped `drip bounces process`: the transaction rolled back, the
    message stayed, and every later run died on it before the messages behind it."""
    system = readers
    absurd = b"Mon, 26 Oct 2026 08:01:10 +99999999999999999999"
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    box.add(fixture("exim_delayed.eml").replace(b"Mon, 26 Oct 2026 08:01:10 +0000", absurd))
    box.add(b"Date: " + absurd + b"\r\n" + fixture("qmail_hard.eml"))
    box.add(dated(fixture("dsn_delayed.eml"), system.clock.now()))
    assert "0 not a report, 0 unreadable reports held" in process(system, tmp_path)
    assert list(box.keys()) == []
    assert bounces_of(system, "bob@example.com") == {
        sent_ids(system, "bob@example.com")[-1]: "soft"
    }


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # which kind only
@pytest.mark.parametrize(
    ("final", "original", "kind"),
    [
        ("bob@example.com", "bob@example.com", "hard"),
        ("Bob@Example.COM", "", "hard"),
        ("robert.b@mail.example.net", "bob@example.com", "hard"),
        ("bob@forwarded.example", "", "soft"),
        ("bob@forwarded.example", "bob@forwarded.example", "soft"),
    ],
    ids=["same", "same-normalised", "alias", "forward", "forward-orcpt"],
)
def test_a_bounce_tied_by_its_quoted_mark_is_hard_only_for_the_address_that_failed(
    system: System, final: str, original: str, kind: str
) -> None:
    """Bob's mailbox forwards (without SRS) to one that no longer exists; its bounce
    comes back to drip quoting Bob's Message-ID, and barred Bob, whose own mailbox took
    the email. Not Bob's address failing is soft; a DSN names him by Final-Recipient or
    Original-Recipient (a server may rewrite his address, an alias, into the final one)."""
    system.join("bob@example.com")
    welcome = sent_ids(system, "bob@example.com")[-1]
    recipients = f"Final-Recipient: rfc822; {final}\r\n"
    if original:
        recipients += f"Original-Recipient: rfc822; {original}\r\n"
    raw = fixture("dsn_hard.eml", welcome).replace(
        b"Final-Recipient: rfc822; ana@example.com\r\n"
        b"Original-Recipient: rfc822; ana@example.com\r\n",
        recipients.encode(),
    )
    assert getattr(apply_raw(system, raw), kind) == 1
    assert bounces_of(system, "bob@example.com") == {welcome: kind}
    bounced = kind == "hard"
    assert (status_of(system, "bob") == SubscriberStatus.BOUNCED) is bounced


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # which kind only
def test_a_plain_text_bounce_of_a_forward_is_soft_for_the_subscriber_it_quotes(
    system: System,
) -> None:
    """The same in plain text: qmail returns Bob's email, forwarded to a dead address."""
    system.join("bob@example.com")
    welcome = sent_ids(system, "bob@example.com")[-1]
    raw = fixture("qmail_hard.eml").replace(b"<d1.copy@drip.example.com>", welcome.encode())
    tally = apply_raw(system, raw.replace(b"ana@example.com", b"bob@forwarded.example"))
    assert (tally.hard, tally.soft) == (0, 1)
    assert bounces_of(system, "bob@example.com") == {welcome: "soft"}
    assert status_of(system, "bob") == SubscriberStatus.ACTIVE

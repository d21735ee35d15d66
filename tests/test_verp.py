"""VERP: every delivery's envelope sender names it, and bounces come back to it."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from drip import verp
from drip.bounces import Tally, apply
from drip.db import transaction
from drip.models import Delivery, Step, SubscriberStatus
from drip.privacy import is_suppressed
from drip.proofs import send_proof
from drip.reports import parse
from tests.helpers import System
from tests.test_bounces import apply_raw, fixture

SECRET = "k" * 40


@pytest.fixture
def system_env() -> dict[str, str]:
    return {"DRIP_BOUNCE_DOMAIN": "Bounces.Drip.Example.com"}


def returned_to(system: System, address: str) -> str:
    return next(r.mail_from for r in system.smtp.received if address in r.rcpt_tos)


def plain_bounce(
    to: str, *, sender: str = "MAILER-DAEMON@mx.example.net", extra: str = ""
) -> bytes:
    """A bounce written for people: no DSN part, no recipient field, no Message-ID."""
    return (
        f"From: Mail Delivery System <{sender}>\r\nTo: {to}\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\n{extra}\r\n"
        "I'm sorry to have to inform you that your message could not be delivered.\r\n"
    ).encode()


def test_a_token_names_its_delivery_in_any_letter_case_and_only_with_the_key() -> None:
    for delivery_id in (1, 255, 256, 123_456_789, 2**62):
        address = verp.return_path(SECRET, delivery_id, "bounces.example.com")
        local = address.partition("@")[0]
        assert local.startswith("bounces+") and len(local) <= 64
        assert all(ch.isalnum() or ch in "+-" for ch in local)
        assert verp.delivery_id(SECRET, address) == delivery_id
        assert verp.delivery_id(SECRET, f"<{address.upper()}>") == delivery_id
        assert verp.delivery_id("x" * 40, address) is None


def test_a_forged_or_altered_token_names_nothing() -> None:
    genuine = verp.token(SECRET, 42)
    number, _, mac = genuine.partition("-")
    other = verp.token(SECRET, 43).partition("-")[0]
    for forged in (
        f"{other}-{mac}",
        f"{number}-{mac[:-1]}",
        f"{number}-{mac[:-1]}{'a' if mac[-1] != 'a' else 'b'}",
        f"{number}",
        f"-{mac}",
        "",
        "!!!-???",
    ):
        assert verp.delivery_id(SECRET, f"bounces+{forged}@bounces.example.com") is None
    assert verp.delivery_id(SECRET, "hello@drip.example.com") is None
    assert verp.delivery_id(SECRET, "not an address") is None


def test_each_delivery_leaves_with_its_own_return_path_and_a_proof_with_the_sender(
    system: System,
) -> None:
    system.join("ana@example.com")
    with transaction(system.sessions) as session:
        ids = session.scalars(sa.select(Delivery.id).order_by(Delivery.id)).all()
        step = session.scalars(sa.select(Step).where(Step.number == 1)).first()
        assert step is not None
        step_id = step.id
    senders = [r.mail_from for r in system.smtp.received]
    assert len(ids) == len(senders) == 2
    for delivery_id, sender in zip(ids, senders, strict=True):
        assert sender.endswith("@bounces.drip.example.com")
        assert verp.delivery_id(system.settings.secret_key, sender) == delivery_id
    send_proof(system.mailer, step_id, "writer@example.com", "")
    assert system.smtp.received[-1].mail_from == "hello@drip.example.com"


def test_a_bounce_returned_to_a_verp_address_stops_exactly_that_subscriber(
    system: System,
) -> None:
    """The report quotes no Message-ID drip knows (the server rewrote it): the return
    path alone attributes it."""
    system.join("ana@example.com")
    system.join("bob@example.com")
    welcome = system.smtp.to("bob@example.com")[-1]
    raw = (
        fixture("dsn_hard.eml", "<unknown@elsewhere.example>")
        .replace(b"rfc822; ana@example.com", b"rfc822; bob@example.com")
        .replace(
            b"To: hello@drip.example.com", f"To: {returned_to(system, 'bob@example.com')}".encode()
        )
    )
    assert welcome["Message-ID"]
    tally = apply_raw(system, raw)
    assert tally.hard == 1
    assert system.subscriber("bob@example.com").status == SubscriberStatus.BOUNCED
    assert system.subscriber("ana@example.com").status == SubscriberStatus.ACTIVE


def test_a_bounce_to_a_forged_verp_address_falls_back_to_the_report(
    system: System, caplog: pytest.LogCaptureFixture
) -> None:
    system.join("ana@example.com")
    forged = "bounces+ae-aaaaaaaaaaaaaaaa@bounces.drip.example.com"
    raw = fixture("dsn_hard.eml", "<unknown@elsewhere.example>").replace(
        b"To: hello@drip.example.com", f"To: {forged}".encode()
    )
    (report,) = parse(raw)
    assert forged in report.envelope
    tally = Tally()
    with transaction(system.sessions) as session:
        apply(
            session,
            [report],
            secret=system.settings.secret_key,
            tokens=system.mailer.tokens,
            now=system.clock.now(),
            tally=tally,
        )
    assert tally.soft == 1  # by the reported address only, which anyone can write
    assert "verp_token_rejected" in caplog.text
    assert system.subscriber("ana@example.com").status == SubscriberStatus.ACTIVE


def test_a_plain_text_bounce_to_a_verp_address_is_a_soft_bounce_of_that_delivery(
    system: System,
) -> None:
    system.join("ana@example.com")
    system.join("bob@example.com")
    bob_welcome = returned_to(system, "bob@example.com")

    tally = apply_raw(system, plain_bounce(bob_welcome))

    assert (tally.soft, tally.unmatched) == (1, 0)
    with transaction(system.sessions) as session:
        marked = session.scalars(sa.select(Delivery).where(Delivery.bounce.is_not(None))).all()
        assert [d.id for d in marked] == [verp.delivery_id(system.settings.secret_key, bob_welcome)]
        assert marked[0].bounce == "soft"
    assert system.subscriber("bob@example.com").status == SubscriberStatus.ACTIVE


def test_an_exchange_ndr_without_a_delivery_status_is_a_soft_bounce_of_its_delivery(
    system: System,
) -> None:
    """Standards BNC-01 and BNC-02: Ana's mailbox forwards to an Exchange server that no
    longer has her, and it answers in text for people only. The address it names and
    its copy's Message-ID are not drip's; the VERP address it came back to names the
    email, and text that cannot be trusted to say hard or soft counts as soft."""
    system.join("ana@example.com")
    system.join("bob@example.com")
    ana_welcome = returned_to(system, "ana@example.com")
    raw = fixture("ndr_exchange_plain.eml", return_path=ana_welcome)

    tally = apply_raw(system, raw)

    assert (tally.hard, tally.soft, tally.unmatched) == (0, 1, 0)
    with transaction(system.sessions) as session:
        marked = session.scalars(sa.select(Delivery).where(Delivery.bounce.is_not(None))).all()
        expected = verp.delivery_id(system.settings.secret_key, ana_welcome)
        assert [(d.id, d.bounce) for d in marked] == [(expected, "soft")]
    assert system.subscriber("ana@example.com").status == SubscriberStatus.ACTIVE


@pytest.mark.parametrize(("named", "kind"), [("bob", "hard"), ("ana", "soft")])
def test_a_plain_text_failure_to_a_verp_address_is_a_bounce_of_that_delivery(
    system: System, named: str, kind: str
) -> None:
    """BNC-01 before BNC-02's fallback: a qmail bounce came back to Bob's email; the
    return path decides who, and the detectors that it is permanent. Naming another
    address (Bob's mailbox forwarded to Ana's old one, say), it is soft: Bob's own
    mailbox took the email."""
    system.join("ana@example.com")
    system.join("bob@example.com")
    bob_welcome = returned_to(system, "bob@example.com")
    raw = fixture("qmail_hard.eml", return_path=bob_welcome)

    tally = apply_raw(system, raw.replace(b"ana@example.com", f"{named}@example.com".encode()))

    assert (tally.hard, tally.soft, tally.unmatched) == (kind == "hard", kind == "soft", 0)
    with transaction(system.sessions) as session:
        marked = session.scalars(sa.select(Delivery).where(Delivery.bounce.is_not(None))).all()
        expected = verp.delivery_id(system.settings.secret_key, bob_welcome)
        assert [(d.id, d.bounce) for d in marked] == [(expected, kind)]
    bounced = SubscriberStatus.BOUNCED if kind == "hard" else SubscriberStatus.ACTIVE
    assert system.subscriber("bob@example.com").status == bounced
    assert system.subscriber("ana@example.com").status == SubscriberStatus.ACTIVE


def test_replies_that_come_back_to_a_verp_address_are_not_bounces(system: System) -> None:
    system.join("ana@example.com")
    to = returned_to(system, "ana@example.com")
    vacation = (
        f"From: Ana <ana@example.com>\r\nTo: {to}\r\nSubject: Out of office\r\n"
        "Auto-Submitted: auto-replied\r\n\r\nAway until Monday.\r\n"
    ).encode()
    human = f"From: Ana <ana@example.com>\r\nTo: {to}\r\nSubject: Re: hello\r\n\r\nThanks!\r\n"
    quoting = plain_bounce(to, sender="ana@example.com", extra="Auto-Submitted: auto-replied\r\n")
    for raw in (vacation, human.encode(), quoting):
        assert parse(raw) == [], raw
    assert parse(plain_bounce("hello@drip.example.com")) == [], "not to a VERP address"
    exim = plain_bounce(to, extra="Auto-Submitted: auto-replied\r\n")
    assert [r.kind for r in parse(exim)] == ["soft"], "a mail system's bounce says so too"


def test_a_plain_text_bounce_to_a_tampered_verp_address_is_ignored_and_logged(
    system: System, caplog: pytest.LogCaptureFixture
) -> None:
    system.join("ana@example.com")
    genuine = returned_to(system, "ana@example.com")
    local, _, domain = genuine.partition("@")
    tampered = f"{local[:-1]}{'a' if local[-1] != 'a' else 'b'}@{domain}"

    tally = apply_raw(system, plain_bounce(tampered, sender="postmaster@mx.example.net"))

    assert (tally.soft, tally.unmatched) == (0, 1)
    assert "verp_token_rejected" in caplog.text
    with transaction(system.sessions) as session:
        assert session.scalar(sa.select(sa.func.count()).where(Delivery.bounce.is_not(None))) == 0


def test_a_complaint_is_attributed_by_its_original_mail_from(system: System) -> None:
    """An ARF report whose embedded copy lost its Message-ID and whose Original-Rcpt-To is
    redacted (some providers do both): the VERP Original-Mail-From still names it."""
    system.join("ana@example.com")
    system.join("cat@example.com")
    raw = (
        fixture("arf_abuse.eml", "<gone@elsewhere.example>")
        .replace(
            b"Original-Rcpt-To: <cat@example.com>", b"Original-Rcpt-To: <redacted@example.com>"
        )
        .replace(
            b"Original-Mail-From: <hello@drip.example.com>",
            f"Original-Mail-From: <{returned_to(system, 'cat@example.com')}>".encode(),
        )
    )

    tally = apply_raw(system, raw)

    assert tally.complaints == 1
    assert system.subscriber("cat@example.com").status == SubscriberStatus.UNSUBSCRIBED
    assert system.subscriber("ana@example.com").status == SubscriberStatus.ACTIVE
    with transaction(system.sessions) as session:
        assert is_suppressed(session, system.settings.secret_key, "cat@example.com")

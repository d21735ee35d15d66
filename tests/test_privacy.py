"""The self-served export holds every row about the subscriber and the address (standards
LAW-13), and keeps doing so when someone adds a table; an erasure and the retention sweep
(LAW-16) of the same address, at the same moment, both go through and keep their word;
so do an erasure and the purge of signups never confirmed; and erasures and purges at
the same moment leave no consent notice nothing points to."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

from drip import consent, privacy, signup
from drip.bounces import Tally, apply
from drip.consent import latest_signup
from drip.db import SessionFactory, transaction
from drip.delivery_locks import lock_subscriber
from drip.models import Base, ConsentText, Subscriber
from drip.privacy import (
    DECLINE_QUIET,
    DECLINED,
    ERASED,
    erase_ended,
    is_suppressed,
    purge_unconfirmed,
    request_link,
    suppress,
    suppression,
)
from drip.privacy_export import export
from drip.reports import Report
from drip.scheduler import configured_pass
from drip.signup import Seen, confirm
from drip.subscriptions import pause, withdraw_address
from drip.wiring import make_engine
from tests.helpers import System, ended_long_ago, wait_until
from tests.test_intake import (
    ANA,
    TIMEOUT,
    Racer,
    assert_erased,
    erasing,
    hold,
    lock_waits,
    receive,
)
from tests.test_messages import SPAM_NAME, assert_no_name
from tests.web.test_journey import count

EXPORTED_AS = {"consent_events": "consent_events", "deliveries": "emails"}
"""Each table keyed to a subscriber, and the list in an export's subscription holding
its rows. A new such table must be added to drip.privacy.export and here."""


def keyed_to_subscribers() -> list[sa.Table]:
    return [
        table
        for table in Base.metadata.sorted_tables
        if "subscriber_id" in table.columns
        or any(fk.column.table.name == "subscribers" for fk in table.foreign_keys)
    ]


def test_every_table_keyed_to_a_subscriber_is_in_the_export(system: System) -> None:
    system.signup("ana@example.com")
    system.confirm("ana@example.com")
    with transaction(system.sessions) as session:
        subscriber_id = system.subscriber("ana@example.com", session=session).id
        exported = export(session, "ana@example.com", secret=system.settings.secret_key)
        [subscription] = exported["subscriptions"]
        for table in keyed_to_subscribers():
            assert table.name in EXPORTED_AS, (
                f"{table.name} holds rows about subscribers but the privacy export leaves "
                "them out: add them to drip.privacy.export (and to EXPORTED_AS)"
            )
            rows = session.scalar(
                sa.select(sa.func.count())
                .select_from(table)
                .where(table.c.subscriber_id == subscriber_id)
            )
            assert rows, f"seed a row in {table.name} for this test"
            assert len(subscription[EXPORTED_AS[table.name]]) == rows, table.name


def test_the_guard_sees_every_table_that_points_at_subscribers() -> None:
    assert {t.name for t in keyed_to_subscribers()} >= {"consent_events", "deliveries"}


def test_the_export_says_when_the_subscriber_complained_about_an_email(system: System) -> None:
    system.join("ana@example.com")
    now = system.clock.now()
    with transaction(system.sessions) as session:
        apply(
            session,
            [Report("complaint", "ana@example.com", "", "test", dated=now)],
            secret=system.settings.secret_key,
            tokens=system.mailer.tokens,
            now=now,
            tally=Tally(),
        )
    with transaction(system.sessions) as session:
        [subscription] = export(session, "ana@example.com", secret=system.settings.secret_key)[
            "subscriptions"
        ]
    complained = [e["complained_at"] for e in subscription["emails"] if e["complained_at"]]
    assert complained == [now.isoformat()]


def test_the_export_says_until_when_the_subscriber_paused_their_emails(system: System) -> None:
    system.join("ana@example.com")
    with transaction(system.sessions) as session:
        ana = system.subscriber("ana@example.com", session=session)
        pause(session, ana.id, system.clock.now(), default_timezone="UTC")
    with transaction(system.sessions) as session:
        [subscription] = export(session, "ana@example.com", secret=system.settings.secret_key)[
            "subscriptions"
        ]
    assert subscription["paused_until"] == "2026-10-31T08:00:00+00:00"


ADDRESS_TABLES_EXPORTED_AS = {
    "subscribers": "subscriptions",
    "received_signups": "signups_received",
    "suppressions": "suppression",
    "confirmation_mails": "confirmation_emails",
}
"""Each table holding an address (or its keyed hash) outside any subscription, and the
key of the export holding its rows; `admins` holds the staff's own accounts."""


def test_every_table_holding_an_address_is_in_the_export() -> None:
    holding = {
        table.name
        for table in Base.metadata.sorted_tables
        if {"email", "email_hash"} & set(table.columns.keys())
    }
    assert holding - {"admins"} == set(ADDRESS_TABLES_EXPORTED_AS), (
        "a table holds addresses: add it to drip.privacy_export.export and here"
    )


def test_the_export_holds_a_given_up_signup_and_the_suppression(system: System) -> None:
    """A signup a worker gave up on stays up to DRIP_PENDING_DAYS with the visitor's IP
    and browser, and a complaint's suppression for good: both are held about the
    address, so both are in its export (GDPR Art. 15)."""
    system.join("ana@example.com")
    receive(system, "Ana@Example.com", queued=False, ip="192.0.2.7", user_agent="Lynx/2.9")
    with transaction(system.sessions) as session:
        now = system.clock.now()
        suppress(session, system.settings.secret_key, "ana@example.com", "complaint", now=now)
    with transaction(system.sessions) as session:
        exported = export(session, "ana@example.com", secret=system.settings.secret_key)
    [received] = exported["signups_received"]
    assert (received["email_entered"], received["ip"], received["user_agent"]) == (
        "Ana@Example.com",
        "192.0.2.7",
        "Lynx/2.9",
    )
    assert received["series"] == "feel-better"
    assert received["notice_shown"] == "the notice for Calm Back, Calm Mind"
    assert received["received_at"] == now.isoformat()
    assert exported["suppression"] == {"reason": "complaint", "since": now.isoformat()}
    assert exported["confirmation_emails"] == [now.isoformat()]


def test_an_address_with_nothing_held_exports_nothing(system: System) -> None:
    with transaction(system.sessions) as session:
        exported = export(session, "nobody@example.com", secret=system.settings.secret_key)
    assert exported == {
        "email": "nobody@example.com",
        "subscriptions": [],
        "signups_received": [],
        "suppression": None,
        "confirmation_emails": [],
    }


@pytest.mark.parametrize(
    ("suppressed", "mailed"),
    [(None, 1), ("declined", 1), ("erased", 1), ("bounced", 0), ("complaint", 0)],
)
def test_a_privacy_link_never_goes_where_mail_bounced_or_was_reported_as_spam(
    system: System, suppressed: str | None, mailed: int
) -> None:
    """An unsubscribed address, or one suppressed by a declined signup or an erasure,
    gets its link: the person asked for it. One that bounced cannot receive it, and one
    reported as spam is never mailed again by any path (standards DEL-05, BNC-04): the
    form cannot tell its owner from a stranger typing it in. The privacy page sends them
    to the operator's contact address instead, so their access right (LAW-13) stands."""
    system.join("ana@example.com")
    secret = system.settings.secret_key
    with transaction(system.sessions) as session:
        now = system.clock.now()
        withdraw_address(session, "ana@example.com", now, secret=secret)
        if suppressed:
            suppress(session, secret, "ana@example.com", suppressed, now=now)
    mails = len(system.smtp.to("ana@example.com"))
    with transaction(system.sessions) as session:
        delivery_id = request_link(session, "ana@example.com", now=now)
    system.enqueue([delivery_id])
    system.drain()
    assert len(system.smtp.to("ana@example.com")) == mails + mailed


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # message bytes only
def test_a_privacy_link_names_only_someone_who_confirmed(system: System) -> None:
    """Anyone can ask for a privacy link for any address on file, and a pending signup
    is on file with whatever name its form was given: the link greets by name only once
    the address's owner has confirmed it, as the confirmation never does."""
    system.signup("carol@example.org", first_name=SPAM_NAME)
    system.drain()
    with transaction(system.sessions) as session:
        delivery_id = request_link(session, "carol@example.org", now=system.clock.now())
    system.enqueue([delivery_id])
    system.drain()
    _, link = system.smtp.received
    assert str(link.message["Subject"]).startswith("Your data")
    assert_no_name(link.raw)

    system.confirm("carol@example.org")
    system.drain()
    system.clock.advance(privacy.LINK_INTERVAL)
    with transaction(system.sessions) as session:
        delivery_id = request_link(session, "carol@example.org", now=system.clock.now())
    system.enqueue([delivery_id])
    system.drain()
    second_link = system.smtp.received[-1].message
    assert str(second_link["Subject"]).startswith("Your data")
    assert second_link["To"].addresses[0].display_name == SPAM_NAME


def sweeping(system: System) -> Callable[[SessionFactory], int]:
    """The retention sweep of a scheduler pass, in a transaction of its own."""

    def work(sessions: SessionFactory) -> int:
        with transaction(sessions) as session:
            return erase_ended(
                session,
                secret=system.settings.secret_key,
                now=system.clock.now(),
                older_than=system.settings.retention,
            )

    return work


def stop_after(engine: sa.Engine, marker: str) -> tuple[threading.Event, threading.Event]:
    """Make the first statement on `engine` whose SQL holds `marker` stop once it has run
    (its rows locked, its transaction open) until released: returns the events (stopped,
    release) the test waits for and sets."""
    stopped, release = threading.Event(), threading.Event()

    def after(*args: object) -> None:
        if marker in str(args[2]) and not stopped.is_set():
            stopped.set()
            assert release.wait(TIMEOUT)

    event.listen(engine, "after_cursor_execute", after)
    return stopped, release


def on_postgresql(system: System) -> bool:
    return system.settings.database_url.startswith("postgresql")


def test_an_erasure_and_the_retention_sweep_of_one_address_both_go_through(
    system: System,
) -> None:
    """Ana reads one series and left another years ago. The sweep holds her ended
    subscription while her erasure, which takes her subscriptions in id order, holds the
    one she reads and waits for the ended one. The sweep used to wait for the one she
    reads before deciding on a hash: each waited for the other, and PostgreSQL aborted
    one (deadlock_detected), a 500 on the privacy page or a failed scheduler pass.
    Between them they must erase both, and leave nothing of her but the hash."""
    system.join(ANA[0])
    ended_long_ago(system, ANA[0])
    engine = make_engine(system.settings)
    picked, release = stop_after(engine, "ORDER BY subscribers.ended_at")
    sweep = Racer(system, sweeping(system), engine=engine)
    assert picked.wait(TIMEOUT), sweep.outcome
    eraser = Racer(system, erasing(system))
    eraser.wait_until_blocked(system)
    release.set()
    assert sweep.result() + eraser.result() == 2
    assert_erased(system)


def test_the_sweep_leaves_no_hash_on_an_address_whose_signup_is_being_confirmed(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ana left one series years ago and is clicking the confirmation of a new one as the
    sweep erases the old one. Her address may be hashed only if no confirmed subscription
    is left: the sweep must see the confirmation, whether it waits for it or leaves her
    for the next pass, and never add a hash her confirmation has already looked for."""
    system.signup(ANA[0])
    system.drain()
    pending = system.subscriber(ANA[0]).id
    ended_long_ago(system, ANA[0])
    locked, confirm_on = hold(monkeypatch, signup, "forget_suppression")
    hashing, hash_on = hold(monkeypatch, privacy, "suppress")

    def confirming(sessions: SessionFactory) -> int | None:
        with transaction(sessions) as session:
            event = latest_signup(session, pending)
            assert event is not None
            return confirm(
                session,
                pending,
                event.id,
                now=system.clock.now(),
                seen=Seen(),
                secret=system.settings.secret_key,
                default_timezone=system.settings.default_timezone,
            )

    confirmer = Racer(system, confirming)
    assert locked.wait(TIMEOUT), confirmer.outcome
    sweep = Racer(system, sweeping(system))
    if on_postgresql(system):
        wait_until(
            lambda: sweep.done or hashing.is_set() or lock_waits(system) > 0,
            "the sweep to decide, or to wait for her row",
        )
    else:
        sweep.wait_until_blocked(system)
    confirm_on.set()
    welcome = confirmer.result()
    hash_on.set()
    erased = sweep.result()
    assert erased + system.tick().erased == 1, "the ended subscription goes, now or next"
    with transaction(system.sessions) as session:
        assert not is_suppressed(session, system.settings.secret_key, ANA[0])
    system.enqueue([welcome])
    system.drain()
    assert "Welcome" in system.smtp.to(ANA[0])[-1]["Subject"]


def never_confirmed(system: System, *emails: str) -> None:
    """Sign each address up and let its confirmation go unanswered past the pending TTL."""
    for email in emails:
        system.signup(email)
    system.drain()
    system.clock.advance(system.settings.pending_ttl + timedelta(minutes=1))


def purge_while_erasing(system: System, monkeypatch: pytest.MonkeyPatch) -> tuple[int, Racer]:
    """Run the purge while Ana's erasure holds her rows, stopped just before it deletes
    them; returns what the purge deleted, and the erasure, let go. On PostgreSQL the
    purge may not wait for a lock more than a moment: it fails rather than hangs."""
    locked, release = hold(monkeypatch, privacy, "_delete")
    eraser = Racer(system, erasing(system))
    assert locked.wait(TIMEOUT), eraser.outcome
    try:
        with transaction(system.sessions) as session:
            session.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
            purged = purge_unconfirmed(
                session, now=system.clock.now(), older_than=system.settings.pending_ttl
            )
    finally:
        release.set()
    return purged, eraser


@pytest.mark.parametrize("database_kind", ["postgresql"], indirect=True)
def test_the_purge_leaves_a_signup_an_erasure_holds_to_it_and_never_waits(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither Ana nor Bob confirmed; Ana's erasure has locked her rows as the purge
    runs. The purge deleted in its plan's order, so it waited for her row, and with one
    of her rows taken first each could wait for the other until PostgreSQL aborted one.
    It now takes only rows nobody holds: Bob goes, Ana's erasure goes through and
    deletes her, and nothing of either is left."""
    never_confirmed(system, ANA[0], "bob@example.com")
    purged, eraser = purge_while_erasing(system, monkeypatch)
    assert (purged, eraser.result()) == (1, 1)
    assert_erased(system)
    assert count(system, Subscriber) == 0


@pytest.mark.parametrize("database_kind", ["postgresql"], indirect=True)
def test_a_signup_the_purge_found_held_goes_on_a_later_pass(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An erasure that fails once it has locked its rows (the database aborted it, and
    the page asks for it again) changes nothing: the pass that skipped Ana's signup
    while it was held leaves it to the next, which deletes it."""
    never_confirmed(system, ANA[0])

    def aborted(*args: object) -> None:
        raise RuntimeError("the database aborted the erasure")

    monkeypatch.setattr(privacy, "_delete", aborted)
    purged, eraser = purge_while_erasing(system, monkeypatch)
    assert purged == 0
    with pytest.raises(RuntimeError, match="aborted the erasure"):
        eraser.result()
    assert system.tick().purged == 1


@pytest.mark.parametrize("database_kind", ["postgresql"], indirect=True)
def test_a_signup_being_mailed_as_the_purge_runs_goes_on_the_next_pass(system: System) -> None:
    """A worker sending Cem's confirmation locks his row (drip.delivery_locks) as a
    pass purges signups never confirmed: the purge skips it rather than wait, and the
    next pass deletes it."""
    confirmation = system.signup("cem@example.com")
    assert confirmation is not None
    system.drain()
    system.clock.advance(system.settings.pending_ttl + timedelta(minutes=1))
    engine = make_engine(system.settings)
    try:
        with engine.begin() as worker:
            assert lock_subscriber(worker, confirmation) is not None
            assert system.tick().purged == 0
    finally:
        engine.dispose()
    assert system.tick().purged == 1
    assert count(system, Subscriber) == 0


def test_a_backlog_bigger_than_one_statement_binds_is_purged_in_one_pass(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The purge deletes the ids it locked, so many at a statement at most; a backlog
    beyond that (an import nobody confirmed) still goes in one pass, and the notice only
    its signups pointed to goes with it."""
    never_confirmed(system, "a@example.com", "b@example.com", "c@example.com")
    monkeypatch.setattr(privacy, "IDS_PER_STATEMENT", 2)
    assert system.tick().purged == 3
    assert (count(system, Subscriber), count(system, ConsentText)) == (0, 0)


def passing(system: System) -> Callable[[SessionFactory], int]:
    """A scheduler pass; returns how many signups never confirmed it purged."""

    def work(sessions: SessionFactory) -> int:
        result = configured_pass(
            system.settings, sessions, system.clock, unqueued, signups=unqueued, sweep_only=False
        )
        return result.purged

    return work


def unqueued(ids: Iterable[int]) -> None:
    """What a pass hands the queue, dropped: the test looks only at what it deleted."""


def notices(system: System) -> list[str]:
    with transaction(system.sessions) as session:
        return list(session.scalars(sa.select(ConsentText.body)))


@pytest.mark.parametrize("database_kind", ["postgresql"], indirect=True)
def test_two_erasures_at_once_of_addresses_shown_one_notice_leave_no_notice(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ana and Bob, the only two people shown a notice, erase their addresses at the
    same moment: both have deleted their consent events, neither has committed, when
    they look for the notices left unused. Each used to see the other's events still
    there and keep the notice, which then no event pointed to. (On SQLite the second
    erasure begins only once the first has committed.)"""
    system.join(ANA[0])
    system.join("bob@example.com")
    meet = threading.Barrier(2, timeout=TIMEOUT)
    dropping = consent.drop_unused_texts

    def met(session: Session, text_ids: set[int]) -> None:
        meet.wait()
        dropping(session, text_ids)

    monkeypatch.setattr(consent, "drop_unused_texts", met)
    ana = Racer(system, erasing(system, ANA[0]))
    bob = Racer(system, erasing(system, "bob@example.com"))
    assert ana.result() + bob.result() == 2
    assert notices(system) == []
    assert_erased(system)


def test_an_erasure_and_the_purge_of_a_signup_shown_one_notice_leave_no_notice(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ana erases her address as a scheduler pass purges Cem's signup, never confirmed;
    only the two were shown the notice, and the pass waits for the erasure to delete
    Ana's old received signup. Each used to keep the notice for the other's consent
    events, deleted but not committed. With notices locked, the pass must delete
    received signups before it locks one: when it did so last, it held the notice while
    waiting for the erasure, which was waiting for the notice, and PostgreSQL aborted
    one of the two."""
    system.join(ANA[0])
    system.signup("cem@example.com")
    # Cem's confirmation goes out before the race: the worker sending it locks his row,
    # and a purge running meanwhile skips it (test_a_signup_being_mailed_as_the_purge_
    # runs_goes_on_the_next_pass), which is not the race this test is about.
    system.drain()
    receive(system, ANA[0], queued=False)
    system.clock.advance(system.settings.pending_ttl + timedelta(minutes=1))
    locking, release = hold(monkeypatch, privacy, "subscriptions_of")
    eraser = Racer(system, erasing(system, ANA[0]))
    assert locking.wait(TIMEOUT), eraser.outcome
    scheduler = Racer(system, passing(system))
    scheduler.wait_until_blocked(system)
    release.set()
    assert eraser.result() == 1
    assert scheduler.result() == 1, "Cem's signup is purged"
    assert notices(system) == []
    assert_erased(system)


def test_a_declined_hash_goes_after_its_quiet_period_unless_an_erasure_left_it_too(
    system: System,
) -> None:
    """A declined signup's hash outranks an erasure's, so one address has one hash for
    both. Once the quiet period is over the scheduler deletes the decline's, but where
    the address was also erased, before the decline or after it, the hash stays as the
    erasure's: never mailed again by accident. A bounce's stays for good, and a hash
    declined later waits for its own quiet period to end."""
    secret, now = system.settings.secret_key, system.clock.now()
    suppressed = {
        "dan@example.com": [DECLINED],
        "eva@example.com": [ERASED, DECLINED],
        "fin@example.com": [DECLINED, ERASED],
        "gus@example.com": [DECLINED, "bounced"],
    }
    with transaction(system.sessions) as session:
        for email, reasons in suppressed.items():
            for reason in reasons:
                suppress(session, secret, email, reason, now=now)
        suppress(session, secret, "hal@example.com", DECLINED, now=now + timedelta(minutes=1))
    system.clock.advance(DECLINE_QUIET)
    system.tick()
    emails = [*suppressed, "hal@example.com"]
    with transaction(system.sessions) as session:
        left = {email: suppression(session, secret, email) for email in emails}
    assert left == {
        "dan@example.com": None,
        "eva@example.com": ERASED,
        "fin@example.com": ERASED,
        "gus@example.com": "bounced",
        "hal@example.com": DECLINED,
    }

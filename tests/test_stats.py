"""The dashboard's numbers say what happened: signups the purge deleted and subscriptions
the retention sweep erased still count, a person's own erasure does not, a moved lesson
keeps what was sent as it, a spam complaint is no unsubscribe, and the charts count
whole UTC days."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from drip.db import reading, transaction
from drip.lessons import move_step
from drip.models import ConsentMethod, Sequence, Step, TemplateVersion
from drip.privacy import erase_address
from drip.stats import Overview, confirmations_by_series, overview
from drip.subscriptions import unsubscribe
from tests.helpers import System, erase_ended_after_a_day
from tests.test_bounces import report, sent_ids
from tests.test_intake import assert_erased
from tests.test_privacy import never_confirmed, purge_while_erasing


def numbers(system: System) -> Overview:
    with reading(system.sessions) as session:
        sequence_id = session.scalars(sa.select(Sequence.id).order_by(Sequence.id)).first()
        assert sequence_id is not None
        return overview(session, sequence_id, now=system.clock.now())


def next_day(system: System) -> None:
    """A day and a bit later, past the send hour: the next lesson goes out."""
    system.clock.advance(timedelta(days=1, hours=3))
    system.tick()
    system.drain()


def leave(system: System, email: str) -> None:
    with transaction(system.sessions) as session:
        subscriber_id = system.subscriber(email, session=session).id
        unsubscribe(session, subscriber_id, system.clock.now(), method=ConsentMethod.LINK)


def test_signups_never_confirmed_still_count_once_the_purge_deleted_them(
    system: System,
) -> None:
    """Six signed up and five confirmed: 83%. The purge deleted the sixth, and the
    dashboard said five signups, 100% confirmed, with one fewer on the day they came."""
    readers = ["ana", "ben", "cy", "dee", "fay", "eve"]
    for reader in readers:
        system.signup(f"{reader}@example.com")
    system.drain()
    for reader in readers[:5]:
        system.confirm(f"{reader}@example.com")
    system.drain()
    before = numbers(system)

    system.clock.advance(system.settings.pending_ttl + timedelta(minutes=1))
    assert system.tick().purged == 1
    after = numbers(system)

    assert (before.total, after.total) == (6, 6)
    assert after.confirmation_rate == before.confirmation_rate == 5 / 6
    assert after.purged == 1 and after.by_status.get("pending", 0) == 0
    assert dict(after.signups)[date(2026, 10, 24)] == 6


def test_purges_of_one_day_add_up(system: System) -> None:
    """Ana signed up in the morning and Ben in the evening of the same day; the purge
    deletes each on a pass of its own, and the day keeps both."""
    system.signup("ana@example.com")
    system.drain()  # her confirmation email goes now: the purge counts from it
    system.clock.advance(timedelta(hours=10))
    system.signup("ben@example.com")
    system.drain()
    system.clock.advance(system.settings.pending_ttl - timedelta(hours=9))
    assert system.tick().purged == 1
    system.clock.advance(timedelta(hours=10))
    assert system.tick().purged == 1

    counted = numbers(system)
    assert dict(counted.signups)[date(2026, 10, 24)] == 2
    assert counted.total == counted.purged == 2


def test_readers_erased_at_retention_still_count_but_one_who_asked_is_in_no_number(
    system: System,
) -> None:
    """Six signed up, five confirmed (83%), and the purge deleted the sixth. The five
    unsubscribed; once the retention period was over the sweep erased them with their
    consent log, and the dashboard said one signup, the purged one, 0% confirmed. Gil
    confirmed too, then asked to be erased: she is in none of the numbers."""
    readers = ["ana", "ben", "cy", "dee", "fay", "eve", "gil"]
    for reader in readers:
        system.signup(f"{reader}@example.com")
    system.drain()
    for reader in [*readers[:5], "gil"]:
        system.confirm(f"{reader}@example.com")
    system.drain()
    erase_address(
        system.sessions,
        "gil@example.com",
        secret=system.settings.secret_key,
        now=system.clock.now(),
        outbox=None,
    )
    system.clock.advance(system.settings.pending_ttl + timedelta(minutes=1))
    assert system.tick().purged == 1
    for reader in readers[:5]:
        leave(system, f"{reader}@example.com")
    before = numbers(system)

    system.clock.advance(system.settings.retention + timedelta(days=1))
    assert system.tick().erased == 5
    after = numbers(system)

    assert (before.total, before.confirmed, before.purged) == (6, 5, 1)
    assert (after.total, after.confirmed, after.purged) == (6, 5, 1)
    assert after.confirmation_rate == before.confirmation_rate == 5 / 6
    assert after.by_status == {}
    with reading(system.sessions) as session:
        assert set(confirmations_by_series(session).values()) == {5}, "drip_confirmations"


def test_the_charts_keep_the_days_of_what_the_retention_sweep_erased(system: System) -> None:
    """Ana signed up one day, confirmed the next and unsubscribed. Erased once her
    subscription had ended longer ago than the retention period (a day, here), she
    still counts on both days."""
    system.signup("ana@example.com")
    system.drain()
    system.clock.advance(timedelta(days=1))
    system.confirm("ana@example.com")
    system.drain()
    leave(system, "ana@example.com")
    system.clock.advance(timedelta(days=2))
    before = numbers(system)

    assert erase_ended_after_a_day(system) == 1
    after = numbers(system)

    assert (after.signups, after.confirmations) == (before.signups, before.confirmations)
    assert dict(after.signups)[date(2026, 10, 24)] == 1
    assert dict(after.confirmations)[date(2026, 10, 25)] == 1
    assert (after.by_status, after.total, after.confirmed) == ({}, 1, 1)


@pytest.mark.parametrize("database_kind", ["postgresql"], indirect=True)
def test_a_signup_erased_as_the_purge_runs_is_erased_not_counted(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ana's erasure holds her signup as the purge runs: the purge deletes Bob and counts
    him, and Ana's erasure takes her out of the numbers, as an erasure does."""
    never_confirmed(system, "ana@example.com", "bob@example.com")
    purged, eraser = purge_while_erasing(system, monkeypatch)
    assert (purged, eraser.result()) == (1, 1)
    assert_erased(system)
    assert system.tick().purged == 0

    counted = numbers(system)
    assert (counted.total, counted.by_status) == (1, {})
    assert counted.purged == 1


def test_the_charts_count_thirty_whole_utc_days_today_the_last(system: System) -> None:
    """At 06:30 the first bar counted from 06:30, thirty-one days back: a signup at 07:00
    was on it, one at 06:00 on the same day was not."""
    start = system.clock.now()
    system.join("early@example.com")
    system.clock.advance(timedelta(hours=1))
    system.join("late@example.com")
    system.clock.set(start.replace(day=25, hour=0, minute=10))
    system.join("midnight@example.com")
    system.clock.set(start + timedelta(days=30, minutes=30))

    counted = numbers(system)
    for per_day in (counted.signups, counted.confirmations):
        assert len(per_day) == 30
        assert per_day[0] == (date(2026, 10, 25), 1), "all of the first day, and only it"
        assert per_day[-1] == (date(2026, 11, 23), 0)
        assert sum(n for _, n in per_day) == 1


def subjects(system: System) -> dict[int, str]:
    """The subject of each lesson's latest version, by its number now."""
    with reading(system.sessions) as session:
        return {
            step.number: session.scalars(
                sa.select(TemplateVersion.subject)
                .where(TemplateVersion.step_id == step.id)
                .order_by(TemplateVersion.id.desc())
            ).first()
            or ""
            for step in session.scalars(sa.select(Step))
        }


def test_a_moved_lesson_keeps_what_was_sent_as_it(system: System) -> None:
    """Cy had lessons 1 to 4, Ana and Ben 1 to 3, when lessons 3 and 4 swapped places;
    then Ben and Cy unsubscribed. Counted by the steps' new numbers, the funnel said
    nobody had had lesson 3 and the table put both unsubscribes after lesson 4, though
    Cy's last email was the one now numbered 3."""
    system.join("cy@example.com")
    next_day(system)
    system.join("ana@example.com")
    system.join("ben@example.com")
    while system.subscriber("ben@example.com").next_step != 4:
        next_day(system)
    old = subjects(system)
    with transaction(system.sessions) as session:
        lesson_3 = session.scalar(sa.select(Step.id).where(Step.number == 3))
        assert lesson_3 is not None
        move_step(session, lesson_3, earlier=False)
    leave(system, "ben@example.com")
    leave(system, "cy@example.com")

    counted = numbers(system)
    lesson = {step.number: step for step in counted.steps}
    assert (lesson[3].sent, lesson[3].left_after) == (1, 1), "Cy's last email"
    assert (lesson[4].sent, lesson[4].left_after) == (3, 1), "Ben's last email"
    assert (lesson[3].subject, lesson[4].subject) == (old[4], old[3])
    assert counted.reached[:6] == [3, 3, 3, 3, 1, 0], "by the order they were sent"


def test_a_spam_complaint_and_bounces_count_on_their_email_not_as_unsubscribes(
    system: System,
) -> None:
    """Of five readers of lesson 1, Ben unsubscribed, Dee reported it as spam, Cy's
    address bounced and Eve's mailbox was full: "unsubscribed after it" said 2."""
    for reader in ["ana", "ben", "cy", "dee", "eve"]:
        system.join(f"{reader}@example.com")
    next_day(system)
    leave(system, "ben@example.com")
    for kind, reader in [("complaint", "dee"), ("hard", "cy"), ("soft", "eve")]:
        address = f"{reader}@example.com"
        report(system, kind, sent_ids(system, address)[-1], address)

    counted = numbers(system)
    lesson_1 = counted.steps[1]
    assert (lesson_1.sent, lesson_1.left_after) == (5, 1)
    assert lesson_1.complaints == 1
    assert (lesson_1.hard_bounces, lesson_1.soft_bounces) == (1, 1)
    assert counted.complained == 1
    assert (counted.by_status["unsubscribed"], counted.by_status["bounced"]) == (2, 1)


def test_a_past_reader_who_signs_up_and_confirms_again_counts_again(system: System) -> None:
    """Ana confirmed on the 24th, unsubscribed, and signed up and confirmed again on the
    27th: the dashboard, counting rows, said one signup, none on the 27th, and counted
    only her latest confirmation."""
    system.join("ana@example.com")
    leave(system, "ana@example.com")
    system.clock.advance(timedelta(days=3))
    system.join("ana@example.com")

    counted = numbers(system)
    assert (counted.total, counted.confirmed, counted.confirmation_rate) == (2, 2, 1.0)
    for per_day in (counted.signups, counted.confirmations):
        assert dict(per_day)[date(2026, 10, 24)] == 1
        assert dict(per_day)[date(2026, 10, 27)] == 1, "the day she came back"


def test_a_past_readers_new_signup_purged_unconfirmed_still_counts(system: System) -> None:
    """Ana confirmed, unsubscribed, and signed up again without confirming. The purge
    takes only her new signup and restores her confirmation: the dashboard's one signup,
    0% confirmed, became one signup, 100% confirmed."""
    system.join("ana@example.com")
    leave(system, "ana@example.com")
    system.clock.advance(timedelta(days=3))
    system.signup("ana@example.com")
    system.drain()
    before = numbers(system)

    system.clock.advance(system.settings.pending_ttl + timedelta(minutes=1))
    assert system.tick().purged == 1
    after = numbers(system)

    assert system.subscriber("ana@example.com").confirmed_at is not None, "her record stays"
    assert (before.total, before.confirmed) == (after.total, after.confirmed) == (2, 1)
    assert (after.purged, after.confirmation_rate) == (1, 1 / 2)
    assert dict(after.signups)[date(2026, 10, 27)] == 1, "the signup the purge took"

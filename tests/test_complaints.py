"""The complaint guard (DEL-01): what it holds and warns at, the day a complaint counts
on, and that it reads few rows however busy the day, agreeing with a full count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from drip import complaints
from drip.bounces import Tally, apply
from drip.complaints import DayRate, Level, day_rate, holding_rate
from drip.db import transaction
from drip.reports import Report
from tests.helpers import System, plan_of, sent_today

MIDNIGHT = datetime(2026, 10, 24, tzinfo=UTC)


@pytest.mark.parametrize(
    ("delivered", "reported", "level"),
    [
        (200, 1, Level.OK),  # 0.5%, but one complaint is noise
        (200, 2, Level.WARN),  # 1%: one more and lessons are held
        (200, 3, Level.HOLD),  # a small list: three in a day are a signal
        (500, 50, Level.HOLD),  # 10%, which a floor of 1,000 emails let through
        (0, 3, Level.OK),  # nothing sent to set them against, nothing to hold yet
        (2000, 2, Level.WARN),  # 0.1%
        (2000, 3, Level.WARN),  # 0.15%
        (10_000, 26, Level.HOLD),  # the standard's case: 0.26%
        (10_000, 9, Level.WARN),
        (10_000, 7, Level.OK),  # 0.07%
    ],
)
def test_a_hold_takes_the_rate_and_three_complaints(
    delivered: int, reported: int, level: Level
) -> None:
    today = DayRate(MIDNIGHT, MIDNIGHT, delivered=delivered, complaints=reported)
    assert today.level is level


@pytest.mark.parametrize(
    ("delivered", "reported", "held"),
    [
        (200, 2, False),
        (200, 3, True),
        (999, 3, True),
        (1200, 3, True),
        (1201, 3, False),
        (4000, 10, True),
        (4001, 10, False),
        (10_000, 26, True),
        (3000, 0, False),
    ],
)
def test_the_guard_holds_exactly_when_the_full_count_says_so(
    system: System, delivered: int, reported: int, held: bool
) -> None:
    sent_today(system, delivered, complaints=reported)
    with transaction(system.sessions) as session:
        full = day_rate(session, system.clock.now())
        quick = holding_rate(session, system.clock.now())
        hold = complaints.guard(session, system.clock.now())
    assert (full.delivered, full.complaints) == (delivered, reported)
    assert (full.level is Level.HOLD) == held
    assert (quick is not None) == held
    assert (hold is not None) == held
    if quick is not None:
        assert quick == full, "a hold states the day's real figures"


def complain(system: System, *addresses: str) -> None:
    """Spam complaints naming only the address, as a provider's webhook sends them now."""
    now = system.clock.now()
    with transaction(system.sessions) as session:
        apply(
            session,
            [Report("complaint", address, "", "test", dated=now) for address in addresses],
            secret=system.settings.secret_key,
            tokens=system.mailer.tokens,
            now=now,
            tally=Tally(),
        )


def test_a_complaint_counts_on_the_day_it_arrives_not_the_day_its_email_went(
    system: System,
) -> None:
    """Complaints about yesterday's email that came in after midnight counted on no day:
    they were counted against the day the email was sent, already past."""
    sent_today(system, 200, complaints=0)  # 06:00
    system.clock.advance(timedelta(hours=19))  # 01:00 the next day
    complain(system, "r0@example.org", "r1@example.org", "r2@example.org")
    complain(system, "r0@example.org")  # a provider retrying counts once

    with transaction(system.sessions) as session:
        today = day_rate(session, system.clock.now())
        hold = complaints.guard(session, system.clock.now())
    assert (today.complaints, today.delivered) == (3, 200)
    assert hold is not None
    assert hold.reason.startswith("3 spam complaints since 2026-10-25 00:00 UTC, against 200")

    system.clock.advance(timedelta(days=1))
    with transaction(system.sessions) as session:
        tomorrow = day_rate(session, system.clock.now())
    assert (tomorrow.complaints, tomorrow.delivered) == (0, 0), "each counts on one day"


def test_the_morning_complaints_about_yesterday_do_not_hold_a_healthy_list(
    system: System,
) -> None:
    """10,000 emails a day at 0.1%: three of yesterday's ten complaints come in overnight,
    before today's emails go out. Set against the emails sent since midnight alone, they
    would make it 0.3% once the first 1,000 of the day are out."""
    sent_today(system, 10_000, complaints=7)  # 06:00, and seven complaints that day
    system.clock.advance(timedelta(hours=20))  # 02:00
    complain(system, "r7@example.org", "r8@example.org", "r9@example.org")
    system.clock.advance(timedelta(hours=3))  # 05:00: today's emails start going out
    sent_today(system, 1000, complaints=0)

    with transaction(system.sessions) as session:
        today = day_rate(session, system.clock.now())
        assert complaints.guard(session, system.clock.now()) is None
    assert (today.complaints, today.delivered) == (3, 11_000)
    assert today.level is Level.OK


def test_counting_the_days_complaints_uses_their_own_index(system: System) -> None:
    """On a day of a million emails, reading the day's rows for its few complaints cost
    about half a second on every scheduler pass."""
    with transaction(system.sessions) as session:
        query = complaints._COMPLAINTS.params(since=system.clock.now())
        assert "ix_deliveries_complained_at" in plan_of(session, query)

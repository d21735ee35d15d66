"""The complaint guard (DEL-01): what it holds and warns at, and that it reads few rows
however busy the day, agreeing with a full count."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from drip import complaints
from drip.complaints import DayRate, Level, day_rate, holding_rate
from drip.db import transaction
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
    today = DayRate(MIDNIGHT, delivered=delivered, complaints=reported)
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


def test_counting_the_days_complaints_uses_their_own_index(system: System) -> None:
    """On a day of a million emails, reading the day's rows for its few complaints cost
    about half a second on every scheduler pass."""
    with transaction(system.sessions) as session:
        query = complaints._COMPLAINTS.params(since=system.clock.now())
        assert "ix_deliveries_complaints" in plan_of(session, query)

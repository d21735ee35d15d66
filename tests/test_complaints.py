"""The complaint guard reads few rows however busy the day, and agrees with a full count."""

from __future__ import annotations

import pytest

from drip import complaints
from drip.complaints import Level, day_rate, holding_rate
from drip.db import transaction
from tests.helpers import System, plan_of, sent_today


@pytest.mark.parametrize(
    ("delivered", "reported"),
    [(999, 3), (1000, 2), (1000, 3), (1200, 3), (1201, 3), (4000, 10), (4001, 10), (3000, 0)],
)
def test_the_guard_holds_exactly_when_the_full_count_says_so(
    system: System, delivered: int, reported: int
) -> None:
    sent_today(system, delivered, complaints=reported)
    with transaction(system.sessions) as session:
        full = day_rate(session, system.clock.now())
        quick = holding_rate(session, system.clock.now())
    assert (quick is not None) == (full.level is Level.HOLD)
    if quick is not None:
        assert quick == full, "a hold states the day's real figures"


def test_counting_the_days_complaints_uses_their_own_index(system: System) -> None:
    """On a day of a million emails, reading the day's rows for its few complaints cost
    about half a second on every scheduler pass."""
    with transaction(system.sessions) as session:
        query = complaints._COMPLAINTS.params(since=system.clock.now())
        assert "ix_deliveries_complaints" in plan_of(session, query)

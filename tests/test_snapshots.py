"""Dashboard numbers counted by a worker: stored faithfully, asked for at most once per
DRIP_RECOUNT_EVERY, and shown instead of a live count only on a big list."""

from __future__ import annotations

from datetime import date, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from drip.db import create_db_engine, make_session_factory, reading, transaction
from drip.models import Sequence, StatsSnapshot
from drip.snapshots import dashboard_numbers, from_json, recount_series
from drip.stats import overview
from tests.helpers import System


def series_id(system: System) -> int:
    with reading(system.sessions) as session:
        return session.scalars(sa.select(Sequence.id).order_by(Sequence.id)).first() or 0


def snapshot(system: System) -> StatsSnapshot | None:
    with reading(system.sessions) as session:
        found = session.get(StatsSnapshot, series_id(system))
        if found is not None:
            session.expunge(found)
        return found


def test_a_stored_count_reads_back_equal_to_a_live_one(system: System) -> None:
    system.join("ana@example.com")
    system.join("ben@example.com")
    system.signup("cy@example.com")
    system.clock.advance(timedelta(days=1, hours=3))
    system.tick()
    system.drain()
    now = system.clock.now()

    recount_series(system.sessions, series_id(system), now=now)

    stored = snapshot(system)
    assert stored is not None and stored.body is not None
    assert stored.computed_at == now
    with reading(system.sessions) as session:
        live = overview(session, series_id(system), now=now)
    assert from_json(stored.body) == live
    assert live.total == 3 and live.steps[1].sent == 2, "the count is not empty"


def test_the_scheduler_asks_for_a_count_at_most_once_per_interval(system: System) -> None:
    every = system.settings.recount_every
    system.tick()
    assert system.recounts == [series_id(system)]
    system.tick()
    system.clock.advance(every - timedelta(seconds=1))
    system.tick()
    assert len(system.recounts) == 1, "asked again before the interval, with no worker yet"

    system.clock.advance(timedelta(seconds=1))
    system.tick()
    assert len(system.recounts) == 2
    system.drain()
    stored = snapshot(system)
    assert stored is not None and stored.computed_at == system.clock.now(), "a worker counted"


def test_a_sweep_alone_asks_for_no_count(system: System) -> None:
    system.tick(sweep_only=True)
    assert system.recounts == []


def test_a_small_list_is_counted_live_whatever_is_stored(system: System) -> None:
    system.join("ana@example.com")
    recount_series(system.sessions, series_id(system), now=system.clock.now())
    system.join("ben@example.com")
    with reading(system.sessions) as session:
        counted = dashboard_numbers(
            session, series_id(system), now=system.clock.now(), live_up_to=2
        )
    assert counted.as_of is None
    assert counted.overview.total == 2


def test_a_big_list_shows_the_stored_count_and_its_time(system: System) -> None:
    system.join("ana@example.com")
    counted_at = system.clock.now()
    recount_series(system.sessions, series_id(system), now=counted_at)
    system.clock.advance(timedelta(minutes=4, seconds=30))
    system.join("ben@example.com")
    with reading(system.sessions) as session:
        counted = dashboard_numbers(
            session, series_id(system), now=system.clock.now(), live_up_to=1
        )
    assert counted.as_of == counted_at
    assert counted.age(system.clock.now()) == "4 min"
    assert counted.age(counted_at + timedelta(hours=3, minutes=59)) == "3 hours"
    assert counted.age(counted_at + timedelta(days=3)) == "3 days"
    assert counted.overview.total == 1, "the stored count, not a live one"


def test_the_charts_count_utc_days_whatever_the_database_timezone(system: System) -> None:
    """A PostgreSQL server set to Auckland's time (UTC+13 in October) put a signup at
    12:30 UTC on 24 October on the 25th, a day the chart, labelled in UTC, leaves out."""
    system.clock.advance(timedelta(hours=6, minutes=30))
    system.signup("ana@example.com")
    url = make_url(system.settings.database_url)
    engine = create_db_engine(system.settings.database_url)
    try:
        if url.get_backend_name() == "postgresql":
            with engine.begin() as conn:
                conn.execute(
                    sa.text(f"ALTER DATABASE \"{url.database}\" SET timezone = 'Pacific/Auckland'")
                )
            engine.dispose()  # the setting holds for connections made from now on
        with reading(make_session_factory(engine)) as session:
            numbers = overview(session, series_id(system), now=system.clock.now())
    finally:
        engine.dispose()
    assert numbers.signups[-1] == (date(2026, 10, 24), 1)
    assert sum(count for _, count in numbers.signups) == 1


def test_a_count_stored_by_an_older_release_is_counted_again_live(system: System) -> None:
    """A count stored before an upgrade lacks what the dashboard now shows (the purged
    signups, complaints and bounces): until a worker counts again, the page counts live
    rather than fail on it or show it."""
    system.join("ana@example.com")
    recount_series(system.sessions, series_id(system), now=system.clock.now())
    with transaction(system.sessions) as session:
        stored = session.get_one(StatsSnapshot, series_id(system))
        stored.body = {
            "by_status": {"active": 1},
            "confirmed": 1,
            "signups": [],
            "confirmations": [],
            "steps": [{"number": 0, "sent": 1, "failed": 0, "left_after": 0}],
        }
    with reading(system.sessions) as session:
        counted = dashboard_numbers(
            session, series_id(system), now=system.clock.now(), live_up_to=0
        )
    assert counted.as_of is None
    assert counted.overview.total == 1 and len(counted.overview.signups) == 30

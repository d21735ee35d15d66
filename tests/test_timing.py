"""Local-day arithmetic (drip.timing): one lesson per local day, at the local send hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from drip.timing import (
    at_send_hour,
    catch_up,
    known_zones,
    next_send_at,
    overdue,
    zone,
)

BERLIN = zone("Europe/Berlin")
NEW_YORK = zone("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_confirming_late_at_night_does_not_bring_the_first_lesson_within_the_hour() -> None:
    confirmed = utc(2026, 3, 10, 22, 30)  # 23:30 in Berlin
    first = next_send_at(due_at=confirmed, now=confirmed, day_gap=1, hour=8, tz=BERLIN)
    assert first == utc(2026, 3, 11, 7, 0)
    assert first - confirmed > timedelta(hours=8)


@pytest.mark.parametrize(
    ("day", "expected_utc_hour"),
    [
        (datetime(2026, 3, 28).date(), 7),  # CET, UTC+1
        (datetime(2026, 3, 29).date(), 6),  # clocks went forward at 02:00: CEST, UTC+2
        (datetime(2026, 10, 25).date(), 7),  # clocks went back at 03:00: CET again
    ],
)
def test_the_send_hour_follows_daylight_saving_time(day: object, expected_utc_hour: int) -> None:
    assert at_send_hour(day, 8, BERLIN).hour == expected_utc_hour  # type: ignore[arg-type]


def test_daylight_saving_changes_neither_skip_nor_double_a_day() -> None:
    due = utc(2026, 3, 7, 13, 0)  # 08:00 EST
    days = []
    for _ in range(4):
        due = next_send_at(due_at=due, now=due, day_gap=1, hour=8, tz=NEW_YORK)
        days.append(due.astimezone(NEW_YORK).strftime("%d %H:%M"))
    assert days == ["08 08:00", "09 08:00", "10 08:00", "11 08:00"]


def test_a_send_hour_inside_the_spring_forward_gap_still_happens_that_day() -> None:
    when = at_send_hour(datetime(2026, 3, 29).date(), 2, BERLIN)
    assert when.astimezone(BERLIN).date().isoformat() == "2026-03-29"


def test_a_send_hour_the_clocks_jump_over_at_midnight_stays_on_its_day() -> None:
    """Nuuk's clocks went from 23:00 straight to 00:00 on 28 March 2026."""
    nuuk = zone("America/Nuuk")
    due = at_send_hour(datetime(2026, 3, 27).date(), 23, nuuk)
    days = []
    for _ in range(3):
        due = next_send_at(due_at=due, now=due, day_gap=1, hour=23, tz=nuuk)
        days.append(due.astimezone(nuuk).strftime("%d %H:%M"))
    assert days == ["28 22:59", "29 23:00", "30 23:00"]


def test_a_send_hour_inside_a_two_hour_gap_goes_out_as_the_clocks_land() -> None:
    """Troll's clocks jump from 01:00 to 03:00: 01:00 and 02:00 both go out at 03:00."""
    troll = zone("Antarctica/Troll")
    day = datetime(2026, 3, 29).date()
    landed = [at_send_hour(day, hour, troll).astimezone(troll).isoformat() for hour in (1, 2, 3)]
    assert landed == ["2026-03-29T03:00:00+02:00"] * 3


def test_after_an_outage_the_next_lesson_waits_for_the_next_local_day() -> None:
    planned = utc(2026, 5, 1, 6, 0)
    sent_late = utc(2026, 5, 4, 10, 0)
    assert next_send_at(due_at=planned, now=sent_late, day_gap=1, hour=8, tz=BERLIN) == utc(
        2026, 5, 5, 6, 0
    )


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Mars/Base",
        "../../etc/passwd",
        "/etc/localtime",
        "UTC\n",
        "localtime",
        "Factory",
        "posixrules",
        "right/UTC",
        "posix/Europe/Berlin",
    ],
)
def test_only_real_iana_zone_names_are_accepted(name: str) -> None:
    """ "localtime" is the server's own /etc/localtime, linked into the zoneinfo folder on
    Debian; "Factory" and the rest are tz database files that name no place."""
    with pytest.raises(ValueError):
        zone(name)
    assert name not in known_zones()


@pytest.mark.parametrize("name", ["Europe/Kyiv", "Europe/Kiev", "US/Eastern", "UTC", "Etc/GMT-3"])
def test_real_zones_and_their_old_names_are_accepted(name: str) -> None:
    assert zone(name).key == name
    assert name in known_zones()


def test_the_lesson_after_one_caught_up_late_comes_a_full_day_later_at_the_send_hour() -> None:
    due = utc(2026, 5, 1, 6, 0)
    sent_late = utc(2026, 5, 4, 21, 30)  # 23:30 in Berlin
    next_morning = next_send_at(due_at=due, now=sent_late, day_gap=1, hour=8, tz=BERLIN)
    assert next_morning == utc(2026, 5, 5, 6, 0)
    caught_up = catch_up(next_morning, sent_at=sent_late, day_gap=1, hour=8, tz=BERLIN)
    assert caught_up == utc(2026, 5, 6, 6, 0), "not 23:30 the next night: 08:00 after it"


def test_a_longer_planned_gap_counts_from_when_the_late_lesson_went_out() -> None:
    sent_late = utc(2026, 5, 4, 10, 0)  # 12:00 in Berlin
    planned = utc(2026, 5, 7, 6, 0)  # three days after it was due, on 4 May
    caught_up = catch_up(planned, sent_at=sent_late, day_gap=3, hour=8, tz=BERLIN)
    assert caught_up == utc(2026, 5, 8, 6, 0)


def test_a_lesson_is_overdue_only_past_twenty_hours() -> None:
    due = utc(2026, 5, 1, 6, 0)
    assert not overdue(due, due + timedelta(hours=19, minutes=59))
    assert overdue(due, due + timedelta(hours=20, minutes=1))

"""Adding, removing and moving lessons at the same moment, on PostgreSQL (SQLite runs
one writing transaction at a time)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from drip import lessons
from drip.db import SessionFactory, transaction
from drip.errors import InvalidInput
from drip.models import Sequence, Step
from drip.series_files import latest_version, version_template
from tests.helpers import System
from tests.test_intake import Racer

pytestmark = pytest.mark.parametrize("database_kind", ["postgresql"], indirect=True)


def add_lesson(system: System, session: Session) -> int:
    """Add a copy of the last lesson, as the editor would; returns its number."""
    series = session.scalars(sa.select(Sequence)).one()
    template = version_template(latest_version(session, series.steps[-1].id))
    step = lessons.add_step(
        session, system.mailer.renderer, series, template, author="ana", now=system.clock.now()
    )
    return step.number


def _adding(system: System) -> Callable[[SessionFactory], int]:
    def work(sessions: SessionFactory) -> int:
        with transaction(sessions) as session:
            return add_lesson(system, session)

    return work


def _removing(step_id: int, *, loaded: bool = False) -> Callable[[SessionFactory], None]:
    """`loaded`: the caller has loaded the step before, and holds it, as a route that
    reads the series' slug from it may."""

    def work(sessions: SessionFactory) -> None:
        with transaction(sessions) as session:
            held = session.get_one(Step, step_id) if loaded else None
            lessons.remove_step(session, step_id)
            del held

    return work


def _moving(step_id: int, *, earlier: bool) -> Callable[[SessionFactory], int]:
    def work(sessions: SessionFactory) -> int:
        with transaction(sessions) as session:
            return lessons.move_step(session, step_id, earlier=earlier).number

    return work


def numbers(system: System) -> list[int]:
    with transaction(system.sessions) as session:
        return list(session.scalars(sa.select(Step.number).order_by(Step.number)))


def last_step_id(system: System) -> int:
    with transaction(system.sessions) as session:
        return session.scalars(sa.select(Step.id).order_by(Step.number.desc()).limit(1)).one()


def test_a_lesson_added_during_the_removal_of_the_last_takes_its_place(system: System) -> None:
    """An admin removes lesson 10 while another adds a lesson. The add read lesson 10,
    not yet gone, and added lesson 11; the removal then committed, and the series
    skipped from 9 to 11. The add must wait for the removal and add lesson 10."""
    last = last_step_id(system)
    with transaction(system.sessions) as session:
        lessons.remove_step(session, last)
        adding = Racer(system, _adding(system))
        adding.wait_until_blocked(system)
    assert adding.result() == 10
    assert numbers(system) == list(range(11)), "no gap"


def test_removing_the_last_lesson_during_an_add_is_refused(system: System) -> None:
    """An admin adds lesson 11 while another removes lesson 10. The removal read 10 as
    the last, the add not yet committed, and deleted it: the series skipped from 9 to
    11. The removal must wait for the add and find lesson 10 is no longer the last."""
    last = last_step_id(system)
    with transaction(system.sessions) as session:
        assert add_lesson(system, session) == 11
        removing = Racer(system, _removing(last))
        removing.wait_until_blocked(system)
    with pytest.raises(InvalidInput, match="only the last lesson"):
        removing.result()
    assert numbers(system) == list(range(12)), "lesson 10 kept"


def test_removing_the_last_lesson_as_it_moves_earlier_is_refused(system: System) -> None:
    """An admin moves lesson 10 before lesson 9 while another removes lesson 10, from a
    session that had loaded it already. The removal waited for the move's lock on the
    step, but the session's copy kept the number read before (10): found still the
    last, it deleted what was now lesson 9, and the series skipped from 8 to 10. It must
    read the step afresh and find it is no longer the last."""
    last = last_step_id(system)
    with transaction(system.sessions) as session:
        assert lessons.move_step(session, last, earlier=True).number == 9
        removing = Racer(system, _removing(last, loaded=True))
        removing.wait_until_blocked(system)
    with pytest.raises(InvalidInput, match="only the last lesson"):
        removing.result()
    assert numbers(system) == list(range(11)), "no gap"


def test_moving_a_lesson_past_the_last_as_it_is_removed_is_refused(system: System) -> None:
    """An admin moves lesson 9 after lesson 10 while another removes lesson 10. The move
    read lesson 10 before the removal committed, then failed on the row that was gone
    (a server error). It must wait for the removal and find lesson 9 is the last now."""
    last = last_step_id(system)
    with transaction(system.sessions) as session:
        ninth = session.scalars(sa.select(Step.id).where(Step.number == 9)).one()
        lessons.remove_step(session, last)
        moving = Racer(system, _moving(ninth, earlier=False))
        moving.wait_until_blocked(system)
    with pytest.raises(InvalidInput, match="one neighbour"):
        moving.result()
    assert numbers(system) == list(range(10))


def test_two_moves_of_neighbouring_lessons_take_turns(system: System) -> None:
    """One admin moves lesson 8 after lesson 9 while another moves lesson 10 before
    lesson 9. The second read lesson 9 before the first committed and gave that step
    number 9 again once it had become lesson 8, beside the step now numbered 9 (a server
    error). It must wait, then swap lesson 10 with the lesson 9 the first move made."""
    with transaction(system.sessions) as session:
        by_number = {
            number: id_ for number, id_ in session.execute(sa.select(Step.number, Step.id))
        }
    eighth, ninth, tenth = by_number[8], by_number[9], by_number[10]
    with transaction(system.sessions) as session:
        lessons.move_step(session, eighth, earlier=False)
        moving = Racer(system, _moving(tenth, earlier=True))
        moving.wait_until_blocked(system)
    assert moving.result() == 9
    with transaction(system.sessions) as session:
        order = list(session.scalars(sa.select(Step.id).order_by(Step.number)))
    assert order[8:] == [ninth, tenth, eighth]


def test_a_lesson_added_as_the_last_moves_to_a_later_day_follows_it(system: System) -> None:
    """An admin moves lesson 10 from day 10 to day 20 while another adds a lesson. The
    add read day 10 and put lesson 11 on day 11, before lesson 10: readers would be sent
    it the day after lesson 10, listed on a day it is not sent. The add must wait and
    put lesson 11 on day 21."""
    last = last_step_id(system)
    with transaction(system.sessions) as session:
        lessons.set_day(session, last, 20, now=system.clock.now(), default_timezone="UTC")
        adding = Racer(system, _adding(system))
        adding.wait_until_blocked(system)
    assert adding.result() == 11
    with transaction(system.sessions) as session:
        days = list(session.scalars(sa.select(Step.day_offset).order_by(Step.number)))
    assert days[-2:] == [20, 21]

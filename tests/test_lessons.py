"""Adding and removing lessons at the same moment, on PostgreSQL (SQLite runs one
writing transaction at a time)."""

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


def _removing(step_id: int) -> Callable[[SessionFactory], None]:
    def work(sessions: SessionFactory) -> None:
        with transaction(sessions) as session:
            lessons.remove_step(session, step_id)

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

"""`drip init`: create or upgrade the database, then install the shipped series if none is.

Every template of the series is checked in the same sandbox the worker renders with
before anything is written, so a broken file fails here, not in a worker at 3 a.m.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from drip import schema
from drip.clock import Clock
from drip.db import make_session_factory, transaction
from drip.lessons import SAMPLE, check_email, check_lesson, lesson_values
from drip.logs import held_back
from drip.models import Sequence, Step
from drip.rendering import LESSON_VARIABLES, Renderer
from drip.series_files import (
    CONFIRM_FOLDER,
    PRIVACY_FOLDER,
    SeriesFile,
    in_folder,
    install_series,
    read_email,
    read_series,
)
from drip.settings import Settings

FIXED_SAMPLE = {
    **SAMPLE,
    "confirm_url": "https://example.invalid/confirm/x",
    "confirm_days": 7,
    "privacy_url": "https://example.invalid/privacy/x",
}
FIXED_EMAILS = {
    CONFIRM_FOLDER: LESSON_VARIABLES - {"lesson_number"} | {"confirm_url", "confirm_days"},
    PRIVACY_FOLDER: LESSON_VARIABLES - {"lesson_number"} | {"privacy_url"},
}


def check_series(
    renderer: Renderer, series: SeriesFile, settings: Settings, *, session: Session | None = None
) -> None:
    """The same checks an admin's save runs, for every lesson, plus the fixed emails;
    an error names the folder and file to fix.

    Each lesson is also checked with its own values once loaded, as the editor checks
    it (drip.lessons.check_lesson): its number, and the series' last lesson as loading
    leaves it. That counts any lesson the database (`session`, None for a series not
    stored yet) has beyond the files, since install_series deletes none. The samples
    alone are lesson 1 of 10: `{{ 100 // (lesson_total - lesson_number) }}` in the
    last lesson loaded from files, then failed in the worker."""
    stored = None
    if session is not None:
        stored = session.scalar(
            sa.select(sa.func.max(Step.number))
            .join(Sequence, Step.sequence_id == Sequence.id)
            .where(Sequence.slug == series.slug)
        )
    total = max(stored or 0, series.steps[-1].number)
    sender = settings.sender.display_name
    for step in series.steps:
        own = lesson_values(series.name, step.number, total, sender_name=sender)
        with in_folder(step.folder):
            check_lesson(renderer, step.template, own)
    for name, variables in FIXED_EMAILS.items():
        folder = settings.emails_dir / name
        template = read_email(folder)
        with in_folder(folder):
            check_email(renderer, template, variables, FIXED_SAMPLE)


def initialise(settings: Settings, engine: Engine, clock: Clock, renderer: Renderer) -> list[str]:
    """Idempotent; returns one line per thing it did, for the CLI to print (Alembic's
    own line per migration is left out: `drip db upgrade` prints those)."""
    where = engine.url.render_as_string(hide_password=True)
    with held_back("alembic"):
        upgraded = schema.upgrade(engine)
    newest = ", ".join(sorted(schema.code_revisions()[1]))
    done = [f"database upgraded to {newest}: {where}" if upgraded else f"database ready: {where}"]
    with transaction(make_session_factory(engine)) as session:
        if session.scalar(sa.select(sa.func.count()).select_from(Sequence)):
            return done
        series = read_series(settings.emails_dir)
        check_series(renderer, series, settings)
        install_series(
            session,
            series,
            now=clock.now(),
            author="drip init",
            default_timezone=settings.default_timezone,
        )
        done.append(f"installed the series {series.name!r} ({len(series.steps)} emails)")
    return done

"""A series as files (the format of templates/emails/), and installing it into the database.

One folder per email with subject.txt, preheader.txt, body.html and body.txt; the steps
and their day offsets are data in series.toml. Loading creates template versions: it
never overwrites one.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drip.errors import InvalidInput
from drip.models import Sequence, Step, TemplateVersion
from drip.rendering import EmailTemplate
from drip.schedule import follow_new_day

CONFIRM_FOLDER = "_confirm"
PRIVACY_FOLDER = "_privacy"
LAYOUT_FOLDER = "_layout"
FILES = {
    "subject": "subject.txt",
    "preheader": "preheader.txt",
    "body_html": "body.html",
    "body_text": "body.txt",
}
"""The file in a step folder that holds each part of an EmailTemplate."""


LAST_DAY = 365
"""The last day of a series a lesson may go out on, counted from confirmation."""


@dataclass(frozen=True)
class StepFile:
    number: int
    day_offset: int
    template: EmailTemplate
    folder: Path


@dataclass(frozen=True)
class Bonus:
    title: str
    description: str


@dataclass(frozen=True)
class SeriesFile:
    slug: str
    name: str
    tagline: str
    description: str
    steps: list[StepFile]
    bonuses: list[Bonus] = field(default_factory=list)


def read_email(folder: Path) -> EmailTemplate:
    text = {part: _read(folder / name) for part, name in FILES.items()}
    return EmailTemplate(
        subject=text["subject"].strip(),
        preheader=text["preheader"].strip(),
        body_html=text["body_html"],
        body_text=text["body_text"],
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path}: {exc}") from None


@contextmanager
def in_folder(folder: Path) -> Iterator[None]:
    """Name the file of `folder` that an InvalidInput raised inside is about.

    The checks name a part as the editor's form does ("body_html, line 30: ..."); a
    writer loading a series needs the lesson and the file ("03/body.html, line 30")."""
    try:
        yield
    except InvalidInput as exc:
        message, part = str(exc), exc.field
        if part in FILES and message.startswith(part):
            where = f"{folder / FILES[part]}{message.removeprefix(part)}"
        else:
            where = f"{folder}: {message}"
        raise type(exc)(where, field=part) from None


def read_series(directory: Path) -> SeriesFile:
    """Parse series.toml and every step folder; InvalidInput names the first problem."""
    try:
        data = tomllib.loads((directory / "series.toml").read_text(encoding="utf-8"))
        steps = [_read_step(directory, entry) for entry in data["steps"]]
        series = SeriesFile(
            slug=str(data["slug"]),
            name=str(data["name"]),
            tagline=str(data.get("tagline", "")),
            description=str(data.get("description", "")),
            steps=sorted(steps, key=lambda s: s.number),
            bonuses=[
                Bonus(str(b["title"]), str(b["description"])) for b in data.get("bonuses", [])
            ],
        )
    except (OSError, KeyError, TypeError, ValueError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"{directory / 'series.toml'}: {type(exc).__name__}: {exc}") from None
    for name in ("slug", "name", "tagline"):
        limit = Sequence.__table__.c[name].type.length
        if len(getattr(series, name)) > limit:
            raise InvalidInput(f"{directory / 'series.toml'}: {name}: at most {limit} characters")
    numbers = [s.number for s in series.steps]
    if len(set(numbers)) != len(numbers) or not numbers or numbers[0] != 0:
        raise InvalidInput(f"{directory}: step numbers must be unique and start at 0 (the welcome)")
    _check_days(directory, series.steps)
    return series


def _check_days(directory: Path, steps: list[StepFile]) -> None:
    """The welcome on day 0 and each later lesson on a later day, up to LAST_DAY: the
    rule the editor keeps (drip.lessons.set_day), for the same reason. The scheduler
    sends a lesson at least a day after the one before it, so a day that does not rise
    would be listed in the admin yet go out later than it says."""
    previous = None
    for step in steps:
        if step.number == 0 and step.day_offset != 0:
            raise InvalidInput(f"{directory / 'series.toml'}: the welcome (step 0) is on day 0")
        if not 0 <= step.day_offset <= LAST_DAY:
            raise InvalidInput(
                f"{directory / 'series.toml'}: step {step.number}: day must be 0 to {LAST_DAY}"
            )
        if previous is not None and step.day_offset <= previous.day_offset:
            raise InvalidInput(
                f"{directory / 'series.toml'}: step {step.number} is on day {step.day_offset}, "
                f"not after step {previous.number} (day {previous.day_offset})"
            )
        previous = step


def _read_step(directory: Path, entry: dict[str, Any]) -> StepFile:
    folder = directory / str(entry["folder"])
    return StepFile(int(entry["number"]), int(entry["day"]), read_email(folder), folder)


def install_series(
    session: Session, series: SeriesFile, *, now: datetime, author: str, default_timezone: str
) -> Sequence:
    """Create the sequence, its steps and a first template version of each.

    For a sequence that already exists, a step whose files differ from its newest
    version gets a new version; no lesson is overwritten or deleted. A step whose day
    changed moves for the readers waiting for it, as in the editor
    (drip.schedule.follow_new_day). The name, tagline, description and bonuses are the
    files' (the slug is what identifies the series): a writer who renames the series in
    series.toml means the series to be renamed.
    """
    sequence = session.scalar(sa.select(Sequence).where(Sequence.slug == series.slug))
    if sequence is None:
        sequence = Sequence(slug=series.slug, created_at=now)
        session.add(sequence)
    sequence.name = series.name
    sequence.tagline = series.tagline
    sequence.description = series.description
    sequence.bonuses = [{"title": b.title, "description": b.description} for b in series.bonuses]
    session.flush()
    existing = {step.number: step for step in sequence.steps}
    for step_file in series.steps:
        step = existing.get(step_file.number)
        if step is None:
            step = Step(sequence=sequence, number=step_file.number, day_offset=step_file.day_offset)
            session.add(step)
            session.flush()
        old_day, step.day_offset = step.day_offset, step_file.day_offset
        follow_new_day(session, step, old_day, now=now, default_timezone=default_timezone)
        current = latest_version(session, step.id)
        if current is None or version_template(current) != step_file.template:
            session.add(_version(step.id, step_file.template, now=now, author=author))
    session.flush()
    return sequence


def export_series(session: Session, sequence: Sequence, directory: Path) -> list[Path]:
    """Write the series as files (series.toml and one folder per step), the format
    read_series reads, so a writer can keep their lessons in git. Returns the files."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        f"slug = {_toml(sequence.slug)}",
        f"name = {_toml(sequence.name)}",
        f"tagline = {_toml(sequence.tagline)}",
        f"description = {_toml(sequence.description)}",
    ]
    for bonus in sequence.bonuses:
        lines += ["", "[[bonuses]]", f"title = {_toml(bonus['title'])}"]
        lines.append(f"description = {_toml(bonus['description'])}")
    written = []
    for step in sequence.steps:
        folder = f"{step.number:02d}"
        lines += ["", "[[steps]]", f"number = {step.number}", f"day = {step.day_offset}"]
        lines.append(f"folder = {_toml(folder)}")
        version = latest_version(session, step.id)
        if version is None:
            continue
        (directory / folder).mkdir(exist_ok=True)
        for part, name in FILES.items():
            text = getattr(version, part)
            path = directory / folder / name
            path.write_text(text if part.startswith("body") else text + "\n", encoding="utf-8")
            written.append(path)
    toml = directory / "series.toml"
    toml.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [toml, *written]


def _toml(text: str) -> str:
    """A TOML basic string; JSON's escaping is valid TOML for every character."""
    return json.dumps(text, ensure_ascii=False)


def latest_version(session: Session, step_id: int) -> TemplateVersion | None:
    return session.scalar(
        sa.select(TemplateVersion)
        .where(TemplateVersion.step_id == step_id)
        .order_by(TemplateVersion.id.desc())
        .limit(1)
    )


def version_template(version: TemplateVersion) -> EmailTemplate:
    return EmailTemplate(version.subject, version.preheader, version.body_html, version.body_text)


def _version(
    step_id: int, template: EmailTemplate, *, now: datetime, author: str
) -> TemplateVersion:
    return TemplateVersion(
        step_id=step_id,
        subject=template.subject,
        preheader=template.preheader,
        body_html=template.body_html,
        body_text=template.body_text,
        created_at=now,
        created_by=author,
    )

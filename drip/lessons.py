"""Editing a series: saving a template version (checked first), restoring one, comparing
two, and changing steps.

A save never changes a version: it adds one. Deliveries record the version they were
rendered from, so an edit affects only emails not yet sent. A lesson is added with its
first version, checked as any save is, so no lesson exists that its writer has not written.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased, load_only

from drip.db import FOR_NO_KEY_UPDATE
from drip.errors import InvalidInput, NotFound, Stale, TemplateProblem
from drip.headers import MAX_NAME, header_problem
from drip.models import Delivery, Sequence, Step, Subscriber, TemplateVersion
from drip.rendering import (
    LESSON_VARIABLES,
    PARTS,
    Context,
    EmailTemplate,
    Renderer,
    for_sample,
)
from drip.schedule import follow_new_day
from drip.series_files import LAST_DAY, latest_version, version_template
from drip.signup import normalise_email

SAMPLE: dict[str, str | int] = {
    "first_name": "Ada",
    "series_name": "Sample series",
    "sender_name": "Sample sender",
    "lesson_number": 1,
    "lesson_total": 10,
}
SAMPLE_READERS = {
    "a reader named Ada": "Ada",
    "a reader who gave no first name": "",
    "a reader with a non-ASCII name": "Zoë Łukasiewicz 李",
    f"a reader with a name of {MAX_NAME} characters, the longest a signup takes": (
        "Anna-Maria Magdalena " * 5
    )[:MAX_NAME],
}
"""The first names a check renders with, by label. The first name is what differs from
reader to reader: a signup may leave it out, and takes up to MAX_NAME characters of any
script (drip.headers.clean_first_name)."""
FAKE_REPLY = re.compile(r"(re|fwd?|aw|wg)\s*(\[\d+\])?\s*:", re.IGNORECASE)
"""Reply and forward markers as mail clients write them (`RE :`, `Fw:`, `Re[2]:`, and the
German `AW:` and `WG:`), matched against the subject as rendered, so that `{{ 'Re' }}:`
cannot slip past (standards STD-08)."""
PREHEADER_CHARS = (40, 100)
"""Shorter leaves the inbox preview to whatever text follows; longer is cut off by every
client (standards STD-04)."""
STORED_LENGTH = {
    part: column.type.length
    for part in PARTS
    if isinstance((column := TemplateVersion.__table__.c[part]).type, sa.String)
    and column.type.length
}
"""The longest text each part's column holds: PostgreSQL refuses more, SQLite stores it."""
MAX_SUBJECT = STORED_LENGTH["subject"]
"""The longest subject as rendered, for every sample reader: the limit a typed subject
has (its column). 200 characters is already more than any inbox shows, and far below
RFC 5322's 998-character line; a subject that names the reader must leave room for the
longest name. Without it, `{{ 'x' * 99999 }}` rendered a subject of 99,999 characters."""
LISTED = (
    TemplateVersion.step_id,
    TemplateVersion.subject,
    TemplateVersion.created_at,
    TemplateVersion.created_by,
)
"""The columns of a version the editor's list of versions shows (history), besides its id."""
PARKED = 1_000_000
"""A step number no series reaches, held for a moment while two steps swap numbers."""


@dataclass(frozen=True)
class StepRow:
    step: Step
    version: TemplateVersion | None
    days: range
    """The days the lesson may move to (set_day)."""


@dataclass(frozen=True)
class Version:
    """A saved version and its number among its lesson's versions, 1 for the first.

    The number is counted when shown, not stored: ids only ever grow and versions are
    never deleted (only with their lesson), so a version keeps its number. Links name
    versions by id."""

    number: int
    row: TemplateVersion


def check_lesson(renderer: Renderer, template: EmailTemplate, own: Context | None = None) -> None:
    """Everything the worker or the database would trip over, plus the mailbox
    providers' rules.

    `own` holds the values the lesson renders with where it stands (lesson_context),
    checked as one more sample: the samples are lesson 1 of 10, which hides a template
    that fails on the last lesson, such as `{{ 100 // (lesson_total - lesson_number) }}`."""
    _check_storable(template)
    shortest, longest = PREHEADER_CHARS
    if not shortest <= len(template.preheader.strip()) <= longest:
        raise TemplateProblem(
            f"preheader: write one sentence of {shortest} to {longest} characters",
            field="preheader",
        )
    check_email(renderer, template, LESSON_VARIABLES, SAMPLE, own=own)


def check_email(
    renderer: Renderer,
    template: EmailTemplate,
    variables: Iterable[str],
    sample: Context,
    *,
    own: Context | None = None,
) -> None:
    """What every email drip sends needs, a lesson or the fixed confirmation and privacy
    emails: it renders in the sandbox for every sample reader (`sample` with each of
    SAMPLE_READERS' first names), with a subject of one line and both bodies.

    Rendering folds a subject's line breaks into spaces, so a subject written over two
    lines ("a", then "Bcc: x") would go out as one odd subject: the subject as written
    is refused instead (SEC-07), and so is one that renders with a line break (the
    renderer's check). Every email is multipart/alternative with a text and an HTML part
    (STD-03), and the layout only wraps a body in the footer, so an empty body makes a
    part with nothing to read. A subject must not pretend to be a reply or a forward
    (STD-08), and is held to MAX_SUBJECT characters as rendered. `own`, if given, is
    one more sample: the email's own values (check_lesson)."""
    problem = header_problem(template.subject.strip())
    if problem:
        raise TemplateProblem(f"subject: {problem}", field="subject")
    for part, name in (("body_html", "HTML body"), ("body_text", "plain-text body")):
        if not getattr(template, part).strip():
            raise TemplateProblem(
                f"{part}: write the {name}; every email has both bodies", field=part
            )
    samples = {label: {**sample, "first_name": name} for label, name in SAMPLE_READERS.items()}
    if own is not None:
        where = f"lesson {own['lesson_number']} of {own['lesson_total']}"
        samples[f"this lesson as it stands, {where}"] = own
    for label, rendered in renderer.check(template, variables, samples).items():
        with for_sample(label):
            _check_subject(rendered.subject)


def _check_subject(subject: str) -> None:
    if not subject:
        raise TemplateProblem("subject: write a subject; this one is empty", field="subject")
    if len(subject) > MAX_SUBJECT:
        raise TemplateProblem(
            f"subject: at most {MAX_SUBJECT} characters as rendered, not {len(subject)}",
            field="subject",
        )
    if FAKE_REPLY.match(subject):
        raise TemplateProblem(
            "subject: must not pretend to be a reply or a forward", field="subject"
        )


def _check_storable(template: EmailTemplate) -> None:
    """Refuse what PostgreSQL would refuse (SQLite would store it, and the worker mail
    it): a NUL, or more than the column holds. Checked here, not left to the database, so
    the admin sees which part to fix and keeps the edit (standards SEC-04)."""
    for part in PARTS:
        text = getattr(template, part)
        if "\x00" in text:
            raise TemplateProblem(
                f"{part}: contains a NUL character, which cannot be stored", field=part
            )
        longest = STORED_LENGTH.get(part)
        if longest is not None and len(text.strip()) > longest:
            raise TemplateProblem(f"{part}: at most {longest} characters", field=part)


def lesson_context(
    session: Session,
    sequence: Sequence,
    number: int,
    *,
    sender_name: str = "",
    subscriber_email: str = "",
) -> dict[str, str | int]:
    """The values lesson `number` renders with, as the worker renders it now
    (lesson_values): a real subscriber's name when one is named, else the sample's. A
    lesson not saved yet (the editor of a new one) counts in the total."""
    first_name = str(SAMPLE["first_name"])
    if subscriber_email:
        subscriber = session.scalar(
            sa.select(Subscriber).where(
                Subscriber.sequence_id == sequence.id,
                Subscriber.email == normalise_email(subscriber_email),
            )
        )
        if subscriber is None:
            raise NotFound(f"no subscriber {subscriber_email} on this series")
        first_name = subscriber.first_name
    total = session.scalar(
        sa.select(sa.func.max(Step.number)).where(Step.sequence_id == sequence.id)
    )
    return lesson_values(
        sequence.name, number, total or 0, sender_name=sender_name, first_name=first_name
    )


def lesson_values(
    series_name: str,
    number: int,
    total: int,
    *,
    sender_name: str = "",
    first_name: str = str(SAMPLE["first_name"]),
) -> dict[str, str | int]:
    """The values lesson `number` of a series whose last lesson is `total` renders with,
    as the worker renders it (drip.composing), for the editor (lesson_context) and for
    series files (drip.bootstrap.check_series) alike. Without a `sender_name`
    (DRIP_SENDER's display name), the series' name stands in, as it does in the worker."""
    return {
        "first_name": first_name,
        "series_name": series_name,
        "sender_name": sender_name or series_name,
        "lesson_number": number,
        "lesson_total": max(total, number),
    }


def steps(session: Session, sequence: Sequence) -> list[StepRow]:
    rows = list(
        session.scalars(
            sa.select(Step).where(Step.sequence_id == sequence.id).order_by(Step.number)
        )
    )
    before: list[Step | None] = [None, *rows[:-1]]
    after: list[Step | None] = [*rows[1:], None]
    return [
        StepRow(step, latest_version(session, step.id), allowed_days(step, *neighbours))
        for step, *neighbours in zip(rows, before, after, strict=True)
    ]


_SAVING = (
    "Not saved",
    "saving",
    "Your text is still below: compare it with their version (open the lesson in another "
    "tab), then save again to replace it.",
)
_RESTORING = (
    "Not restored",
    "restoring",
    "The versions below are as they stand now: compare them, then restore again to "
    "replace their version.",
)
"""How a refused save and a refused restore say so (_saved_since): what was not done,
the doing that would undo the other admin's change, and what to do next."""


def save_version(
    session: Session,
    renderer: Renderer,
    step_id: int,
    template: EmailTemplate,
    *,
    author: str,
    now: datetime,
    base_version: int | None = None,
    refusal: tuple[str, str, str] = _SAVING,
    sender_name: str = "",
) -> TemplateVersion:
    """Add `template` as the lesson's newest version.

    `base_version` is the id of the version the writer's editor showed (0 for none):
    if another save came since, this one is refused (Stale, said as `refusal` says it),
    since it would undo that save without either writer knowing. None, from a caller
    that showed no editor, checks nothing. The step's row is locked, so that two saves
    at the same moment on PostgreSQL cannot both find the version they started from the
    newest. `sender_name` is DRIP_SENDER's display name, which the lesson is checked with
    as the worker renders it (lesson_context)."""
    step = session.get(Step, step_id, with_for_update=FOR_NO_KEY_UPDATE)
    if step is None:
        raise NotFound("no such step")
    if base_version is not None:
        latest = latest_version(session, step.id)
        if (latest.id if latest else 0) != base_version:
            raise Stale(_saved_since(session, latest, refusal))
    series = session.get_one(Sequence, step.sequence_id)
    own = lesson_context(session, series, step.number, sender_name=sender_name)
    check_lesson(renderer, template, own)
    return _add_version(session, step, template, author=author, now=now)


def _saved_since(
    session: Session, latest: TemplateVersion | None, refusal: tuple[str, str, str]
) -> str:
    not_done, doing, then = refusal
    if latest is None:
        return f"The version this editor showed is gone; {not_done.lower()}."
    return (
        f"{not_done}: {latest.created_by} saved this lesson as version "
        f"{numbered(session, latest).number} at {latest.created_at:%Y-%m-%d %H:%M} UTC, after "
        f"this editor was opened, and {doing} would undo their change. {then}"
    )


def _add_version(
    session: Session, step: Step, template: EmailTemplate, *, author: str, now: datetime
) -> TemplateVersion:
    version = TemplateVersion(
        step_id=step.id,
        subject=template.subject.strip(),
        preheader=template.preheader.strip(),
        body_html=template.body_html,
        body_text=template.body_text,
        created_at=now,
        created_by=author,
    )
    session.add(version)
    session.flush()
    return version


def restore(
    session: Session,
    renderer: Renderer,
    version_id: int,
    *,
    author: str,
    now: datetime,
    base_version: int | None = None,
    sender_name: str = "",
) -> TemplateVersion:
    """Make an old version current again, as a new version (history stays linear).

    `base_version` is the newest version the admin's page showed, checked as a save
    checks it (save_version): a Restore pressed on a page opened before another admin's
    save replaced that save without anyone knowing."""
    old = session.get(TemplateVersion, version_id)
    if old is None:
        raise NotFound("no such version")
    return save_version(
        session,
        renderer,
        old.step_id,
        version_template(old),
        author=author,
        now=now,
        base_version=base_version,
        refusal=_RESTORING,
        sender_name=sender_name,
    )


def history(session: Session, step_id: int) -> list[Version]:
    """The lesson's versions, the newest first, with only what the list of versions
    shows: a lesson saved a few hundred times would otherwise read every version's
    bodies (up to MAX_SOURCE each) to list them. A row's other parts load when read,
    as the editor reads the newest's."""
    rows = list(
        session.scalars(
            sa.select(TemplateVersion)
            .options(load_only(*LISTED))
            .where(TemplateVersion.step_id == step_id)
            .order_by(TemplateVersion.id.desc())
        )
    )
    return [Version(len(rows) - index, row) for index, row in enumerate(rows)]


def numbered(session: Session, version: TemplateVersion) -> Version:
    """The version with its number, as history() counts it."""
    return Version(session.scalar(sa.select(version_number(version.id))) or 0, version)


def version_number(version_id: int | sa.ColumnElement[int | None]) -> sa.ScalarSelect[int]:
    """The number of the version `version_id` among its lesson's versions, as history()
    counts them (0 for no version): a subquery, so that a list of emails can show each
    one's version (drip.directory.timeline) in the query that reads them."""
    own, earlier = aliased(TemplateVersion), aliased(TemplateVersion)
    return (
        sa.select(sa.func.count(earlier.id))
        .select_from(own)
        .join(earlier, sa.and_(earlier.step_id == own.step_id, earlier.id <= own.id))
        .where(own.id == version_id)
        .scalar_subquery()
    )


def diff(old: Version, new: Version) -> list[tuple[str, list[str]]]:
    """A unified diff per part that changed."""
    changes = []
    for part in PARTS:
        before = getattr(old.row, part).splitlines()
        after = getattr(new.row, part).splitlines()
        labels = f"v{old.number}", f"v{new.number}"
        lines = list(difflib.unified_diff(before, after, *labels, lineterm="", n=2))
        if lines:
            changes.append((part, lines))
    return changes


def set_day(
    session: Session, step_id: int, day: int, *, now: datetime, default_timezone: str
) -> tuple[Step, int]:
    """Move a lesson to another day of the series, after the lesson before it and before
    the next; the welcome stays on day 0, when the reader confirms. Returns the step and
    how many readers waiting for it now get it on the new day (follow_new_day).

    The scheduler sends one email of a series a day at most: it times each lesson from
    the one before it, the difference of their days later but never less than a day
    (drip.timing.next_send_at). A day on or before the previous lesson's would be listed
    there yet sent the day after that lesson, and every later lesson later still.

    The series' row is locked first (_locked_step), as every change to its lessons locks
    it: the neighbours' days are read, and an add reads the last lesson's, so on
    PostgreSQL a lesson added as the last moved to a later day went on a day before it."""
    step = _locked_step(session, step_id, lock=FOR_NO_KEY_UPDATE)
    if not 0 <= day <= LAST_DAY:
        raise InvalidInput(f"day: a whole number from 0 to {LAST_DAY}", field="day_offset")
    if step.number == 0 and day != 0:
        raise InvalidInput("the welcome goes out on confirmation (day 0)", field="day_offset")
    before, after = _neighbours(session, step)
    allowed = allowed_days(step, before, after)
    if day not in allowed:
        raise InvalidInput(_out_of_order(step, before, after, allowed), field="day_offset")
    old_day, step.day_offset = step.day_offset, day
    moved = follow_new_day(session, step, old_day, now=now, default_timezone=default_timezone)
    return step, moved


def allowed_days(step: Step, before: Step | None, after: Step | None) -> range:
    """The days `step` may go out on between its neighbours in the series (set_day)."""
    if step.number == 0:
        return range(1)
    first = 0 if before is None else before.day_offset + 1
    last = LAST_DAY if after is None else after.day_offset - 1
    return range(first, last + 1)


def _neighbours(session: Session, step: Step) -> tuple[Step | None, Step | None]:
    series = sa.select(Step).where(Step.sequence_id == step.sequence_id).limit(1)
    before = series.where(Step.number < step.number).order_by(Step.number.desc())
    after = series.where(Step.number > step.number).order_by(Step.number)
    return session.scalar(before), session.scalar(after)


def _out_of_order(step: Step, before: Step | None, after: Step | None, allowed: range) -> str:
    bounds = [
        f"{word} {_name(other)} (day {other.day_offset})"
        for word, other in (("after", before), ("before", after))
        if other is not None
    ]
    if not allowed:
        choice = "no day is free between them, so move one of them first"
    elif len(allowed) == 1:
        choice = f"choose day {allowed[0]}"
    else:
        choice = f"choose a day from {allowed[0]} to {allowed[-1]}"
    return (
        f"day: lesson {step.number} goes out {' and '.join(bounds)}, "
        f"as readers get one email a day; {choice}"
    )


def _name(step: Step) -> str:
    return "the welcome" if step.number == 0 else f"lesson {step.number}"


def next_step(session: Session, sequence: Sequence) -> Step:
    """The lesson a writer adds to the series, a day after the last; not in the session,
    so nothing is added until add_step adds it. The last lesson is read afresh, as
    _locked_step reads its step: add_step waits for a change to its day, but a session
    that had loaded the series' steps kept the day they had then."""
    last = session.scalar(
        sa.select(Step)
        .where(Step.sequence_id == sequence.id)
        .order_by(Step.number.desc())
        .limit(1)
        .execution_options(populate_existing=True)
    )
    if last is None:
        raise InvalidInput("the series has no welcome step to build on")
    if last.day_offset >= LAST_DAY:
        raise InvalidInput(f"day: the last lesson is on day {LAST_DAY}; move it earlier first")
    return Step(sequence_id=sequence.id, number=last.number + 1, day_offset=last.day_offset + 1)


def add_step(
    session: Session,
    renderer: Renderer,
    sequence: Sequence,
    template: EmailTemplate,
    *,
    author: str,
    now: datetime,
    number: int | None = None,
    sender_name: str = "",
) -> Step:
    """Append a lesson, a day after the last, with its first version; refused, adding
    nothing, if the template fails the checks a save makes.

    `number` is the lesson number the writer's editor offered to add: when the series
    has grown since (the form sent twice, or another admin added a lesson), the lesson
    is refused (Stale) rather than added as one more copy. None checks nothing. The
    series' row is locked (as _locked_step locks it), so that two adds at the same moment
    on PostgreSQL, or an add and a removal or a move, take turns.

    The lesson is created only now, written and checked: one made in advance (as a copy
    of the last, say) would be mailed as it stood to readers who reached it before the
    writer did. Readers still in the series get it after the former last lesson, and
    their lesson_total counts it from now on. A reader the former last lesson was already
    issued to (sent, or queued) has no next step and has completed the series, or does
    once it is sent (drip.sending), and gets nothing more: a lesson arriving after the
    series ended, unannounced, would read as a mistake."""
    session.get(Sequence, sequence.id, with_for_update=FOR_NO_KEY_UPDATE)
    step = next_step(session, sequence)
    if number is not None and step.number != number:
        raise Stale(
            f"Lesson {number} was added already (this form was sent twice, or another "
            f"admin added it), so nothing was added now. To add your text as lesson "
            f"{step.number}, save it again."
        )
    own = lesson_context(session, sequence, step.number, sender_name=sender_name)
    check_lesson(renderer, template, own)
    session.add(step)
    session.flush()
    _add_version(session, step, template, author=author, now=now)
    return step


def remove_step(session: Session, step_id: int) -> None:
    """Only the last step, and only while nobody has been sent it: the series' history
    (who got which email) must stay intact.

    The series' row is locked first (_locked_step), so that on PostgreSQL a removal and
    an add take turns: each read the last lesson's number without the other's
    uncommitted change, and between them left a gap in the series (lesson 10 removed
    just as lesson 11 was added on top of it).

    The step's row is locked next, before anyone's deliveries are looked at. A scheduler
    pass holds a share of it from reading the steps to its commit
    (drip.schedule.steps_of), so on PostgreSQL the removal waits for a pass issuing this
    lesson and then finds its delivery; without the lock it found none, deleted the
    step, and left that delivery with no lesson to send (deliveries.step_id is ON DELETE
    SET NULL). A pass that starts meanwhile waits for the removal, and finds the series
    ended."""
    step = _locked_step(session, step_id, lock=True)
    last = session.scalar(
        sa.select(sa.func.max(Step.number)).where(Step.sequence_id == step.sequence_id)
    )
    if step.number == 0 or step.number != last:
        raise InvalidInput("only the last lesson can be removed")
    if (
        session.scalar(sa.select(Delivery.id).where(Delivery.step_id == step.id).limit(1))
        is not None
    ):
        raise InvalidInput("this lesson has already been sent to someone; it cannot be removed")
    session.delete(step)


def move_step(session: Session, step_id: int, *, earlier: bool, number: int | None = None) -> Step:
    """Swap a lesson with its neighbour. The position keeps its day offset, so the days
    still rise; deliveries point at steps, not numbers, so history stays right. Whoever
    has had the first of the two and waits for the second keeps waiting for the same
    email (their next step moves with it), so nobody skips a lesson.

    `number` is the lesson's number as the admin's page showed it: if it has moved since
    (the button pressed twice), it is not moved again (Stale). None checks nothing.

    The series' row is locked first (_locked_step): a move that read its neighbour as a
    removal deleted it failed on the row gone (a server error), and two moves of
    neighbouring lessons each swapped numbers the other was changing."""
    step = _locked_step(session, step_id, lock=FOR_NO_KEY_UPDATE)
    if number is not None and step.number != number:
        raise Stale(
            f"Lesson {number} has moved since that page was shown (it is lesson "
            f"{step.number} now), so it was not moved again. The list below is as it "
            "stands."
        )
    target = step.number - 1 if earlier else step.number + 1
    other = session.scalar(
        sa.select(Step).where(Step.sequence_id == step.sequence_id, Step.number == target)
    )
    if step.number == 0 or other is None or other.number == 0:
        raise InvalidInput(
            "the welcome stays first, and the first and last lessons have one neighbour"
        )
    first, second = (other, step) if earlier else (step, other)
    low = first.number
    session.execute(
        sa.update(Subscriber)
        .where(Subscriber.sequence_id == step.sequence_id, Subscriber.next_step == low + 1)
        .values(next_step=low)
    )
    first_day, second_day = first.day_offset, second.day_offset
    first.number = PARKED
    session.flush()
    second.number, second.day_offset = low, first_day
    session.flush()
    first.number, first.day_offset = low + 1, second_day
    session.flush()
    return step


def _locked_step(session: Session, step_id: int, *, lock: bool | dict[str, bool]) -> Step:
    """The step, with its series' row locked and then its own (`lock`), read afresh.

    Every change to a series' lessons (add_step, remove_step, move_step, set_day) locks the
    series' row first, FOR NO KEY UPDATE, so that on PostgreSQL they take turns, each
    reading the lessons as the one before it left them, and always lock in the same
    order (series, then steps). The step is read afresh (populate_existing): a step the
    session had loaded before the lock kept the number it had then, though the SELECT
    waited for a move that changed it."""
    series_of_step = sa.select(Step.sequence_id).where(Step.id == step_id).scalar_subquery()
    session.execute(
        sa.select(Sequence.id)
        .where(Sequence.id == series_of_step)
        .with_for_update(**FOR_NO_KEY_UPDATE)
    )
    step = session.get(Step, step_id, with_for_update=lock, populate_existing=True)
    if step is None:
        raise NotFound("no such step")
    return step

"""Subscribers as CSV: export everyone, import a list that carries its consent.

An import row needs a `consent` column saying where and when the person agreed (a list
bought or scraped has no such column, and drip refuses it). Even then an import enrols
nobody: each address becomes a pending signup and gets one confirmation email, and only
their click starts the series (standards DEL-04). Addresses already on the series, or on
the suppression list, are skipped and mailed nothing; every refused row is reported by
line.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TextIO

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drip import list_bombing, timing
from drip.consent import Origin, text_for
from drip.digits import whole_number
from drip.errors import DripError, InvalidInput
from drip.headers import clean_first_name
from drip.models import Sequence, Subscriber, SubscriberStatus
from drip.privacy import suppression
from drip.schedule import steps_of
from drip.signup import ask_to_confirm, normalise_email, purposes_of

EXPORT_COLUMNS = (
    "email",
    "first_name",
    "status",
    "timezone",
    "send_hour",
    "next_step",
    "signed_up_at",
    "confirmed_at",
)
REQUIRED_IMPORT_COLUMNS = {"email", "consent"}


@dataclass
class ImportReport:
    """`confirmations` are the delivery ids to queue once the import has committed."""

    imported: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)
    confirmations: list[int] = field(default_factory=list)


def export_rows(session: Session, sequence_id: int) -> Iterator[dict[str, object]]:
    """Every subscriber of the series, streamed in id order (constant memory)."""
    rows = session.scalars(
        sa.select(Subscriber)
        .where(Subscriber.sequence_id == sequence_id)
        .order_by(Subscriber.id)
        .execution_options(yield_per=1000)
    )
    for s in rows:
        yield {
            "email": s.email,
            "first_name": s.first_name,
            "status": s.status.value,
            "timezone": s.timezone,
            "send_hour": s.send_hour,
            "next_step": "" if s.next_step is None else s.next_step,
            "signed_up_at": s.created_at.isoformat(),
            "confirmed_at": s.confirmed_at.isoformat() if s.confirmed_at else "",
        }


def write_csv(rows: Iterable[dict[str, object]], out: TextIO) -> None:
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow(_inert(row))


def write_csv_row(row: dict[str, object], out: TextIO) -> None:
    csv.DictWriter(out, fieldnames=EXPORT_COLUMNS).writerow(_inert(row))


FORMULA_STARTS = ("=", "+", "-", "@")
ESCAPE = "'"


def _inert(row: dict[str, object]) -> dict[str, object]:
    """Names come from the public form: a cell starting with = + - @ would run as a
    formula in a spreadsheet, so it gets a leading apostrophe (OWASP CSV injection).

    Addresses may start with those too, or with an apostrophe of their own, so one
    starting with an apostrophe gets another: `_as_written` then takes exactly one off
    again on import, and a file exported and imported keeps every address and name."""
    return {
        key: ESCAPE + value
        if isinstance(value, str) and value.startswith((*FORMULA_STARTS, ESCAPE))
        else value
        for key, value in row.items()
    }


def _as_written(cell: str) -> str:
    """A cell as it was before the export made it inert (`_inert`)."""
    unescaped = cell.removeprefix(ESCAPE)
    return unescaped if unescaped.startswith((*FORMULA_STARTS, ESCAPE)) else cell


def count_lines(file: Path) -> int:
    """How many lines FILE has, once all of it has been checked to be UTF-8 (a leading
    byte-order mark, which Excel writes, is UTF-8 too). A file in another encoding, such
    as Excel's plain "CSV" (Windows-1252), is refused before any row is imported, naming
    the line, not partway through with a traceback. Line by line in bytes: a newline
    byte is never part of a longer UTF-8 character, so each line decodes on its own."""
    count = 0
    with file.open("rb") as lines:
        for count, line in enumerate(lines, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput(
                    f"{file.name}, line {count}: byte 0x{line[exc.start]:02x} is not UTF-8;"
                    " save the file as CSV UTF-8"
                ) from None
    return count


def import_rows(
    session: Session,
    sequence: Sequence,
    reader: csv.DictReader[str],
    *,
    now: datetime,
    secret: str,
    source: str,
) -> ImportReport:
    """Import rows as pending signups, each asked to confirm by email; once confirmed,
    they start at the welcome (or at the row's `step`)."""
    missing = REQUIRED_IMPORT_COLUMNS - set(reader.fieldnames or [])
    if missing:
        raise InvalidInput(f"the file needs the column(s): {', '.join(sorted(missing))}")
    steps = [s.number for s in steps_of(session, sequence.id)]
    report = ImportReport()
    for row in reader:
        line = reader.line_num
        try:
            with session.begin_nested():
                delivery_id = _import_one(
                    session, sequence, row, steps, now=now, secret=secret, source=source
                )
            report.imported += 1
            if delivery_id is not None:
                report.confirmations.append(delivery_id)
        except DripError as exc:
            report.problems.append((line, str(exc)))
    return report


def _import_one(
    session: Session,
    sequence: Sequence,
    row: dict[str, str],
    steps: list[int],
    *,
    now: datetime,
    secret: str,
    source: str,
) -> int | None:
    """Add one row as a pending signup; returns its confirmation's delivery id.

    Someone already on the series is left alone whatever their state: a re-import is not
    the person asking again, so it never sends a second confirmation.
    """
    _refuse_nul(row)
    entered = _as_written(row.get("email") or "")
    email = normalise_email(entered)
    consent = (row.get("consent") or "").strip()
    if not consent:
        raise InvalidInput("no consent given")
    reason = suppression(session, secret, email)
    if reason is not None:
        raise InvalidInput(f"this address is on the suppression list ({reason})")
    status = session.scalar(
        sa.select(Subscriber.status).where(
            Subscriber.sequence_id == sequence.id, Subscriber.email == email
        )
    )
    if status is not None:
        raise InvalidInput(f"already on this series ({status.value})")
    if not list_bombing.may_mail(session, secret, email, now=now):
        raise InvalidInput("was sent a confirmation lately (one a day, three a month at most)")
    tz = (row.get("timezone") or "").strip() or "UTC"
    try:
        timing.zone(tz)
    except ValueError:
        raise InvalidInput(f"unknown timezone {tz!r}") from None
    step = _number(row.get("step"), default=steps[0] if steps else 0, what="step")
    if step not in steps:
        raise InvalidInput(f"the series has no step {step}")
    hour = _number(row.get("send_hour"), default=8, what="send_hour")
    if not 0 <= hour <= 23:
        raise InvalidInput("send_hour: 0 to 23")
    subscriber = Subscriber(
        sequence_id=sequence.id,
        email=email,
        first_name=clean_first_name(_as_written(row.get("first_name") or "")),
        timezone=tz,
        send_hour=hour,
        status=SubscriberStatus.PENDING,
        next_step=step,
        created_at=now,
    )
    session.add(subscriber)
    notice = text_for(session, f"Imported from {source}: {consent}", privacy_policy="", now=now)
    return ask_to_confirm(
        session,
        subscriber,
        notice,
        Origin(email_entered=entered[:320], form_id="import", page_url=source[:500]),
        purposes=purposes_of(sequence.slug),
        now=now,
        secret=secret,
    )


def _refuse_nul(row: dict[str, str]) -> None:
    """PostgreSQL refuses a NUL in text (SQLite stores it), and a refused statement
    aborts the whole transaction, not only the row. It is the one character it refuses:
    the file was decoded as UTF-8, so nothing else in it is invalid."""
    for column, value in row.items():
        if isinstance(value, str) and "\x00" in value:
            raise InvalidInput(f"{column}: a NUL character, which cannot be stored")


def _number(raw: str | None, *, default: int, what: str) -> int:
    text = (raw or "").strip()
    if not text:
        return default
    number = whole_number(text)
    if number is None:
        raise InvalidInput(f"{what}: expected a whole number, got {text[:20]!r}")
    return number

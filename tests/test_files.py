"""The series and the subscribers as files: `drip lessons export/load`, `drip subscribers
export/import`, and the admin's CSV download."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from drip import lessons
from drip.cli import main
from drip.clock import FileClock
from drip.consent import events_of
from drip.db import transaction
from drip.models import (
    ConsentEventKind,
    Delivery,
    DeliveryKind,
    Sequence,
    Subscriber,
    SubscriberStatus,
    TemplateVersion,
)
from drip.privacy import suppress
from drip.series_files import latest_version, version_template
from tests.helpers import System, drip_env, is_private


@pytest.fixture
def system_env(tmp_path: Path, start: datetime) -> dict[str, str]:
    """The commands run on the tests' clock, which lives in a file they can read (it must
    hold an instant before the settings naming it are loaded)."""
    FileClock(tmp_path / "clock").set(start)
    return {"DRIP_CLOCK": f"file:{tmp_path / 'clock'}"}


@pytest.fixture
def env(system: System, tmp_path: Path) -> dict[str, str]:
    return {
        **drip_env(
            tmp_path,
            system.settings.database_url,
            system.broker.client.socket_file,
            system.smtp.port,
        ),
        "DRIP_CLOCK": system.settings.clock,
    }


def run(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output


def version_count(system: System) -> int:
    with transaction(system.sessions) as session:
        return session.scalar(sa.select(sa.func.count()).select_from(TemplateVersion)) or 0


def test_a_series_exported_and_loaded_again_adds_no_versions(
    system: System, env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "series"
    assert "wrote 45 files" in run(env, "lessons", "export", str(out))
    assert (out / "03" / "subject.txt").read_text().startswith("Magnesium")
    before = version_count(system)
    assert "0 new lesson version(s)" in run(env, "lessons", "load", str(out))
    assert version_count(system) == before


def test_loading_an_edited_series_adds_versions_and_keeps_the_old_ones(
    system: System, env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "series"
    run(env, "lessons", "export", str(out))
    (out / "02" / "subject.txt").write_text("A better subject for lesson two\n")
    before = version_count(system)
    assert "1 new lesson version(s)" in run(env, "lessons", "load", str(out))
    assert version_count(system) == before + 1


def test_loading_a_series_that_moves_a_lesson_moves_it_for_readers_waiting_for_it(
    system: System, env: dict[str, str], tmp_path: Path
) -> None:
    """As the editor does (drip.schedule.follow_new_day): lesson 10 moved from day 10 to
    day 12 comes two days later to Ana, who waits for it."""
    system.join("ana@example.com")
    due = datetime(2026, 10, 27, 8, tzinfo=UTC)
    with transaction(system.sessions) as session:
        ana = system.subscriber("ana@example.com", session=session)
        ana.next_step, ana.next_send_at = 10, due
    out = tmp_path / "series"
    run(env, "lessons", "export", str(out))
    toml = out / "series.toml"
    toml.write_text(toml.read_text().replace("number = 10\nday = 10\n", "number = 10\nday = 12\n"))
    run(env, "lessons", "load", str(out))
    with transaction(system.sessions) as session:
        ana = system.subscriber("ana@example.com", session=session)
        assert ana.next_send_at == due + timedelta(days=2)


def series_names(system: System) -> list[str]:
    with transaction(system.sessions) as session:
        return list(session.scalars(sa.select(Sequence.name)))


def test_loading_a_renamed_series_renames_it(
    system: System, env: dict[str, str], tmp_path: Path
) -> None:
    """The command said it loaded the new name while the database kept the old one."""
    out = tmp_path / "series"
    run(env, "lessons", "export", str(out))
    toml = out / "series.toml"
    toml.write_text(toml.read_text().replace('name = "Calm Back, Calm Mind"', 'name = "Renamed"'))
    assert "loaded 'Renamed'" in run(env, "lessons", "load", str(out))
    assert series_names(system) == ["Renamed"]


def load_refused(
    system: System, env: dict[str, str], tmp_path: Path, edits: dict[str, str | None]
) -> str:
    """Export the series, apply `edits` (path -> new text, or None to delete the file),
    load it back: the load must fail and save no version. Returns what it printed."""
    out = tmp_path / "series"
    run(env, "lessons", "export", str(out))
    for path, text in edits.items():
        if text is None:
            (out / path).unlink()
        else:
            (out / path).write_text(text)
    before = version_count(system)
    result = CliRunner().invoke(main, ["lessons", "load", str(out)], env=env)
    assert result.exit_code == 1
    assert version_count(system) == before
    return result.output


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # checked before any write
def test_a_broken_lesson_file_loads_nothing(
    system: System, env: dict[str, str], tmp_path: Path
) -> None:
    output = load_refused(
        system,
        env,
        tmp_path,
        {"02/subject.txt": "Fine subject\n", "05/body.html": "<p>{{ config.SECRET_KEY }}</p>"},
    )
    assert "config" in output


def test_a_series_name_too_long_to_store_loads_nothing(
    system: System, env: dict[str, str], tmp_path: Path
) -> None:
    """PostgreSQL refused it with a DataError traceback; SQLite stored it."""
    out = tmp_path / "series"
    run(env, "lessons", "export", str(out))
    toml = (out / "series.toml").read_text()
    long_name = toml.replace('"Calm Back, Calm Mind"', '"' + "x" * 201 + '"')
    output = load_refused(system, env, tmp_path, {"series.toml": long_name})
    assert "name: at most 200 characters" in output
    assert series_names(system) == ["Calm Back, Calm Mind"]


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # checked before any write
@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        ("day = 2\n", "day = 1\n", "step 2 is on day 1, not after step 1 (day 1)"),
        ("day = 0\n", "day = 3\n", "the welcome (step 0) is on day 0"),
        ("day = 2\n", "day = 400\n", "step 2: day must be 0 to 365"),
    ],
)
def test_a_series_whose_days_do_not_rise_loads_nothing(
    system: System, env: dict[str, str], tmp_path: Path, old: str, new: str, said: str
) -> None:
    """The editor refuses such a day (drip.lessons.set_day); a load took it, and the
    lesson went out a day later than the admin listed."""
    out = tmp_path / "series"
    run(env, "lessons", "export", str(out))
    toml = (out / "series.toml").read_text()
    output = load_refused(system, env, tmp_path, {"series.toml": toml.replace(old, new, 1)})
    assert said in output


def test_subscribers_import_with_consent_and_report_bad_rows_by_line(
    system: System, env: dict[str, str], tmp_path: Path
) -> None:
    system.signup("already@example.com")
    file = tmp_path / "list.csv"
    file.write_text(
        "email,first_name,timezone,consent,step\n"
        "ana@example.com,Ana,Europe/Berlin,webinar signup 2026-03-01,\n"
        "not-an-address,Bob,UTC,webinar,\n"
        "cat@example.com,Cat,Mars/Base,webinar,\n"
        "dan@example.com,Dan,UTC,,\n"
        "already@example.com,,UTC,webinar,\n"
        "eve@example.com,Eve,Asia/Tokyo,paper form at the clinic,4\n"
        "fay@example.com,Fay,UTC,webinar,99\n"
        f"gus@example.com,Gus,UTC,webinar,{'9' * 5000}\n"  # past the digits int() takes
    )
    result = CliRunner().invoke(main, ["subscribers", "import", str(file)], env=env)
    assert result.exit_code == 0, result.output
    assert "imported 2 as pending, each asked by email to confirm; skipped 6" in result.output
    for line in (
        "line 3:",
        "line 4: unknown timezone",
        "line 5: no consent",
        "line 6: already",
        "line 8:",
        "line 9: step: expected a whole number",
    ):
        assert line in result.output
    with transaction(system.sessions) as session:
        eve = session.scalars(
            sa.select(Subscriber).where(Subscriber.email == "eve@example.com")
        ).one()
        [(signup, text)] = events_of(session, eve.id)
    assert (eve.status, eve.timezone) == (SubscriberStatus.PENDING, "Asia/Tokyo")
    assert text is not None and "paper form at the clinic" in text.body
    assert (signup.kind, signup.form_id) == (ConsentEventKind.SIGNUP, "import")
    system.confirm("eve@example.com")
    assert system.subscriber("eve@example.com").next_step == 5  # lesson 4 was issued at once


def confirmations_to(system: System, email: str) -> int:
    with transaction(system.sessions) as session:
        return (
            session.scalar(
                sa.select(sa.func.count())
                .select_from(Delivery)
                .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                .where(Subscriber.email == email, Delivery.kind == DeliveryKind.CONFIRMATION)
            )
            or 0
        )


def test_an_import_enrols_nobody_it_asks_each_address_once_to_confirm(
    system: System, env: dict[str, str], tmp_path: Path
) -> None:
    file = tmp_path / "list.csv"
    file.write_text("email,consent\nana@example.com,webinar signup 2026-03-01\n")
    run(env, "subscribers", "import", str(file))
    system.tick()
    system.drain()
    assert system.subscriber("ana@example.com").status == SubscriberStatus.PENDING
    [mail] = system.smtp.to("ana@example.com")
    assert "confirm" in mail["Subject"].lower()
    system.clock.advance(timedelta(days=2))
    assert "already on this series (pending)" in run(env, "subscribers", "import", str(file))
    system.tick()
    system.drain()
    assert confirmations_to(system, "ana@example.com") == 1
    assert len(system.smtp.to("ana@example.com")) == 1
    system.confirm("ana@example.com")
    system.drain()
    assert system.subscriber("ana@example.com").status == SubscriberStatus.ACTIVE
    assert len(system.smtp.to("ana@example.com")) == 2  # the welcome, only after the click


def test_an_import_mails_no_suppressed_address(
    system: System, env: dict[str, str], tmp_path: Path
) -> None:
    with transaction(system.sessions) as session:
        suppress(
            session,
            system.settings.secret_key,
            "gone@example.com",
            "bounced",
            now=system.clock.now(),
        )
    file = tmp_path / "list.csv"
    file.write_text("email,consent\ngone@example.com,webinar\n")
    output = run(env, "subscribers", "import", str(file))
    assert "on the suppression list (bounced)" in output
    assert confirmations_to(system, "gone@example.com") == 0


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # file format only
def test_a_file_without_a_consent_column_is_refused(
    system: System, env: dict[str, str], tmp_path: Path
) -> None:
    file = tmp_path / "bought.csv"
    file.write_text("email\nlead1@example.com\n")
    result = CliRunner().invoke(main, ["subscribers", "import", str(file)], env=env)
    assert result.exit_code == 1
    assert "consent" in result.output


def subscriber_count(system: System) -> int:
    with transaction(system.sessions) as session:
        return session.scalar(sa.select(sa.func.count()).select_from(Subscriber)) or 0


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # file format only
def test_a_file_not_in_utf8_is_refused_and_imports_nothing(
    system: System, env: dict[str, str], tmp_path: Path
) -> None:
    """Excel's plain "CSV" is Windows-1252: the import stopped at the first accent with
    a UnicodeDecodeError traceback."""
    file = tmp_path / "excel.csv"
    file.write_bytes(
        "email,first_name,consent\n"
        "ana@example.com,Ana,webinar\n"
        "zoe@example.com,Zoé,webinar\n".encode("latin-1")
    )
    before = subscriber_count(system)
    result = CliRunner().invoke(main, ["subscribers", "import", str(file)], env=env)
    assert result.exit_code == 1
    assert "excel.csv, line 3: byte 0xe9 is not UTF-8" in result.output
    assert isinstance(result.exception, SystemExit), "a message, not a traceback"
    assert subscriber_count(system) == before


def test_a_row_holding_a_nul_is_refused_by_line(
    system: System, env: dict[str, str], tmp_path: Path
) -> None:
    """PostgreSQL cannot store a NUL: the row's insert failed and took the whole import
    with it; SQLite stored it."""
    file = tmp_path / "list.csv"
    file.write_text(
        "email,consent\nana@example.com,webinar\x00\nben@example.com,webinar\n",
        encoding="utf-8",
    )
    output = run(env, "subscribers", "import", str(file))
    assert "line 2: consent: a NUL character" in output
    assert "imported 1 as pending" in output
    assert confirmations_to(system, "ben@example.com") == 1
    assert confirmations_to(system, "ana@example.com") == 0


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # file format only
@pytest.mark.usefixtures("usual_umask")
def test_subscribers_export_to_csv_readable_by_its_owner_only(
    system: System, env: dict[str, str], tmp_path: Path
) -> None:
    system.signup("ana@example.com", first_name="Ana")
    file = tmp_path / "out.csv"
    run(env, "subscribers", "export", str(file))
    rows = list(csv.DictReader(file.read_text().splitlines()))
    assert [(r["email"], r["first_name"], r["status"]) for r in rows] == [
        ("ana@example.com", "Ana", "pending")
    ]
    assert is_private(file)


def test_subscribers_exported_and_imported_again_keep_their_addresses_and_names(
    system: System, env: dict[str, str], tmp_path: Path
) -> None:
    """The export makes a cell starting with = + - @ inert with a leading apostrophe
    (OWASP CSV injection); an address may start with any of them, or with an apostrophe
    of its own, and the import must give back exactly what was exported."""
    people = {
        "-ana@example.com": "-Ana",
        "+bo@example.com": "=Bo",
        "=cy@example.com": "'Cy",
        "'dee@example.com": "Dee",
        "'-eve@example.com": "@Eve",
    }
    for email, name in people.items():
        system.signup(email, first_name=name)
    exported = tmp_path / "out.csv"
    run(env, "subscribers", "export", str(exported))
    assert "\n'-ana@example.com,'-Ana," in exported.read_text(), "inert in a spreadsheet"
    system.clock.advance(system.settings.pending_ttl + timedelta(days=1))
    system.tick()  # never confirmed, so purged (LAW-16): they may be imported again
    assert subscriber_count(system) == 0
    imported = tmp_path / "in.csv"
    with exported.open(newline="") as rows, imported.open("w", newline="") as out:
        reader = csv.DictReader(rows)
        writer = csv.DictWriter(out, fieldnames=[*(reader.fieldnames or []), "consent"])
        writer.writeheader()
        writer.writerows({**row, "consent": "webinar"} for row in reader)
    assert "imported 5 as pending" in run(env, "subscribers", "import", str(imported))
    with transaction(system.sessions) as session:
        subscribers = session.scalars(sa.select(Subscriber)).all()
        assert {s.email: s.first_name for s in subscribers} == people


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # checked before any write
def test_loading_holds_lessons_to_the_rules_an_admin_save_does(
    system: System, env: dict[str, str], tmp_path: Path
) -> None:
    output = load_refused(system, env, tmp_path, {"02/subject.txt": "Re: your gut\n"})
    assert "reply or a forward" in output


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # checked before any write
@pytest.mark.parametrize(
    ("edits", "message"),
    [
        ({"03/subject.txt": "\n"}, "/03/subject.txt: write a subject"),
        ({"03/subject.txt": "Magnesium\r\nBcc: x@y.z\n"}, "/03/subject.txt: control characters"),
        ({"03/body.html": " \n"}, "/03/body.html: write the HTML body"),
        ({"03/body.txt": ""}, "/03/body.txt: write the plain-text body"),
    ],
)
def test_a_lesson_without_a_subject_or_a_body_loads_nothing(
    system: System, env: dict[str, str], tmp_path: Path, edits: dict[str, str], message: str
) -> None:
    assert message in load_refused(system, env, tmp_path, {"02/subject.txt": "Fine\n", **edits})


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # checked before any write
@pytest.mark.parametrize(
    ("edits", "message"),
    [
        ({"03/body.html": "{% if 1 %}"}, "/03/body.html, line 1: Unexpected end of template"),
        ({"03/body.txt": "{{ nope }}"}, "/03/body.txt: unknown variable 'nope'"),
        ({"03/body.html": "{{ ''.__class__ }}"}, "/03/body.html: not allowed here"),
        ({"03/preheader.txt": "Short.\n"}, "/03/preheader.txt: write one sentence"),
        ({"03/subject.txt": "Re: magnesium\n"}, "/03/subject.txt: must not pretend"),
        ({"03/body.txt": None}, "/03/body.txt: No such file or directory"),
    ],
)
def test_a_refused_load_names_the_lesson_folder_and_file(
    system: System, env: dict[str, str], tmp_path: Path, edits: dict[str, str | None], message: str
) -> None:
    """It said "body_html, line 1", the editor's name for the part, and not which lesson."""
    output = load_refused(system, env, tmp_path, edits)
    assert message in output, output


LAST_LESSON_ONLY = "{{ 100 // (lesson_total - lesson_number) }}\n"
"""Renders for the samples (lesson 1 of 10) and for every lesson but the last."""


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # checked before any write
def test_a_lesson_that_fails_only_where_it_stands_loads_nothing(
    system: System, env: dict[str, str], tmp_path: Path
) -> None:
    """Checked only with the samples, lesson 10 of 10 loaded and then failed in the
    worker; the editor refuses it (drip.lessons.check_lesson)."""
    output = load_refused(system, env, tmp_path, {"10/body.txt": LAST_LESSON_ONLY})
    assert "/10/body.txt" in output and "lesson 10 of 10" in output, output


def test_a_lesson_the_database_has_beyond_the_files_counts_in_the_total(
    system: System, env: dict[str, str], tmp_path: Path
) -> None:
    """Loading deletes no lesson, so after an 11th added in the editor, lesson 10 of the
    files renders as lesson 10 of 11, and loads."""
    out = tmp_path / "series"
    run(env, "lessons", "export", str(out))
    with transaction(system.sessions) as session:
        series = session.scalars(sa.select(Sequence)).one()
        template = version_template(latest_version(session, series.steps[-1].id))
        lessons.add_step(
            session, system.mailer.renderer, series, template, author="ana", now=system.clock.now()
        )
    (out / "10" / "body.txt").write_text(LAST_LESSON_ONLY)
    assert "1 new lesson version(s)" in run(env, "lessons", "load", str(out))

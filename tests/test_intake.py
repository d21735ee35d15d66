"""Signups received by the web and handled by a worker (drip.intake): once each, as of
the moment the visitor asked, never lost with Redis, given up after DRIP_MAX_ATTEMPTS
failures, and erased without a trace whichever of a worker and an erasure comes first."""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from drip import intake, privacy, signup
from drip.consent import events_of
from drip.db import SessionFactory, make_session_factory, transaction
from drip.errors import InvalidInput, NotFound
from drip.models import Base, ReceivedSignup, Sequence, Subscriber
from drip.privacy import erase, is_suppressed
from drip.signup import SignupRequest
from drip.wiring import make_engine
from tests.helpers import System, plan_of, wait_until

TIMEOUT = 60
"""Seconds any wait in a race may take before the test fails instead of hanging."""


def receive(system: System, email: str, *, queued: bool = True, **fields: str) -> int:
    """What the web does for a signup: store it, commit, queue it (unless Redis lost
    the message: not `queued`)."""
    with transaction(system.sessions) as session:
        received_id = intake.receive(
            session.connection(),
            SignupRequest(email=email, **fields),
            now=system.clock.now(),
            consent_text=lambda series: f"the notice for {series}",
            privacy_policy="sha256:policy",
            default_timezone="UTC",
        )
    if queued:
        system.enqueue_signups([received_id])
    return received_id


def waiting(system: System) -> int:
    with transaction(system.sessions) as session:
        return session.scalar(sa.select(sa.func.count()).select_from(ReceivedSignup)) or 0


def test_the_worker_signs_up_as_of_the_moment_the_visitor_asked(system: System) -> None:
    asked = system.clock.now()
    receive(system, "Ana@Example.com", first_name=" Ana ", timezone="Asia/Tokyo", ip="192.0.2.1")
    system.clock.advance(timedelta(minutes=5))
    system.drain()
    with transaction(system.sessions) as session:
        ana = system.subscriber("ana@example.com", session=session)
        [(signup, text)] = events_of(session, ana.id)
    assert (ana.first_name, ana.timezone, ana.created_at) == ("Ana", "Asia/Tokyo", asked)
    assert (signup.occurred_at, signup.email_entered, signup.ip) == (
        asked,
        "Ana@Example.com",
        "192.0.2.1",
    )
    assert text is not None and text.body == "the notice for Calm Back, Calm Mind"
    assert text.privacy_policy_version == "sha256:policy"
    assert len(system.smtp.to("ana@example.com")) == 1
    assert waiting(system) == 0


def test_every_signup_sees_its_series_as_the_database_has_it_now(system: System) -> None:
    """Another process may rename, add or delete a series at any moment: the very next
    signup stores the new name, finds the new series, and is refused for the deleted one,
    and one without a series still goes to the first installed."""
    with transaction(system.sessions) as session:
        renamed = session.scalars(sa.select(Sequence)).one()
        renamed.name = "Renamed"
        added = Sequence(slug="second", name="Second", created_at=system.clock.now())
        session.add(added)
        session.flush()
        ids = renamed.id, added.id
    first = receive(system, "ana@example.com")
    second = receive(system, "bo@example.com", sequence="second")
    with transaction(system.sessions) as session:
        rows = {
            row.id: (row.sequence_id, row.consent_text)
            for row in session.scalars(sa.select(ReceivedSignup))
        }
        session.execute(sa.delete(Sequence).where(Sequence.slug == "second"))
    with pytest.raises(NotFound):
        receive(system, "cy@example.com", sequence="second")
    assert rows == {
        first: (ids[0], "the notice for Renamed"),
        second: (ids[1], "the notice for Second"),
    }


def test_a_signup_joins_the_series_it_was_for_even_if_its_slug_went_to_another(
    system: System,
) -> None:
    """An admin renames the series between the signup and its handling, and gives its
    old slug to a new series: the signup still joins the series the visitor saw."""
    receive(system, "ana@example.com", sequence="feel-better")
    with transaction(system.sessions) as session:
        renamed = session.scalars(sa.select(Sequence)).one()
        renamed.slug = "calm-back"
        session.flush()
        session.add(Sequence(slug="feel-better", name="Other", created_at=system.clock.now()))
        renamed_id = renamed.id
    system.drain()
    ana = system.subscriber("ana@example.com")
    assert ana.sequence_id == renamed_id


def test_a_signup_whose_series_was_deleted_meanwhile_goes_with_it(system: System) -> None:
    """Like the series' subscribers: the worker then finds nothing to do."""
    system.stop_worker()
    with transaction(system.sessions) as session:
        session.add(Sequence(slug="second", name="Second", created_at=system.clock.now()))
    receive(system, "ana@example.com", sequence="second")
    with transaction(system.sessions) as session:
        session.execute(sa.delete(Sequence).where(Sequence.slug == "second"))
    assert waiting(system) == 0
    system.drain()
    assert system.smtp.received == []


def test_a_redelivered_message_does_nothing_the_second_time(system: System) -> None:
    received_id = receive(system, "ana@example.com")
    system.drain()
    system.enqueue_signups([received_id])
    system.drain()
    with transaction(system.sessions) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Subscriber)) == 1
        ana = system.subscriber("ana@example.com", session=session)
        assert len(events_of(session, ana.id)) == 1
    assert len(system.smtp.to("ana@example.com")) == 1


def test_a_signup_whose_message_redis_lost_is_queued_again_by_the_sweeper(
    system: System,
) -> None:
    receive(system, "ana@example.com")
    system.broker.client.flushall()
    system.drain()
    assert system.smtp.received == []
    system.clock.advance(system.settings.requeue_after - timedelta(seconds=1))
    assert system.tick(sweep_only=True).requeued_signups == [], "not before requeue_after"
    system.clock.advance(timedelta(seconds=1))
    assert len(system.tick(sweep_only=True).requeued_signups) == 1
    assert system.tick(sweep_only=True).requeued_signups == [], "once per requeue_after"
    system.drain()
    assert len(system.smtp.to("ana@example.com")) == 1


def test_erasure_deletes_a_signup_no_worker_has_handled_yet(system: System) -> None:
    system.join("ana@example.com")
    system.stop_worker()
    receive(system, "ana@example.com")
    with transaction(system.sessions) as session:
        erase(session, "ana@example.com", secret=system.settings.secret_key, now=system.clock.now())
    assert waiting(system) == 0
    system.drain()
    with transaction(system.sessions) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Subscriber)) == 0


def test_a_signup_that_no_longer_passes_its_checks_is_dropped(
    system: System, caplog: pytest.LogCaptureFixture
) -> None:
    received_id = receive(system, "ana@example.com")
    with transaction(system.sessions) as session:
        session.get_one(ReceivedSignup, received_id).timezone = "Mars/Olympus_Mons"
    with caplog.at_level(logging.WARNING, logger="drip"):
        system.drain()
    assert "unknown timezone" in caplog.text
    assert waiting(system) == 0
    assert system.smtp.received == []


def test_a_signup_no_worker_managed_to_handle_is_deleted_after_the_pending_ttl(
    system: System,
) -> None:
    receive(system, "ana@example.com")
    system.broker.client.flushall()
    system.clock.advance(system.settings.pending_ttl - timedelta(seconds=1))
    system.tick()
    assert waiting(system) == 1
    system.broker.client.flushall()
    system.clock.advance(timedelta(seconds=1))
    system.tick()
    assert waiting(system) == 0


def test_bad_input_is_refused_before_anything_is_stored(system: System) -> None:
    with pytest.raises(InvalidInput):
        receive(system, "ana@example.com", timezone="Mars/Olympus_Mons")
    with pytest.raises(NotFound):
        receive(system, "ana@example.com", sequence="no-such-series")
    assert waiting(system) == 0


def process(system: System, received_id: int, *, max_attempts: int | None = None) -> int | None:
    """What the `process_signup` actor does with a message, on the test's thread."""
    return intake.process(
        system.sessions,
        received_id,
        secret=system.settings.secret_key,
        max_attempts=max_attempts or system.settings.max_attempts,
    )


def row(system: System, received_id: int) -> ReceivedSignup | None:
    with transaction(system.sessions) as session:
        return session.get(ReceivedSignup, received_id)


def attempts(system: System, received_id: int) -> int:
    found = row(system, received_id)
    assert found is not None
    return found.attempts


def a_bug(*args: object, **kwargs: object) -> None:
    raise RuntimeError("a bug in handling signups")


def test_a_signup_whose_handling_keeps_failing_is_given_up_after_max_attempts(
    system: System, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    received_id = receive(system, "ana@example.com")
    monkeypatch.setattr(intake, "subscribe", a_bug)
    for _ in range(system.settings.max_attempts):
        with pytest.raises(RuntimeError):
            process(system, received_id)
        system.clock.advance(system.settings.requeue_after)
        assert system.tick(sweep_only=True).requeued_signups == [received_id]
    with caplog.at_level(logging.ERROR, logger="drip"):
        assert process(system, received_id) is None, "the message after the last attempt"
        system.clock.advance(system.settings.requeue_after)
        assert system.tick(sweep_only=True).requeued_signups == [], "never queued again"
        assert process(system, received_id) is None, "a stray redelivery changes nothing"
    [gave_up] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    given_up = f"received signup {received_id} given up after {system.settings.max_attempts}"
    assert gave_up.getMessage().startswith(given_up)
    assert "ana@example.com" not in caplog.text
    kept = row(system, received_id)
    assert kept is not None and kept.queued_at is None, "kept for an operator to look at"
    assert kept.attempts == system.settings.max_attempts + 1
    system.clock.advance(system.settings.pending_ttl)
    system.tick()
    assert waiting(system) == 0, "until the pending TTL, as any received signup"
    assert system.smtp.received == []


def give_up(system: System, monkeypatch: pytest.MonkeyPatch, email: str) -> int:
    """A signup whose handling failed every attempt, and which the worker gave up on;
    the web's message for it is gone, so only the sweeper can queue it again."""
    received_id = receive(system, email, queued=False)
    with monkeypatch.context() as patched:
        patched.setattr(intake, "subscribe", a_bug)
        for _ in range(system.settings.max_attempts):
            with pytest.raises(RuntimeError):
                process(system, received_id)
        assert process(system, received_id) is None, "given up"
    return received_id


def test_the_deploy_guides_sql_hands_given_up_signups_back_to_the_sweeper(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    guide = (Path(__file__).parent.parent / "docs" / "deploy.md").read_text()
    [sql] = re.findall(r"```sql\n(UPDATE received_signups .*?)\n```", guide, re.DOTALL)
    received_id = give_up(system, monkeypatch, "ana@example.com")
    with transaction(system.sessions) as session:
        session.execute(sa.text(sql))
    system.clock.advance(system.settings.requeue_after)  # the attempts took far longer
    assert system.tick(sweep_only=True).requeued_signups == [received_id]
    system.drain()
    assert len(system.smtp.to("ana@example.com")) == 1
    assert waiting(system) == 0


def test_retrying_hands_only_given_up_signups_back_to_the_next_sweep(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Handed back as of now, the sweeper takes them at its very next pass, with their
    attempts counted from zero; a signup still in the workers' hands keeps its count."""
    ana = give_up(system, monkeypatch, "ana@example.com")
    bo = give_up(system, monkeypatch, "bo@example.com")
    cy = receive(system, "cy@example.com", queued=False)
    with monkeypatch.context() as patched:
        patched.setattr(intake, "subscribe", a_bug)
        with pytest.raises(RuntimeError):
            process(system, cy)
    with transaction(system.sessions) as session:
        assert intake.count_given_up(session) == 2
        assert [r.id for r, _ in intake.given_up(session, 10)] == [bo, ana], "newest first"
        newest = [(r.id, name) for r, name in intake.given_up(session, 1)]
        assert newest == [(bo, "Calm Back, Calm Mind")]
        now = system.clock.now()
        requeue_after = system.settings.requeue_after
        assert intake.retry_given_up(session, now, requeue_after=requeue_after, ids=[ana]) == 1
    with transaction(system.sessions) as session:
        assert [r.id for r, _ in intake.given_up(session, 10)] == [bo]
        assert intake.retry_given_up(session, now, requeue_after=requeue_after) == 1
        assert intake.retry_given_up(session, now, requeue_after=requeue_after) == 0
    assert sorted(system.tick(sweep_only=True).requeued_signups) == [ana, bo]
    assert [attempts(system, received_id) for received_id in (ana, bo, cy)] == [0, 0, 1]
    system.drain()
    assert len(system.smtp.to("ana@example.com")) == len(system.smtp.to("bo@example.com")) == 1
    assert waiting(system) == 1, "Cy's, which nobody queued again"


def test_counting_given_up_signups_reads_the_queued_at_index(system: System) -> None:
    """The admin dashboard counts them on every visit: the count reads only the index,
    whatever number of signups workers have in hand."""
    with transaction(system.sessions) as session:
        assert "ix_received_signups_queued_at" in plan_of(session, intake._COUNT_GIVEN_UP)


def test_an_erasure_deletes_a_signup_a_worker_gave_up_on(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kept for an operator to look at, it still goes with its address."""
    give_up(system, monkeypatch, ANA[0])
    assert erasing(system)(system.sessions) == 0, "no subscription was made"
    assert waiting(system) == 0
    assert_erased(system)


def test_a_signup_that_failed_once_is_handled_when_the_sweeper_queues_it_again(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    received_id = receive(system, "ana@example.com")
    with monkeypatch.context() as patched:
        patched.setattr(intake, "subscribe", a_bug)
        with pytest.raises(RuntimeError):
            process(system, received_id)
    system.clock.advance(system.settings.requeue_after)
    assert system.tick(sweep_only=True).requeued_signups == [received_id]
    system.drain()
    assert len(system.smtp.to("ana@example.com")) == 1
    assert waiting(system) == 0


KILLED_WHILE_HANDLING = """
import os, signal, sys
from drip import intake
from drip.db import create_db_engine, make_session_factory
url, received_id, max_attempts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
intake.subscribe = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
sessions = make_session_factory(create_db_engine(url))
intake.process(sessions, received_id, secret="unused", max_attempts=max_attempts)
"""
"""A worker process that SIGKILLs itself while it handles the signup (after it locked
and deleted the row, before it commits): no except, finally or Dramatiq retry runs."""


def test_a_worker_killed_while_handling_a_signup_still_counts_the_attempt(
    system: System,
) -> None:
    received_id = receive(system, "ana@example.com")

    def worker() -> int:
        argv = [sys.executable, "-c", KILLED_WHILE_HANDLING]
        argv += [system.settings.database_url, str(received_id), "2"]
        return subprocess.run(argv, capture_output=True, timeout=TIMEOUT).returncode

    assert worker() == worker() == -signal.SIGKILL
    survivor = row(system, received_id)
    assert survivor is not None and survivor.attempts == 2, "both kills were counted"
    assert survivor.queued_at is not None, "and the sweeper may queue it once more"
    assert worker() == 0, "the third message gives up instead of handling it"
    given_up = row(system, received_id)
    assert given_up is not None and given_up.queued_at is None


ANA = ("ana@example.com", "Ana Tester", "test-browser/1.0", "203.0.113.7")
"""Ana's address, name, user agent and IP: what an erasure must leave nowhere."""


class Racer:
    """Runs `work` on a thread and an engine of its own (or `engine`, made for it), as
    another process would; it notes when `work` connects, just before it begins a
    transaction (SQLite's BEGIN IMMEDIATE, which waits for the write lock)."""

    def __init__(
        self,
        system: System,
        work: Callable[[SessionFactory], object],
        *,
        engine: sa.Engine | None = None,
    ) -> None:
        self.engine = engine or make_engine(system.settings)
        self.began = threading.Event()
        event.listen(self.engine, "engine_connect", lambda _: self.began.set())
        self.outcome: list[object] = []
        sessions = make_session_factory(self.engine)
        self.thread = threading.Thread(target=self._run, args=(work, sessions), daemon=True)
        self.thread.start()

    def _run(self, work: Callable[[SessionFactory], object], sessions: SessionFactory) -> None:
        try:
            self.outcome.append(work(sessions))
        except BaseException as exc:  # handed to the test's thread by result()
            self.outcome.append(exc)

    @property
    def done(self) -> bool:
        return not self.thread.is_alive()

    def result(self) -> Any:
        """What `work` returned; what it raised is raised here, on the test's thread."""
        self.thread.join(TIMEOUT)
        assert self.done, "still waiting: a deadlock, or a lock nobody releases"
        [outcome] = self.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def wait_until_blocked(self, system: System) -> None:
        """Until `work` waits for a lock another racer holds: on SQLite, the write lock
        its transaction asks for as it begins; on PostgreSQL, a row lock."""
        assert self.began.wait(TIMEOUT), self.outcome
        if system.settings.database_url.startswith("postgresql"):
            wait_until(lambda: self.done or lock_waits(system) > 0, "a wait for a row lock")
        assert not self.done, f"it went through without waiting: {self.outcome}"


def lock_waits(system: System) -> int:
    with transaction(system.sessions) as session:
        return session.scalar(_LOCK_WAITS) or 0


_LOCK_WAITS = sa.text(
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


def hold(
    monkeypatch: pytest.MonkeyPatch,
    module: ModuleType,
    name: str,
    *,
    first: Callable[..., object] = lambda *args, **kwargs: None,
) -> tuple[Any, Any]:
    """Make `module.name` stop until released, before it does anything but `first`
    (given its arguments): returns the events (inside, release) the test waits for and
    sets."""
    inside, release = threading.Event(), threading.Event()
    function = getattr(module, name)

    def held(*args: object, **kwargs: object) -> object:
        first(*args, **kwargs)
        inside.set()
        assert release.wait(TIMEOUT)
        return function(*args, **kwargs)

    monkeypatch.setattr(module, name, held)
    return inside, release


def handling(system: System, received_id: int) -> Callable[[SessionFactory], object]:
    return lambda sessions: intake.process(
        sessions,
        received_id,
        secret=system.settings.secret_key,
        max_attempts=system.settings.max_attempts,
    )


def erasing(system: System, email: str = ANA[0]) -> Callable[[SessionFactory], object]:
    def work(sessions: SessionFactory) -> int:
        with transaction(sessions) as session:
            return erase(session, email, secret=system.settings.secret_key, now=system.clock.now())

    return work


def receive_ana(system: System) -> int:
    return receive(system, ANA[0], first_name=ANA[1], user_agent=ANA[2], ip=ANA[3])


def assert_erased(system: System) -> None:
    """No row anywhere holds anything of Ana's; only her keyed hash is left."""
    with transaction(system.sessions) as session:
        for table in Base.metadata.sorted_tables:
            for found in session.execute(sa.select(table)).all():
                for trace in ANA:
                    assert trace.lower() not in repr(tuple(found)).lower(), (table.name, trace)
        assert is_suppressed(session, system.settings.secret_key, ANA[0])


def test_an_erasure_waits_for_a_worker_handling_the_signup_then_erases_what_it_made(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    received_id = receive_ana(system)
    inside, release = hold(monkeypatch, intake, "subscribe")  # the row locked and deleted
    worker = Racer(system, handling(system, received_id))
    assert inside.wait(TIMEOUT)
    eraser = Racer(system, erasing(system))
    eraser.wait_until_blocked(system)
    release.set()
    delivery_id = worker.result()
    assert delivery_id is not None, "the worker made a subscription and its confirmation"
    assert eraser.result() == 1, "which the erasure, let through after, deleted"
    assert_erased(system)
    system.enqueue([delivery_id])
    system.drain()
    assert system.smtp.received == [], "the confirmation went with the subscription"


def test_a_worker_waits_for_an_erasure_of_the_signup_then_finds_nothing_to_do(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    received_id = receive_ana(system)
    inside, release = hold(monkeypatch, privacy, "subscriptions_of")  # the row deleted
    eraser = Racer(system, erasing(system))
    assert inside.wait(TIMEOUT)
    worker = Racer(system, handling(system, received_id))
    worker.wait_until_blocked(system)
    release.set()
    assert eraser.result() == 0
    assert worker.result() is None
    assert_erased(system)
    system.drain()
    assert system.smtp.received == []


def test_an_erasure_between_a_workers_count_and_its_handling_leaves_it_nothing_to_do(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    received_id = receive_ana(system)
    inside, release = hold(monkeypatch, intake, "handle")  # the attempt counted, committed
    worker = Racer(system, handling(system, received_id))
    assert inside.wait(TIMEOUT)
    eraser = Racer(system, erasing(system))
    assert eraser.result() == 0, "nothing to wait for: the count is committed"
    release.set()
    assert worker.result() is None
    assert_erased(system)
    system.drain()
    assert system.smtp.received == []


def test_an_erasure_keeps_a_notice_another_signup_takes_up_meanwhile(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ana's erasure drops the consent notice only her events pointed to, while Bob's
    signup, handled at that moment, points a new event at it. On PostgreSQL the
    erasure's DELETE waited for Bob and then failed on the foreign key; now the notice
    stays and the erasure goes through."""
    receive_ana(system)
    system.drain()
    system.stop_worker()  # Bob's signup is handled by the racer alone
    bob = receive(system, "bob@example.com")
    inside, release = hold(  # Bob's consent event written, not yet committed
        monkeypatch, signup, "_queue_confirmation", first=lambda session, *_, **__: session.flush()
    )
    worker = Racer(system, handling(system, bob))
    assert inside.wait(TIMEOUT)
    eraser = Racer(system, erasing(system))
    eraser.wait_until_blocked(system)
    release.set()

    assert worker.result() is not None, "Bob's confirmation is queued"
    assert eraser.result() == 1
    assert_erased(system)
    with transaction(system.sessions) as session:
        subscriber = session.scalars(
            sa.select(Subscriber).where(Subscriber.email == "bob@example.com")
        ).one()
        [(_, notice)] = events_of(session, subscriber.id)
        assert notice is not None, "the notice his event points to is still there"

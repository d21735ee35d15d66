"""Signups received by the web and handled by a worker (drip.intake): once each, as of
the moment the visitor asked, and never lost with Redis."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import sqlalchemy as sa

from drip import intake
from drip.consent import events_of
from drip.db import transaction
from drip.errors import InvalidInput, NotFound
from drip.models import ReceivedSignup, Sequence, Subscriber
from drip.privacy import erase
from drip.signup import SignupRequest
from tests.helpers import System


def receive(system: System, email: str, **fields: str) -> int:
    """What the web does for a signup: store it, commit, queue it."""
    with transaction(system.sessions) as session:
        received_id = intake.receive(
            session.connection(),
            SignupRequest(email=email, **fields),
            now=system.clock.now(),
            consent_text=lambda series: f"the notice for {series}",
            privacy_policy="sha256:policy",
            default_timezone="UTC",
        )
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
        session.scalars(sa.select(Sequence)).one().name = "Renamed"
        session.add(Sequence(slug="second", name="Second", created_at=system.clock.now()))
    first = receive(system, "ana@example.com")
    second = receive(system, "bo@example.com", sequence="second")
    with transaction(system.sessions) as session:
        session.execute(sa.delete(Sequence).where(Sequence.slug == "second"))
    with pytest.raises(NotFound):
        receive(system, "cy@example.com", sequence="second")
    with transaction(system.sessions) as session:
        rows = {
            row.id: (row.sequence, row.consent_text)
            for row in session.scalars(sa.select(ReceivedSignup))
        }
    assert rows == {
        first: ("feel-better", "the notice for Renamed"),
        second: ("second", "the notice for Second"),
    }


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

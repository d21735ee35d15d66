"""SEC-13: one address gets at most 1 confirmation email a day and 3 in 30 days, however
it is signed up, from however many IPs, and whatever happens in between."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from flask.testing import FlaskClient

from drip.db import transaction
from drip.list_bombing import KEPT
from drip.models import ConfirmationMail
from tests.helpers import System


def test_fifteen_signups_from_fifteen_ips_within_an_hour_send_one_email(
    client: FlaskClient, system: System
) -> None:
    for n in range(15):
        answer = client.post(
            "/subscribe",
            data={"email": "victim@example.com"},
            environ_overrides={"REMOTE_ADDR": f"198.51.100.{n + 1}"},
        )
        assert answer.status_code == 303, "the same answer as for a new address (SEC-12)"
        system.clock.advance(timedelta(minutes=4))
    system.drain()
    assert len(system.smtp.to("victim@example.com")) == 1


def test_three_confirmations_in_thirty_days_then_none_until_the_first_ages_out(
    system: System,
) -> None:
    queued = []
    for _ in range(5):
        queued.append(system.signup("ana@example.com") is not None)
        system.clock.advance(timedelta(days=1, minutes=1))
    assert queued == [True, True, True, False, False]
    system.clock.advance(timedelta(days=25))
    assert system.signup("ana@example.com") is not None, "the first one is 30 days old now"
    system.drain()
    assert len(system.smtp.to("ana@example.com")) == 4


def test_the_count_is_per_address_whatever_its_spelling(system: System) -> None:
    assert system.signup("Ana@Example.com") is not None
    assert system.signup("ana@example.com") is None
    assert system.signup("bob@example.com") is not None


def test_the_scheduler_forgets_what_no_limit_looks_at(system: System) -> None:
    system.signup("ana@example.com")
    system.clock.advance(KEPT - timedelta(minutes=1))
    system.tick()
    assert _kept(system) == 1
    system.clock.advance(timedelta(minutes=2))
    system.tick()
    assert _kept(system) == 0


def _kept(system: System) -> int:
    with transaction(system.sessions) as session:
        return session.scalar(sa.select(sa.func.count()).select_from(ConfirmationMail)) or 0

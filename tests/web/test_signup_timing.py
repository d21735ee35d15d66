"""Standards SEC-12's timing test: how long a signup takes tells nobody the address's
state. The worker is stopped, so only the request is timed, which is all a visitor sees."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from drip import list_bombing
from drip.db import transaction
from drip.models import ConsentMethod
from drip.privacy import suppress
from drip.subscriptions import unsubscribe
from drip.tokens import FORM_SHOWN
from tests.helpers import System

pytestmark = pytest.mark.slow
RUNS = 30
MAX_P50_SPREAD_MS = 20.0
MAX_P50_RATIO = 3.0
"""Beside the standard's 20 ms, between the states of an address: on an idle machine a
signup done in the request (a new address 13 ms, a known one 6) stays within 20 ms, and
only the ratio shows it. Deferred, the ratio is 1.2 idle and up to 1.8 with other tests
running. A bot's trap (honeypot, too fast) is held to the 20 ms only: it does the same
work but rolls it back, so it skips the commit and the queueing, and on a loaded machine
that alone made it a third of a new address's time."""
TRAPS = ("honeypot", "too-fast")


def prepare(system: System) -> None:
    """One address in each state a signup could reveal."""
    system.signup("pending@example.com")
    system.join("active@example.com")
    system.join("unsubscribed@example.com")
    secret, now = system.settings.secret_key, system.clock.now()
    with transaction(system.sessions) as session:
        gone = system.subscriber("unsubscribed@example.com", session=session)
        unsubscribe(session, gone.id, now, method=ConsentMethod.ADMIN)
        suppress(session, secret, "suppressed@example.com", "complaint", now=now)
        for _ in range(max(most for most, _ in list_bombing.LIMITS)):
            list_bombing.note_mailed(session, secret, "capped@example.com", now=now)
    system.stop_worker()


def signups(system: System, client: FlaskClient) -> dict[str, Callable[[int], TestResponse]]:
    """A POST /subscribe per state; `n` is the run, for a new address each time."""
    fresh_stamp = {"shown": system.mailer.tokens.make(FORM_SHOWN, [])}

    def post(email: str, **extra: str) -> TestResponse:
        return client.post("/subscribe", data={"email": email, "first_name": "Ana", **extra})

    return {
        "new": lambda n: post(f"new{n}@example.com"),
        "pending": lambda n: post("pending@example.com"),
        "active": lambda n: post("active@example.com"),
        "unsubscribed": lambda n: post("unsubscribed@example.com"),
        "suppressed": lambda n: post("suppressed@example.com"),
        "rate-limited": lambda n: post("capped@example.com"),
        "honeypot": lambda n: post(f"bot{n}@example.com", website="https://spam.example"),
        "too-fast": lambda n: post(f"fast{n}@example.com", **fresh_stamp),
    }


def test_a_signup_takes_as_long_whatever_the_address_state(
    unlimited_client: FlaskClient, system: System
) -> None:
    """30 signups per state, interleaved so that a busy moment of the machine falls on
    every state alike; the medians differ by less than 20 ms, and among the states of an
    address the slowest is under three times the fastest."""
    prepare(system)
    posts = signups(system, unlimited_client)
    took: dict[str, list[float]] = {state: [] for state in posts}
    for n in range(RUNS):
        for state, post in posts.items():
            began = time.perf_counter()
            response = post(n)
            took[state].append((time.perf_counter() - began) * 1000)
            assert response.status_code == 303, state
    medians = {state: statistics.median(times) for state, times in took.items()}
    table = ", ".join(f"{state} {ms:.1f}" for state, ms in medians.items())
    print(f"p50 ms per state ({system.settings.database_url.split(':')[0]}): {table}")
    slowest, fastest = max(medians.values()), min(medians.values())
    assert slowest - fastest < MAX_P50_SPREAD_MS, f"p50 spread {slowest - fastest:.1f} ms: {table}"
    states = [ms for state, ms in medians.items() if state not in TRAPS]
    slowest, fastest = max(states), min(states)
    assert slowest < MAX_P50_RATIO * fastest, f"p50 ratio {slowest / fastest:.1f}: {table}"

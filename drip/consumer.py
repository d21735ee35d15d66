"""Dramatiq's Redis consumer, fetching again as soon as a worker thread is free.

drip runs the prefetch equal to the thread count (standards REL-09), so while every
thread is busy the consumer may not fetch. Dramatiq's consumer then sleeps the back-off
it uses for an empty queue, 5-10 ms, then 10-20, 20-40 ms and so on up to the worker
timeout, and only starts again from 5 ms once it receives a message. A thread that
finishes during one of those sleeps idles until the sleep ends: with one thread, about
as long again as sending the email took (docs/performance.md, run 10). This consumer
waits for an ack or a nack instead, which wakes it at once, and keeps Dramatiq's
back-off for a queue that is really empty.
"""

from __future__ import annotations

import threading
from typing import Any

from dramatiq.brokers.redis import _RedisConsumer


class PromptConsumer(_RedisConsumer):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._freed = threading.Event()

    def ack(self, message: Any) -> None:
        try:
            super().ack(message)
        finally:
            self._freed.set()

    def nack(self, message: Any) -> None:
        try:
            super().nack(message)
        finally:
            self._freed.set()

    def __next__(self) -> Any:
        """The next message; or, while every thread has one, wait up to the worker
        timeout for one to finish, then None, so the worker can check whether it is
        stopping. Worker threads ack: the event is cleared before the count is read, so
        an ack landing between the two still ends the wait."""
        if not self.message_cache and self._full():
            self._freed.clear()
            if self._full():
                self._freed.wait(self.timeout / 1000)
            if self._full():
                return None
        return super().__next__()

    def _full(self) -> bool:
        return bool(self.outstanding_message_count >= self.prefetch)

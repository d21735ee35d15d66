"""Queueing a pass's deliveries from a thread of its own, while the pass goes on.

A scheduler pass alternates database work (claim a batch, commit) with Redis work
(queue that batch's deliveries). Done one after the other, a 10,000-due pass on
PostgreSQL spent about a third of its time queueing while the database sat idle
(bench/scheduler.py). Handed to one thread, batch k is queued while batch k+1 is
claimed. Only ids of committed rows are handed over, so the rule "a delivery is
committed before it is queued" holds; what is never queued (Redis down, the process
killed) stays `queued` in the database, and the sweeper queues it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

Enqueue = Callable[[Iterable[int]], None]
_DONE = None


@contextmanager
def queued_behind(enqueue: Enqueue) -> Iterator[Enqueue]:
    """Yields a function that hands ids to `enqueue`, which runs them on one thread in
    the order given. Leaving the block waits until every handed id went through.

    If `enqueue` raises, nothing more goes to it: the next hand-over, or else leaving
    the block, raises that error, so the pass stops where it would have stopped had it
    queued each batch itself.
    """
    batches: queue.SimpleQueue[list[int] | None] = queue.SimpleQueue()
    failed: list[BaseException] = []

    def run() -> None:
        while (batch := batches.get()) is not _DONE:
            if not failed:
                try:
                    enqueue(batch)
                except BaseException as exc:
                    failed.append(exc)

    def hand_over(ids: Iterable[int]) -> None:
        if failed:
            raise failed[0]
        if batch := list(ids):
            batches.put(batch)

    sender = threading.Thread(target=run, name="drip-enqueue", daemon=True)
    sender.start()
    try:
        yield hand_over
    finally:
        batches.put(_DONE)
        sender.join()
    if failed:
        raise failed[0]

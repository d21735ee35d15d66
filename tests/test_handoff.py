"""Queueing from a thread of the pass's own: everything handed over is queued, in order,
by the end of the block, and a failure stops the hand-over where the pass would stop."""

from __future__ import annotations

import threading
from collections.abc import Iterable

import pytest

from drip.handoff import queued_behind


def test_every_id_handed_over_is_queued_in_order_on_another_thread_before_the_block_ends() -> None:
    queued: list[int] = []
    threads: set[str] = set()

    def enqueue(ids: Iterable[int]) -> None:
        threads.add(threading.current_thread().name)
        queued.extend(ids)

    with queued_behind(enqueue) as hand_over:
        for start in range(0, 50, 10):
            hand_over(range(start, start + 10))
        hand_over([])

    assert queued == list(range(50))
    assert threads == {"drip-enqueue"}


def test_the_pass_goes_on_while_a_batch_is_being_queued() -> None:
    """The second batch is handed over while the first is still being queued."""
    second_handed = threading.Event()
    waited: list[bool] = []

    def enqueue(ids: Iterable[int]) -> None:
        if list(ids) == [1]:
            waited.append(second_handed.wait(timeout=10))

    with queued_behind(enqueue) as hand_over:
        hand_over([1])
        hand_over([2])
        second_handed.set()

    assert waited == [True]


def test_a_failed_enqueue_stops_the_hand_over_and_is_raised() -> None:
    calls: list[list[int]] = []
    failed = threading.Event()

    def enqueue(ids: Iterable[int]) -> None:
        calls.append(list(ids))
        failed.set()
        raise RuntimeError("broker gone")

    with pytest.raises(RuntimeError, match="broker gone"), queued_behind(enqueue) as hand_over:
        hand_over([1])
        assert failed.wait(timeout=10)
        hand_over([2])
    assert calls == [[1]], "nothing more went to a failed enqueue"


def test_an_error_in_the_pass_waits_for_what_was_handed_over() -> None:
    queued: list[int] = []

    with pytest.raises(ValueError, match="claim failed"), queued_behind(queued.extend) as hand_over:
        hand_over([1, 2])
        raise ValueError("claim failed")

    assert queued == [1, 2]

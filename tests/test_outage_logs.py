"""A Redis outage shows in a worker's log once a minute at ERROR, not every 3 seconds per
consumer at CRITICAL."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from drip.outage_logs import OutageThrottle, throttle_outage_lines

CONSUMER = "dramatiq.worker.ConsumerThread(drip)"
DELAYED = "dramatiq.worker.ConsumerThread(drip.DQ)"
LOST = "Consumer encountered a connection error: %s"
RESTART = "Restarting consumer in %0.2f seconds."


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def kept() -> Iterator[Kept]:
    handler = Kept()
    handler.addFilter(OutageThrottle(every=60))
    yield handler


def emit(
    handler: logging.Handler, at: float, name: str, level: int, msg: str, *args: object
) -> None:
    record = logging.makeLogRecord(
        {"name": name, "levelno": level, "levelname": logging.getLevelName(level), "msg": msg}
    )
    record.args, record.created = args, at
    handler.handle(record)


def outage(handler: logging.Handler, *, began: float, seconds: int) -> None:
    """What two consumers log while Redis is down: each a connection error and a
    restart line every 3 seconds."""
    for at in range(int(began), int(began) + seconds, 3):
        for name in (CONSUMER, DELAYED):
            emit(handler, at, name, logging.CRITICAL, LOST, "Error 111 connecting to redis")
            emit(handler, at, name, logging.INFO, RESTART, 3.0)


def test_a_short_outage_logs_one_error_and_one_restart(kept: Kept) -> None:
    outage(kept, began=1000, seconds=15)
    assert [(r.levelname, r.getMessage()) for r in kept.records] == [
        ("ERROR", "Consumer encountered a connection error: Error 111 connecting to redis"),
        ("INFO", "Restarting consumer in 3.00 seconds."),
    ]


def test_a_long_outage_logs_once_a_minute_counting_what_it_held_back(kept: Kept) -> None:
    outage(kept, began=1000, seconds=150)
    errors = [r for r in kept.records if r.getMessage().startswith("Consumer")]
    assert [r.created for r in errors] == [1000, 1060, 1120]
    assert errors[1].getMessage().endswith("(39 more like it held back)")
    assert {r.levelno for r in errors} == {logging.ERROR}


def test_the_next_outage_is_logged_at_once(kept: Kept) -> None:
    outage(kept, began=1000, seconds=15)
    outage(kept, began=5000, seconds=3)
    errors = [r for r in kept.records if r.getMessage().startswith("Consumer")]
    assert [r.created for r in errors] == [1000, 5000]
    assert errors[1].getMessage().endswith("(9 more like it held back)")


def test_other_lines_pass_untouched(kept: Kept) -> None:
    for at in (1000, 1001):
        emit(kept, at, CONSUMER, logging.CRITICAL, "Consumer encountered an unexpected error.")
        emit(kept, at, "drip.sending", logging.INFO, "delivery %d sent", 7)
    assert [(r.levelname, r.getMessage()) for r in kept.records] == [
        ("CRITICAL", "Consumer encountered an unexpected error."),
        ("INFO", "delivery 7 sent"),
    ] * 2


def test_the_throttle_sits_on_every_handler_of_the_logger_it_is_given() -> None:
    logger = logging.getLogger("tests.outage")
    handlers = [Kept(), Kept()]
    for handler in handlers:
        logger.addHandler(handler)
    try:
        throttle_outage_lines(logger)
        assert all(isinstance(h.filters[0], OutageThrottle) for h in handlers)
        assert handlers[0].filters[0] is handlers[1].filters[0]
    finally:
        for handler in handlers:
            logger.removeHandler(handler)

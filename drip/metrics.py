"""Numbers for Prometheus, read at scrape time from where they are true.

Many processes on many machines do drip's work, so no process holds the counts in
memory: each scrape asks the database (subscribers and emails, GROUP BY over indexed
columns, so PostgreSQL answers from the indexes alone), Redis (the Dramatiq queue) and
the record the scheduler leaves in Redis after each pass. The counts are gauges: erasure
and the purge of unconfirmed signups delete rows, so they can go down (not
drip_confirmations for the retention sweep, which keeps a count of those it erases).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime

import redis
import sqlalchemy as sa
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from drip.db import SessionFactory, reading
from drip.models import Delivery, DeliveryStatus, Sequence, Step, Subscriber, SubscriberStatus
from drip.scheduler import PassResult
from drip.stats import confirmations_by_series
from drip.tasks import NAMESPACE, QUEUE

log = logging.getLogger(__name__)
LAST_PASS_KEY = f"{NAMESPACE}:scheduler:last_pass"
_QUEUE_KEY = f"{NAMESPACE}:{QUEUE}"


def record_pass(
    client: redis.Redis, result: PassResult, *, seconds: float, finished_at: datetime
) -> None:
    """Leave the pass's duration and outcome for /metrics. Several schedulers overwrite
    each other, which is what "the last pass" means; a Redis outage only loses this."""
    try:
        client.hset(
            LAST_PASS_KEY,
            mapping={
                "seconds": seconds,
                "finished_at": finished_at.timestamp(),
                "issued": len(result.issued),
                "requeued": len(result.requeued),
            },
        )
    except redis.RedisError as exc:
        log.warning("could not record the scheduler pass for /metrics: %s", exc)


class DripCollector(Collector):
    """Every drip metric; a source that cannot be read is reported as down, not as zeros."""

    def __init__(self, sessions: SessionFactory, redis_client: Callable[[], redis.Redis]) -> None:
        self._sessions = sessions
        self._redis_client = redis_client

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "drip_source_up", "1 when this scrape could read the source.", labels=["source"]
        )
        for source, read in (("database", self._database), ("redis", self._redis)):
            try:
                families = read()
            except (sa.exc.SQLAlchemyError, redis.RedisError, OSError) as exc:
                log.warning("metrics: cannot read the %s: %s", source, exc)
                up.add_metric([source], 0)
                continue
            yield from families
            up.add_metric([source], 1)
        yield up

    def _database(self) -> list[Metric]:
        with reading(self._sessions) as session:
            slugs = dict(session.execute(sa.select(Sequence.id, Sequence.slug)).all())
            steps = {
                step_id: (slugs.get(sequence_id, ""), str(number))
                for step_id, sequence_id, number in session.execute(
                    sa.select(Step.id, Step.sequence_id, Step.number)
                )
            }
            by_status = session.execute(
                sa.select(Subscriber.sequence_id, Subscriber.status, sa.func.count()).group_by(
                    Subscriber.sequence_id, Subscriber.status
                )
            )
            confirmed = confirmations_by_series(session)
            emails = session.execute(
                sa.select(Delivery.step_id, Delivery.status, sa.func.count()).group_by(
                    Delivery.step_id, Delivery.status
                )
            )
            resends = session.scalar(
                sa.select(sa.func.coalesce(sa.func.sum(Delivery.ambiguous_resends), 0)).where(
                    Delivery.ambiguous_resends > 0
                )
            )
            return [
                *_subscriber_families(slugs, by_status.all(), confirmed),
                *_email_families(steps, emails.all()),
                CounterMetricFamily(
                    "drip_ambiguous_resends",
                    "Emails sent again when the relay may already have had them (a worker "
                    "vanished, or the connection was lost before the relay's answer): the "
                    "only duplicates drip allows (each one logged).",
                    value=resends,
                ),
            ]

    def _redis(self) -> list[Metric]:
        pipe = self._redis_client().pipeline(transaction=True)
        pipe.llen(_QUEUE_KEY)
        pipe.hlen(f"{_QUEUE_KEY}.msgs")
        pipe.hlen(f"{_QUEUE_KEY}.DQ.msgs")
        pipe.zcard(f"{_QUEUE_KEY}.XQ")
        pipe.hgetall(LAST_PASS_KEY)
        waiting, stored, retrying, dead, last_pass = pipe.execute()
        queue = GaugeMetricFamily(
            "drip_queue_messages",
            "Messages in the Dramatiq queue: waiting for a worker, being worked on, "
            "waiting for a Dramatiq retry, dead-lettered.",
            labels=["state"],
        )
        queue.add_metric(["waiting"], waiting)
        queue.add_metric(["in_progress"], max(stored - waiting, 0))
        queue.add_metric(["retrying"], retrying)
        queue.add_metric(["dead"], dead)
        return [queue, *_pass_families({k.decode(): float(v) for k, v in last_pass.items()})]


def _subscriber_families(
    slugs: dict[int, str],
    by_status: list[tuple[int, SubscriberStatus, int]],
    confirmed: dict[int, int],
) -> list[Metric]:
    subscribers = GaugeMetricFamily(
        "drip_subscribers",
        "Subscribers on file, by series and status.",
        labels=["series", "status"],
    )
    signups = GaugeMetricFamily(
        "drip_signups", "Signups on file (every status), by series.", labels=["series"]
    )
    unsubscribes = GaugeMetricFamily(
        "drip_unsubscribes", "Subscribers who unsubscribed, by series.", labels=["series"]
    )
    confirmations = GaugeMetricFamily(
        "drip_confirmations",
        "Signups that were confirmed, by series, from the consent log and the counts kept "
        "of those erased at retention: a reader who came back and confirmed again counts "
        "twice; one erased at their own request, not at all.",
        labels=["series"],
    )
    totals = Counter(dict.fromkeys(slugs.values(), 0))
    left = Counter(dict.fromkeys(slugs.values(), 0))
    for sequence_id, status, count in by_status:
        series = slugs.get(sequence_id, str(sequence_id))
        subscribers.add_metric([series, status.value], count)
        totals[series] += count
        if status == SubscriberStatus.UNSUBSCRIBED:
            left[series] += count
    for series, total in totals.items():
        signups.add_metric([series], total)
        unsubscribes.add_metric([series], left[series])
    done = Counter(dict.fromkeys(slugs.values(), 0))
    done.update({slugs.get(i, str(i)): n for i, n in confirmed.items()})
    for series, count in done.items():
        confirmations.add_metric([series], count)
    return [subscribers, signups, confirmations, unsubscribes]


def _email_families(
    steps: dict[int, tuple[str, str]], counts: list[tuple[int | None, DeliveryStatus, int]]
) -> list[Metric]:
    lessons = GaugeMetricFamily(
        "drip_emails",
        "Lesson emails by series, step and status (queued, sending, sent, failed, cancelled).",
        labels=["series", "step", "status"],
    )
    other = GaugeMetricFamily(
        "drip_transactional_emails",
        "Confirmation and privacy-link emails, by status.",
        labels=["status"],
    )
    unstepped: Counter[str] = Counter()
    for step_id, status, count in counts:
        if step_id is None:
            unstepped[status.value] += count
        else:
            lessons.add_metric([*steps.get(step_id, ("", str(step_id))), status.value], count)
    for value, count in unstepped.items():
        other.add_metric([value], count)
    return [lessons, other]


def _pass_families(last: dict[str, float]) -> list[Metric]:
    if not last:
        return []
    return [
        GaugeMetricFamily(
            "drip_scheduler_last_pass_seconds",
            "How long the last scheduler pass took.",
            value=last["seconds"],
        ),
        GaugeMetricFamily(
            "drip_scheduler_last_pass_timestamp_seconds",
            "When the last scheduler pass ended (Unix time); alert when it grows old.",
            value=last["finished_at"],
        ),
        GaugeMetricFamily(
            "drip_scheduler_last_pass_issued",
            "Deliveries the last scheduler pass queued.",
            value=last["issued"],
        ),
        GaugeMetricFamily(
            "drip_scheduler_last_pass_requeued",
            "Deliveries the last scheduler pass re-queued (retries, and what Redis lost).",
            value=last["requeued"],
        ),
    ]

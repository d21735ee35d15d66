"""/metrics: the numbers come from the database and Redis at scrape time, behind a token."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry

from drip.cli import main
from drip.db import transaction
from drip.metrics import DripCollector
from drip.models import ConsentMethod, Delivery
from drip.subscriptions import unsubscribe
from tests.helpers import System, drip_env, erase_ended_after_a_day

SQLITE_ONLY = pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)
"""These prove HTTP, logging or auth behaviour that does not depend on the database."""

SERIES = "feel-better"
TOKEN = "t0ken-for-prometheus-0123456789"


def scrape(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Each sample, keyed by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_metrics_count_the_list_the_emails_the_queue_and_the_last_scheduler_pass(
    client: FlaskClient, system: System, tmp_path: Path
) -> None:
    system.join("ana@example.com")
    system.join("ben@example.com")
    with transaction(system.sessions) as session:
        unsubscribe(
            session,
            system.subscriber("ben@example.com").id,
            system.clock.now(),
            method=ConsentMethod.ADMIN,
        )
    system.stop_worker()
    system.signup("cy@example.com")  # its confirmation waits in the queue
    env = drip_env(tmp_path, system.settings.database_url, system.broker.client.socket_file, 1)
    ticked = CliRunner().invoke(main, ["tick", "--now", "2026-10-24T06:00:00+00:00"], env=env)
    assert ticked.exit_code == 0, ticked.output

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")
    samples = scrape(response.get_data(as_text=True))
    assert value(samples, "drip_signups", series=SERIES) == 3
    assert value(samples, "drip_confirmations", series=SERIES) == 2
    assert value(samples, "drip_unsubscribes", series=SERIES) == 1
    assert value(samples, "drip_subscribers", series=SERIES, status="pending") == 1
    assert value(samples, "drip_emails", series=SERIES, step="0", status="sent") == 2
    assert value(samples, "drip_transactional_emails", status="sent") == 2
    assert value(samples, "drip_transactional_emails", status="queued") == 1
    assert value(samples, "drip_queue_messages", state="waiting") == 2, (
        "cy's confirmation, and the dashboard count the pass asked for"
    )
    assert value(samples, "drip_queue_messages", state="dead") == 0
    assert value(samples, "drip_scheduler_last_pass_timestamp_seconds") == 1792821600
    assert value(samples, "drip_scheduler_last_pass_seconds") > 0
    assert value(samples, "drip_source_up", source="database") == 1
    assert value(samples, "drip_source_up", source="redis") == 1
    assert value(samples, "drip_ambiguous_resends_total") == 0
    assert "example.com" not in response.get_data(as_text=True)

    with transaction(system.sessions) as session:
        session.execute(sa.update(Delivery).values(ambiguous_resends=1))
    samples = scrape(client.get("/metrics").get_data(as_text=True))
    assert value(samples, "drip_ambiguous_resends_total") == 5, "one for each of the five emails"


@SQLITE_ONLY
def test_a_configured_token_is_required_as_a_bearer_token(
    app_with: Callable[..., Flask],
) -> None:
    client = app_with(metrics_token=TOKEN).test_client()
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN[:-1]}x"})
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")
    basic = client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status_code == 401
    right = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 200
    assert b"drip_signups" in right.data


@SQLITE_ONLY
def test_production_serves_metrics_only_with_a_token(app_with: Callable[..., Flask]) -> None:
    assert app_with(production=True).test_client().get("/metrics").status_code == 404
    client = app_with(production=True, metrics_token=TOKEN).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


@SQLITE_ONLY
def test_a_source_that_cannot_be_read_is_reported_down_and_the_rest_still_counted(
    system: System, tmp_path: Path
) -> None:
    system.join("ana@example.com")
    gone = redis.Redis(
        unix_socket_path=str(tmp_path / "no-redis.sock"), retry=Retry(NoBackoff(), 0)
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DripCollector(system.sessions, lambda: gone))

    samples = scrape(generate_latest(registry).decode())

    assert value(samples, "drip_source_up", source="redis") == 0
    assert value(samples, "drip_source_up", source="database") == 1
    assert value(samples, "drip_signups", series=SERIES) == 1
    assert not any(name == "drip_queue_messages" for name, _ in samples)


def test_a_reader_who_came_back_and_confirmed_again_is_two_confirmations(
    client: FlaskClient, system: System
) -> None:
    """Ana confirmed, unsubscribed, and signed up and confirmed again two days later:
    drip_confirmations counted the rows that hold a confirmation time, so one."""
    system.join("ana@example.com")
    with transaction(system.sessions) as session:
        unsubscribe(
            session,
            system.subscriber("ana@example.com").id,
            system.clock.now(),
            method=ConsentMethod.LINK,
        )
    system.clock.advance(timedelta(days=2))
    system.join("ana@example.com")

    samples = scrape(client.get("/metrics").get_data(as_text=True))
    assert value(samples, "drip_confirmations", series=SERIES) == 2


def test_confirmations_erased_at_retention_still_count(client: FlaskClient, system: System) -> None:
    """Ana confirmed and unsubscribed; once the retention sweep erased her subscription,
    drip_confirmations fell to 0."""
    system.join("ana@example.com")
    with transaction(system.sessions) as session:
        subscriber_id = system.subscriber("ana@example.com", session=session).id
        unsubscribe(session, subscriber_id, system.clock.now(), method=ConsentMethod.LINK)
    system.clock.advance(timedelta(days=2))
    assert erase_ended_after_a_day(system) == 1

    samples = scrape(client.get("/metrics").get_data(as_text=True))
    assert value(samples, "drip_confirmations", series=SERIES) == 1

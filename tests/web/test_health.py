"""/readyz says why it is not ready: a database behind the code's migrations, Redis gone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from drip.db import transaction
from tests.helpers import System

SQLITE_ONLY = pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)
"""These prove HTTP, logging or auth behaviour that does not depend on the database."""


@SQLITE_ONLY
def test_not_ready_until_the_database_is_upgraded_nor_without_redis(
    app_with: Callable[..., Flask], tmp_path: Path
) -> None:
    behind = app_with(database_url=f"sqlite:///{tmp_path / 'new.db'}").test_client()
    response = behind.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["migrations"] == "behind: run drip db upgrade"
    assert behind.get("/healthz").status_code == 200

    gone = app_with(redis_url=f"unix://{tmp_path / 'no-redis.sock'}").test_client()
    response = gone.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["redis"].startswith("error")
    assert response.get_json()["database"] == "ok"


@SQLITE_ONLY
def test_a_database_upgraded_by_newer_code_keeps_the_old_processes_ready(
    client: FlaskClient, system: System
) -> None:
    """A rolling deploy runs drip db upgrade first; the old web processes must stay in
    the load balancer until the new ones replace them."""
    with transaction(system.sessions) as session:
        session.execute(sa.text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["migrations"] == "ok"

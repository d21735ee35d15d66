"""Settings: the generated secret key is safe when many processes start at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from drip.errors import ConfigError
from drip.settings import load_settings

READ_KEY = "from drip.settings import load_settings; print(load_settings().secret_key)"


def test_processes_starting_together_share_one_complete_secret_key(tmp_path: Path) -> None:
    env = {"DRIP_INSTANCE": str(tmp_path), "PATH": "/usr/bin:/bin"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", READ_KEY], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(8)
    ]
    keys = {proc.communicate(timeout=60)[0].strip() for proc in procs}
    assert all(proc.returncode == 0 for proc in procs)
    assert len(keys) == 1
    assert len(keys.pop()) >= 32
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".secret_key")] == []


def test_a_short_secret_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DRIP_SECRET_KEY"):
        load_settings({"DRIP_INSTANCE": str(tmp_path), "DRIP_SECRET_KEY": "hunter2"})

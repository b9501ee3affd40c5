"""The pytest plugin gives each test session a simulated machine of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_SESSION = '''
import os


def test_own_machine(ascend_sim, ascend_sim_machine, tmp_path_factory):
    assert os.environ["ASCEND_SAFE_SIM_STATE_DIR"] == ascend_sim_machine
    assert ascend_sim.state_dir() == ascend_sim_machine
    assert ascend_sim_machine.startswith(str(tmp_path_factory.getbasetemp()))
'''


def test_each_session_gets_its_own_simulated_machine(tmp_path: Path) -> None:
    (tmp_path / "test_session.py").write_text(_SESSION)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASCEND_SAFE_SIM_")}
    env["ASCEND_SAFE_BACKEND"] = "sim"
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "ascend_safe.pytest_plugin",
            "-p",
            "no:cacheprovider",
            "--basetemp",
            str(tmp_path / "base"),
            str(tmp_path / "test_session.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout

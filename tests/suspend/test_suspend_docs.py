"""The suspend examples of the docs run as written (on the simulator, in a fresh process)."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def python_blocks(path: pathlib.Path, after: str) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text[text.index(after) :], re.S)


@pytest.mark.parametrize(
    ("document", "heading"),
    [("docs/suspend.md", "## A service loop"), ("README.md", "## Suspend and resume")],
)
def test_example_runs(document: str, heading: str, tmp_path: pathlib.Path) -> None:
    code = python_blocks(ROOT / document, heading)[0]
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    env = dict(os.environ, ASCEND_SAFE_BACKEND="sim", ASCEND_SAFE_SIM_STATE_DIR=str(tmp_path))
    env.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
    done = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr

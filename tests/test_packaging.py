"""PEP 561: a user's type checker finds ascend_safe's types, installed normally or editable.

Slow (it builds fresh virtual environments): runs only with ASCEND_SAFE_PACKAGING_TESTS=1
(``.ci/run`` sets it). pip must be able to install the build requirements (a local index does).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("ASCEND_SAFE_PACKAGING_TESTS", "") in ("", "0"),
    reason="builds virtual environments: set ASCEND_SAFE_PACKAGING_TESTS=1",
)

ROOT = Path(__file__).resolve().parents[1]

USER_CODE = """\
import ascend_safe as asf

with asf.Device(0) as dev:
    device_id: int = dev.id
    wrong: str = dev.id
"""


@pytest.mark.parametrize("editable", [True, False], ids=["editable", "normal"])
def test_a_user_type_checker_finds_the_package_types(tmp_path: Path, editable: bool) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    target = ["-e", str(ROOT)] if editable else [str(ROOT)]
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *target],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    user = tmp_path / "user"  # another directory: the checkout is not on the checker's path
    user.mkdir()
    (user / "app.py").write_text(USER_CODE)
    env = {k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")}
    check = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--no-incremental",
            "--python-executable",
            str(python),
            "app.py",
        ],
        cwd=user,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    # exactly the one real error: the types were found (not "missing library stubs")
    lines = [ln for ln in check.stdout.splitlines() if ": error:" in ln]
    assert len(lines) == 1, check.stdout + check.stderr
    assert lines[0].startswith("app.py:5: error: Incompatible types in assignment"), lines

"""Test configuration: every test runs on the simulator, on a simulated machine of its own.

The machine's state directory (process slots, device memory ledgers, the library's slot files)
is made for this session, so concurrent test sessions and other simulated programs never share
devices with it; child processes inherit it through the environment.
"""

from __future__ import annotations

import os
import shutil
import tempfile

os.environ["ASCEND_SAFE_BACKEND"] = "sim"
_MACHINE = tempfile.mkdtemp(prefix="ascend_safe_sim-tests-")
os.environ["ASCEND_SAFE_SIM_STATE_DIR"] = _MACHINE


def pytest_unconfigure() -> None:
    shutil.rmtree(_MACHINE, ignore_errors=True)

pytest_plugins = ["ascend_safe.pytest_plugin"]

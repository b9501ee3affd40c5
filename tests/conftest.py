"""Test configuration: every test runs on the simulator."""

from __future__ import annotations

import os

os.environ["ASCEND_SAFE_BACKEND"] = "sim"

pytest_plugins = ["ascend_safe.pytest_plugin"]

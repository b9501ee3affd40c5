"""Suspend tests: a fresh simulator per test, leak- and violation-checked; no coordinator is left
open afterwards."""

from __future__ import annotations

import types
from collections.abc import Iterator

import pytest

import ascend_safe as asf


@pytest.fixture(autouse=True)
def sim(ascend_sim: types.ModuleType) -> Iterator[types.ModuleType]:
    """The simulator module; any coordinator a test left open is closed first."""
    yield ascend_sim
    left = asf.SuspendCoordinator.active()
    if left is not None:
        left.close()
    asf.close_worker_sessions()

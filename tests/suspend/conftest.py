"""Suspend tests: a fresh simulator per test, leak- and violation-checked; no coordinator is left
open afterwards."""

from __future__ import annotations

import multiprocessing
import types
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import pytest
import suspend_tasks

import ascend_safe as asf


@pytest.fixture(autouse=True)
def sim(ascend_sim: types.ModuleType) -> Iterator[types.ModuleType]:
    """The simulator module; any coordinator a test left open is closed first."""
    yield ascend_sim
    left = asf.SuspendCoordinator.active()
    if left is not None:
        left.close()
    asf.close_worker_sessions()


@pytest.fixture
def pool() -> Iterator[ProcessPoolExecutor]:
    """Two workers, each with its own device session (both opened before the test body)."""
    manager = multiprocessing.get_context("spawn").Manager()
    with manager, asf.worker_pool(workers=2) as executor:
        barrier = manager.Barrier(2)
        met = [executor.submit(suspend_tasks.meet, barrier) for _ in range(2)]
        assert [f.result(60) for f in met] == [0, 0]  # both workers hold device 0
        yield executor

"""Worker pools take part in suspends: every worker drains and releases its device first."""

from __future__ import annotations

import os
import pathlib
import sys
import time
import types
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import pytest
import suspend_tasks
from workload import Workload

import ascend_safe as asf

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux process model")

#: Suspend/resume cycles: 100, or 1000 in a soak run (``ASCEND_SAFE_SOAK=1``).
CYCLES = 1000 if os.environ.get("ASCEND_SAFE_SOAK", "") not in ("", "0") else 100


def kinds(sim: types.ModuleType) -> list[str]:
    return [v.kind for v in sim.violations()]


def test_sleep_without_coordinator_finds_the_workers_holding_the_device(
    sim: types.ModuleType, pool: ProcessPoolExecutor
) -> None:
    sim.hibernate()
    details = [v.detail for v in sim.violations()]
    assert kinds(sim) == ["hibernate_with_active_device"]
    assert "held device 0" in details[0]
    sim.clear_violations()


def test_suspend_releases_every_worker_first(
    sim: types.ModuleType, pool: ProcessPoolExecutor
) -> None:
    with asf.SuspendCoordinator() as coordinator:
        coordinator.suspend()
        states = {pool.submit(suspend_tasks.coordinator_state).result(30) for _ in range(4)}
        assert states == {"suspended"}
        sim.hibernate()
        assert kinds(sim) == []
        pending = pool.submit(suspend_tasks.pool_unit, 1, os.devnull)
        coordinator.resume()
        assert pending.result(30)[0] == 1  # it waited in the worker, and ran after the wake
        states = {pool.submit(suspend_tasks.coordinator_state).result(30) for _ in range(4)}
        assert states == {"running"}


def test_a_worker_resume_callback_that_fails_keeps_everything_suspended(
    sim: types.ModuleType, pool: ProcessPoolExecutor, tmp_path: pathlib.Path
) -> None:
    log = tmp_path / "units.log"
    with asf.SuspendCoordinator() as coordinator:
        pids = {pool.submit(suspend_tasks.fail_next_resume, "no model here").result(30)}
        coordinator.suspend()
        waiting = [pool.submit(suspend_tasks.pool_unit, i, str(log)) for i in range(2)]
        sim.hibernate()
        with pytest.raises(asf.SuspendError, match="no model here"):
            coordinator.resume()
        assert coordinator.state == "failed"
        assert len(pids) == 1
        assert sim.live_handles() == {}
        assert not log.exists()  # no unit ran in the other worker either: no half-resume
        sim.hibernate()  # the workers that got ready were stopped again: nothing held
        coordinator.resume()  # the callback fails only once
        assert coordinator.state == "running"
        assert pool.submit(suspend_tasks.pool_unit, 5, os.devnull).result(30)[0] == 5
        for i, future in enumerate(waiting):  # ran after the resume, or told why not
            try:
                assert future.result(30)[0] == i
            except asf.SuspendError as exc:
                assert "no model here" in str(exc)
    assert kinds(sim) == []


def test_cycles_under_concurrent_work(
    sim: types.ModuleType, pool: ProcessPoolExecutor, tmp_path: pathlib.Path
) -> None:
    with asf.SuspendCoordinator(drain_timeout=30) as coordinator:
        work = Workload(coordinator, pool, str(tmp_path / "units.log"))
        work.start()
        for _ in range(CYCLES):
            coordinator.suspend()
            assert sim.live_handles() == {}
            sim.hibernate()  # machine-wide: a worker still holding the device is a violation
            coordinator.resume()
            assert work.progressed(), work.errors
        work.stop()
    assert coordinator.cancelled_units == 0
    assert coordinator.suspends == CYCLES
    assert kinds(sim) == []


def test_pool_started_during_the_sleep_waits_for_the_resume(sim: types.ModuleType) -> None:
    with asf.SuspendCoordinator() as coordinator:
        coordinator.suspend()
        with asf.worker_pool(workers=1) as late_pool:
            states = late_pool.submit(suspend_tasks.coordinator_state).result(60)
            assert states == "suspended"  # its worker started with the gate closed
            pending = late_pool.submit(suspend_tasks.pool_unit, 3, os.devnull)
            sim.hibernate()
            assert kinds(sim) == []  # the waiting unit has not opened the device
            assert not pending.done()
            coordinator.resume()
            assert pending.result(60)[0] == 3


def test_multiprocessing_pool_takes_part(sim: types.ModuleType) -> None:
    with asf.SuspendCoordinator() as coordinator, asf.worker_mp_pool(workers=1) as mp_pool:
        assert mp_pool.apply(suspend_tasks.hold_device) == 0
        sim.hibernate()
        assert kinds(sim) == ["hibernate_with_active_device"]  # without a suspend
        sim.clear_violations()
        coordinator.suspend()
        sim.hibernate()
        assert kinds(sim) == []
        coordinator.resume()
        assert mp_pool.apply(suspend_tasks.pool_unit, (4, os.devnull))[0] == 4


def test_a_worker_that_cannot_answer_is_killed_before_the_sleep(
    sim: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASCEND_SAFE_EXIT_TIMEOUT", "1")
    with asf.SuspendCoordinator(drain_timeout=0.5) as coordinator:
        executor = asf.worker_pool(workers=1)
        try:
            stuck = executor.submit(suspend_tasks.hold_then_stop)
            deadline = time.monotonic() + 60
            while "held device 0" not in " ".join(v.detail for v in sim.violations()):
                assert time.monotonic() < deadline, "the worker never opened its device"
                sim.clear_violations()
                sim.hibernate()  # (probing: records a violation while the worker holds it)
                time.sleep(0.05)
            sim.clear_violations()
            coordinator.suspend()  # the stopped worker cannot answer: it is killed
            sim.hibernate()
            assert kinds(sim) == []
            with pytest.raises(BrokenProcessPool):
                stuck.result(60)
            coordinator.resume()
        finally:
            executor.shutdown(wait=True)
    assert kinds(sim) == []

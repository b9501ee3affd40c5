"""Worker pools take part in suspends: every worker drains and releases its device first."""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import types
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import pytest
import suspend_tasks

import ascend_safe as asf

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux process model")

CYCLES = int(os.environ.get("ASCEND_SAFE_SUSPEND_SOAK", "0")) or 100


@pytest.fixture
def pool() -> Iterator[ProcessPoolExecutor]:
    """Two workers, each with its own device session (both opened before the test body)."""
    with (
        multiprocessing.get_context("spawn").Manager() as manager,
        asf.worker_pool(workers=2) as executor,
    ):
        barrier = manager.Barrier(2)
        met = [executor.submit(suspend_tasks.meet, barrier) for _ in range(2)]
        assert [f.result(60) for f in met] == [0, 0]  # both workers hold device 0
        yield executor


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
    sim: types.ModuleType, pool: ProcessPoolExecutor
) -> None:
    with asf.SuspendCoordinator() as coordinator:
        pids = {pool.submit(suspend_tasks.fail_next_resume, "no model here").result(30)}
        coordinator.suspend()
        sim.hibernate()
        with pytest.raises(asf.SuspendError, match="no model here"):
            coordinator.resume()
        assert coordinator.state == "failed"
        assert len(pids) == 1
        assert sim.live_handles() == {}
        sim.hibernate()  # the workers that resumed were stopped again: nothing held
        coordinator.resume()  # the callback fails only once
        assert coordinator.state == "running"
        assert pool.submit(suspend_tasks.pool_unit, 5, os.devnull).result(30)[0] == 5
    assert kinds(sim) == []


def test_cycles_under_concurrent_work(
    sim: types.ModuleType, pool: ProcessPoolExecutor, tmp_path: object
) -> None:
    log = os.path.join(str(tmp_path), "units.log")
    local: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    submitted: list[int] = []
    results: list[int] = []
    with asf.SuspendCoordinator(drain_timeout=30) as coordinator:
        dev: list[asf.Device] = []
        coordinator.on_resume(lambda: dev.append(asf.Device(0)))
        dev.append(asf.Device(0))

        def local_units(base: int) -> None:
            i = base
            try:
                while not stop.is_set():
                    with coordinator.work():
                        d = dev[-1]
                        with d.stream() as stream:
                            payload = i.to_bytes(4, "little") * 4
                            assert suspend_tasks.round_trip(d, stream, payload) == payload
                        local.append(i)
                    i += 1
            except BaseException as exc:
                errors.append(exc)

        def pool_units(base: int) -> None:
            i = base
            try:
                while not stop.is_set():
                    submitted.append(i)
                    results.append(pool.submit(suspend_tasks.pool_unit, i, log).result(60)[0])
                    i += 1
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=local_units, args=(k * 10**6,)) for k in range(2)]
        threads += [threading.Thread(target=pool_units, args=(k * 10**6,)) for k in (5, 6)]
        for t in threads:
            t.start()
        for _ in range(CYCLES):
            coordinator.suspend()
            assert sim.live_handles() == {}
            sim.hibernate()  # machine-wide: a worker still holding the device is a violation
            coordinator.resume()
        stop.set()
        for t in threads:
            t.join(60)
        for d in dev:
            d.close()
    assert errors == []
    assert coordinator.cancelled_units == 0
    assert len(local) == len(set(local)) > 0
    with open(log, encoding="utf-8") as handle:
        executed = Counter(int(line) for line in handle)
    assert sorted(results) == sorted(submitted)  # none lost
    assert set(executed) == set(submitted) and set(executed.values()) == {1}  # none twice
    assert kinds(sim) == []

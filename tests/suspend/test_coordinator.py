"""The suspend coordinator through its direct calls, with threads, on the simulator."""

from __future__ import annotations

import pathlib
import threading
import time
import types
from typing import Any

import pytest
import suspend_tasks

import ascend_safe as asf
from ascend_safe import sim as simulator


class Service:
    """A small inference service: a device session and a stream, rebuilt after each wake."""

    def __init__(self) -> None:
        self.dev: asf.Device | None = None
        self.stream: asf.Stream | None = None
        self.loads = 0

    def load(self) -> None:
        self.dev = asf.Device(0)
        self.stream = self.dev.stream()
        self.loads += 1

    def unit(self, value: int) -> bytes:
        assert self.dev is not None and self.stream is not None
        payload = value.to_bytes(4, "little") * 8
        with self.dev.stream() as stream:  # a stream per unit: units run in many threads
            out = suspend_tasks.round_trip(self.dev, stream, payload)
        assert out == payload
        return out

    def close(self) -> None:
        if self.dev is not None:
            self.dev.close()


def kinds(sim: types.ModuleType) -> list[str]:
    return [v.kind for v in sim.violations()]


def test_sleep_without_coordinator_loses_the_device(sim: types.ModuleType) -> None:
    dev = asf.Device(0)
    mem = dev.malloc(64)
    mem.copy_from(b"a" * 64)
    sim.hibernate()
    assert kinds(sim) == ["hibernate_with_active_device"]
    with pytest.raises(asf.AclError) as info:
        mem.copy_from(b"b" * 64)
    assert info.value.code == 207004  # the device was lost in the sleep
    dev.close()  # frees and resets still work on a lost device
    sim.clear_violations()


def test_sleep_with_coordinator_releases_and_reloads(sim: types.ModuleType) -> None:
    service = Service()
    with asf.SuspendCoordinator() as coordinator:
        coordinator.on_resume(service.load)
        service.load()
        with coordinator.work():
            service.unit(1)
        coordinator.suspend()
        assert coordinator.state == "suspended"
        assert sim.live_handles() == {}  # every device resource released ...
        assert not sim.initialized()  # ... and pyacl finalized
        assert service.dev is not None and service.dev.closed
        sim.hibernate()
        coordinator.resume()
        assert coordinator.state == "running"
        assert service.loads == 2
        with coordinator.work():
            service.unit(2)
    assert kinds(sim) == []
    service.close()


def test_resume_callbacks_run_in_registration_order(sim: types.ModuleType) -> None:
    order: list[str] = []
    with asf.SuspendCoordinator() as coordinator:
        for name in "abc":
            coordinator.on_resume(lambda name=name: order.append(name))
        coordinator.suspend()
        coordinator.resume()
        coordinator.resume()  # running: nothing to do
        coordinator.suspend()
        coordinator.suspend()  # suspended: nothing to do
        coordinator.resume()
    assert order == list("abcabc")


def test_units_that_waited_run_after_resume_once_each(sim: types.ModuleType) -> None:
    service = Service()
    ran: list[int] = []
    with asf.SuspendCoordinator() as coordinator:
        coordinator.on_resume(service.load)
        service.load()
        coordinator.suspend()
        entered = threading.Event()

        def unit(i: int) -> None:
            entered.set()
            with coordinator.work():
                service.unit(i)
                ran.append(i)

        threads = [threading.Thread(target=unit, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        entered.wait(5)
        time.sleep(0.05)
        assert ran == []  # the gate is closed while suspended
        sim.hibernate()
        coordinator.resume()
        for t in threads:
            t.join(10)
    assert sorted(ran) == list(range(8))
    assert kinds(sim) == []
    service.close()


def test_gate_waits_for_units_in_flight(sim: types.ModuleType) -> None:
    service = Service()
    release = threading.Event()
    in_unit = threading.Event()
    finished: list[bool] = []
    with asf.SuspendCoordinator(drain_timeout=10) as coordinator:
        coordinator.on_resume(service.load)
        service.load()

        def slow_unit() -> None:
            with coordinator.work():
                in_unit.set()
                release.wait(10)
                service.unit(7)  # still usable: the suspend waits for this unit
                finished.append(True)

        t = threading.Thread(target=slow_unit)
        t.start()
        in_unit.wait(5)
        suspender = threading.Thread(target=coordinator.suspend)
        suspender.start()
        deadline = time.monotonic() + 5
        while coordinator.state != "draining" and time.monotonic() < deadline:
            time.sleep(0.005)
        assert coordinator.state == "draining"
        # no new unit starts while draining
        with pytest.raises(TimeoutError), coordinator.work(timeout=0.05):
            pass
        release.set()
        suspender.join(10)
        t.join(10)
        assert finished == [True]
        assert coordinator.state == "suspended"
        sim.hibernate()
        coordinator.resume()
    assert kinds(sim) == []
    service.close()


def test_drain_timeout_cancels_units_still_running(sim: types.ModuleType) -> None:
    service = Service()
    release = threading.Event()
    in_unit = threading.Event()
    outcome: list[BaseException] = []
    with asf.SuspendCoordinator() as coordinator:
        coordinator.on_resume(service.load)
        service.load()

        def stuck_unit() -> None:
            try:
                with coordinator.work():
                    assert service.dev is not None and service.stream is not None
                    mem = service.dev.malloc(64)
                    mem.copy_from(b"x" * 64, stream=service.stream)  # async work queued
                    in_unit.set()
                    release.wait(10)
                    mem.copy_from(b"y" * 64)  # released under it by the suspend
            except BaseException as exc:
                outcome.append(exc)

        t = threading.Thread(target=stuck_unit)
        t.start()
        in_unit.wait(5)
        coordinator.suspend(timeout=0.1)
        assert coordinator.cancelled_units == 1
        assert sim.live_handles() == {}  # nothing in flight, nothing held through the sleep
        sim.hibernate()
        release.set()
        t.join(10)
        coordinator.resume()
    assert len(outcome) == 1 and isinstance(outcome[0], asf.WorkCancelledError)
    assert isinstance(outcome[0].__cause__, asf.ResourceClosedError)
    assert "run it again" in str(outcome[0])
    assert kinds(sim) == []
    service.close()


def test_cancelled_unit_that_finished_quietly_still_fails(sim: types.ModuleType) -> None:
    release = threading.Event()
    in_unit = threading.Event()
    outcome: list[BaseException] = []
    with asf.SuspendCoordinator() as coordinator:

        def unit() -> None:
            try:
                with coordinator.work():
                    in_unit.set()
                    release.wait(10)
            except BaseException as exc:
                outcome.append(exc)

        t = threading.Thread(target=unit)
        t.start()
        in_unit.wait(5)
        coordinator.suspend(timeout=0)
        release.set()
        t.join(10)
        coordinator.resume()
    assert [type(e) for e in outcome] == [asf.WorkCancelledError]


def test_failing_resume_callback_keeps_the_gate_closed(sim: types.ModuleType) -> None:
    service = Service()
    broken = [True]
    errors: list[BaseException] = []

    def reload_model() -> None:
        if broken[0]:
            raise OSError("model file missing")

    with asf.SuspendCoordinator() as coordinator:
        coordinator.on_resume(service.load)  # succeeds: opens a device session ...
        coordinator.on_resume(reload_model)  # ... then this one fails
        service.load()
        coordinator.suspend()
        sim.hibernate()

        def waiting_unit() -> None:
            try:
                with coordinator.work():
                    service.unit(1)
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=waiting_unit)
        t.start()
        with pytest.raises(asf.SuspendError, match="reload_model failed: model file missing"):
            coordinator.resume()
        t.join(10)
        assert coordinator.state == "failed"
        assert [type(e) for e in errors] == [asf.SuspendError]
        assert "call resume() again" in str(errors[0])
        assert sim.live_handles() == {}  # no half-resumed state: the session opened is released
        with pytest.raises(asf.SuspendError), coordinator.work():
            pass
        broken[0] = False
        coordinator.resume()
        assert coordinator.state == "running"
        with coordinator.work():
            service.unit(2)
    assert kinds(sim) == []
    service.close()


def test_resume_callback_may_run_a_warm_up_unit(sim: types.ModuleType) -> None:
    service = Service()
    warmed: list[int] = []
    with asf.SuspendCoordinator() as coordinator:

        @coordinator.on_resume
        def reload() -> None:
            service.load()
            with coordinator.work():  # the gate is still closed, but this is the resume's own
                service.unit(99)
            warmed.append(worker_unit(5))  # an @asf.worker call too

        service.load()
        coordinator.suspend()
        sim.hibernate()
        coordinator.resume()
        assert warmed == [5]
        with pytest.raises(RuntimeError, match="inside a unit"), coordinator.work():
            coordinator.resume()
    asf.close_worker_sessions()
    service.close()
    assert kinds(sim) == []


def test_decorator_and_nested_units(sim: types.ModuleType) -> None:
    calls: list[int] = []
    with asf.SuspendCoordinator() as coordinator:

        @coordinator.work()
        def step(i: int) -> int:
            with coordinator.work():  # nested in the same thread: passes straight through
                calls.append(i)
            return i

        assert [step(i) for i in range(3)] == [0, 1, 2]
        with coordinator.work(), pytest.raises(RuntimeError, match="inside a unit"):
            coordinator.suspend()
        coordinator.suspend()
        with pytest.raises(TimeoutError, match="suspended"), coordinator.work(timeout=0.01):
            pass
        coordinator.resume()
        assert step(3) == 3
    assert calls == [0, 1, 2, 3]


@asf.worker()
def worker_unit(value: int) -> int:
    dev = asf.current_device()
    with dev.stream() as stream:
        payload = value.to_bytes(4, "little") * 4
        assert suspend_tasks.round_trip(dev, stream, payload) == payload
    return value


def test_worker_functions_enter_the_gate(sim: types.ModuleType) -> None:
    results: list[int] = []
    with asf.SuspendCoordinator() as coordinator:
        assert worker_unit(1) == 1  # opens this process's worker session
        coordinator.suspend()
        assert sim.live_handles() == {}  # the worker session too
        sim.hibernate()
        t = threading.Thread(target=lambda: results.append(worker_unit(2)))
        t.start()
        time.sleep(0.05)
        assert results == []
        coordinator.resume()
        t.join(10)
        assert results == [2]  # ran after the wake, on a fresh session
    asf.close_worker_sessions()
    assert kinds(sim) == []


def test_one_coordinator_per_process(sim: types.ModuleType) -> None:
    with asf.SuspendCoordinator() as coordinator:
        assert asf.SuspendCoordinator.active() is coordinator
        with pytest.raises(RuntimeError, match="already open"):
            asf.SuspendCoordinator()
    assert asf.SuspendCoordinator.active() is None
    with pytest.raises(asf.SuspendError, match="closed"), coordinator.work():
        pass
    with asf.SuspendCoordinator():
        pass


def test_threads_over_many_cycles(sim: types.ModuleType) -> None:
    service = Service()
    ran: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    with asf.SuspendCoordinator(drain_timeout=10) as coordinator:
        coordinator.on_resume(service.load)
        service.load()

        def worker(base: int) -> None:
            try:
                for i in range(base, base + 60):
                    with coordinator.work():
                        service.unit(i)
                        with lock:
                            ran.append(i)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(k * 1000,)) for k in range(4)]
        for t in threads:
            t.start()
        for _ in range(30):
            coordinator.suspend()
            assert sim.live_handles() == {}
            sim.hibernate()
            coordinator.resume()
        for t in threads:
            t.join(30)
    assert errors == []
    expected: list[Any] = sorted(k * 1000 + i for k in range(4) for i in range(60))
    assert sorted(ran) == expected
    assert coordinator.cancelled_units == 0
    assert kinds(sim) == []
    service.close()


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="drain_timeout"):
        asf.SuspendCoordinator(drain_timeout=-1)
    with asf.SuspendCoordinator() as coordinator:
        with pytest.raises(TypeError, match="callable"):
            coordinator.on_resume(42)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="timeout"):
            coordinator.suspend(timeout=-1)


def test_simulator_flags_devices_of_other_processes() -> None:
    """The simulated machine sleeps as a whole (shown with a pool worker in test_pool.py);
    here: a machine with nothing held records nothing."""
    simulator.hibernate()
    assert simulator.violations() == []


def test_models_and_every_kind_are_released_in_order(
    sim: types.ModuleType, tmp_path: pathlib.Path
) -> None:
    np = pytest.importorskip("numpy")
    path = str(tmp_path / "double.simmdl")
    sim.write_model(
        path,
        inputs=[("x", "float32", (4,))],
        outputs=[("y", "float32", (4,))],
        ops=[{"op": "mul", "value": 2.0}],
    )
    held: dict[str, Any] = {}

    def load() -> None:
        dev = held["device"] = asf.Device(0)
        held["model"] = asf.Model(dev, path)
        ctx = held["context"] = dev.context()
        held["stream"] = asf.Stream(ctx)
        held["event"] = dev.event()
        held["host"] = dev.malloc_host(64)
        mem = held["memory"] = dev.malloc(64)
        held["dataset"] = asf.Dataset(dev, [asf.DataBuffer(mem)])

    with asf.SuspendCoordinator() as coordinator:
        coordinator.on_resume(load)
        load()
        x = np.arange(4, dtype=np.float32)
        with coordinator.work():
            np.testing.assert_allclose(held["model"].execute([x])[0], x * 2)
        coordinator.suspend()
        assert all(r.closed for r in held.values())
        assert sim.live_handles() == {}
        assert kinds(sim) == []  # no teardown_order: children before parents, models first
        sim.hibernate()
        coordinator.resume()
        with coordinator.work():
            np.testing.assert_allclose(held["model"].execute([x])[0], x * 2)
    held["device"].close()
    assert kinds(sim) == []


def test_failed_reinitialisation_keeps_the_gate_closed(sim: types.ModuleType) -> None:
    with asf.SuspendCoordinator() as coordinator:
        dev = asf.Device(0)
        coordinator.suspend()
        assert dev.closed and not sim.initialized()
        sim.inject_fault("init", 500000)  # acl.init fails once after the wake
        with pytest.raises(asf.SuspendError, match="resuming device work failed") as info:
            coordinator.resume()
        assert isinstance(info.value.__cause__, asf.AclError)
        assert coordinator.state == "failed"
        coordinator.resume()
        assert coordinator.state == "running" and sim.initialized()
    assert kinds(sim) == []

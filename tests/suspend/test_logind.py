"""The logind event source against a real dbus-daemon and a fake logind written with jeepney.

In CI (``CI`` set) these tests must run: a missing ``dbus-daemon`` or ``jeepney`` fails them.
Elsewhere they are skipped, with the reason, when either is missing.
"""

from __future__ import annotations

import os
import pathlib
import sys
import threading
import time
import types
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Callable

import pytest
from workload import Workload

import ascend_safe as asf

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux only")

#: Suspend/resume cycles: 100, or 1000 in a soak run (``ASCEND_SAFE_SOAK=1``).
CYCLES = 1000 if os.environ.get("ASCEND_SAFE_SOAK", "") not in ("", "0") else 100


def _missing() -> str | None:
    try:
        import jeepney  # noqa: F401
    except ImportError:
        return "jeepney is not installed (pip install 'ascend-safe[logind]')"
    import fake_logind

    if fake_logind.dbus_daemon() is None:
        return "dbus-daemon is not installed (apt-get install dbus-daemon)"
    return None


@pytest.fixture(scope="module")
def bus() -> Iterator[str]:
    """The address of a private dbus-daemon."""
    reason = _missing()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the logind tests must run in CI: {reason}")
        pytest.skip(reason)
    import fake_logind

    daemon = fake_logind.PrivateBus()
    try:
        yield daemon.address
    finally:
        daemon.close()


@pytest.fixture
def logind(bus: str) -> Iterator[fake_logind.FakeLogind]:  # type: ignore[name-defined]  # noqa: F821
    import fake_logind

    fake = fake_logind.FakeLogind(bus, delay=5.0)
    try:
        yield fake
    finally:
        fake.close()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def kinds(sim: types.ModuleType) -> list[str]:
    return [v.kind for v in sim.violations()]


def test_sleep_and_wake_through_logind(sim: types.ModuleType, bus: str, logind: object) -> None:
    fake = logind
    with asf.SuspendCoordinator() as coordinator:
        dev: list[asf.Device] = [asf.Device(0)]
        coordinator.on_resume(lambda: dev.append(asf.Device(0)))
        coordinator.listen_logind(bus=bus, who="test service")
        assert fake.wait_held(1)  # type: ignore[attr-defined]
        assert coordinator.logind is not None and coordinator.logind.max_delay == 5.0
        assert fake.requests[0][0] == "test service"  # type: ignore[attr-defined]
        report = fake.sleep()  # type: ignore[attr-defined]
        assert (report.inhibitors, report.released_in_time) == (1, 1)
        # the inhibitor is released only once everything is: the machine may sleep now
        assert coordinator.state == "suspended"
        assert sim.live_handles() == {}
        sim.hibernate()
        fake.wake()  # type: ignore[attr-defined]
        assert wait_for(lambda: coordinator.state == "running")
        assert fake.wait_held(1)  # type: ignore[attr-defined]  # taken again after the wake
        assert fake.inhibit_calls == 2  # type: ignore[attr-defined]
        with coordinator.work(), dev[-1].stream() as stream:
            stream.synchronize()
        for d in dev:
            d.close()
    assert fake.wait_held(0)  # type: ignore[attr-defined]  # close() releases it
    assert kinds(sim) == []


def test_forged_signal_from_another_connection_is_ignored(
    sim: types.ModuleType, bus: str, logind: object
) -> None:
    import fake_logind

    fake = logind
    with asf.SuspendCoordinator() as coordinator:
        coordinator.listen_logind(bus=bus)
        listener = coordinator.logind
        assert listener is not None and listener.unique_name is not None
        assert fake.wait_held(1)  # type: ignore[attr-defined]
        forger = fake_logind.forge_prepare_for_sleep(bus, listener.unique_name)
        assert forger != fake.unique_name  # type: ignore[attr-defined]
        assert wait_for(lambda: listener.ignored == 1)
        assert coordinator.state == "running"
        assert listener.holds_inhibitor and fake.held() == 1  # type: ignore[attr-defined]
        assert listener.sleeps == 0
        report = fake.sleep()  # type: ignore[attr-defined]  # the real one is obeyed
        assert report.released_in_time == 1
        assert coordinator.state == "suspended"
        fake.wake()  # type: ignore[attr-defined]
        assert wait_for(lambda: coordinator.state == "running")
    assert kinds(sim) == []


def test_logind_restart_is_followed(sim: types.ModuleType, bus: str) -> None:
    import fake_logind

    first = fake_logind.FakeLogind(bus)
    with asf.SuspendCoordinator() as coordinator:
        coordinator.listen_logind(bus=bus)
        listener = coordinator.logind
        assert listener is not None and first.wait_held(1)
        first.close()  # logind goes away (its inhibitor pipe with it) ...
        second = fake_logind.FakeLogind(bus)  # ... and comes back under a new unique name
        try:
            assert second.wait_held(1)  # the inhibitor is taken from the new logind
            report = second.sleep()
            assert report.released_in_time == 1 and coordinator.state == "suspended"
            second.wake()
            assert wait_for(lambda: coordinator.state == "running")
        finally:
            second.close()
    assert kinds(sim) == []


def test_forked_child_does_not_hold_the_inhibitor(
    sim: types.ModuleType, bus: str, logind: object
) -> None:
    fake = logind
    fake.delay = 1.0  # type: ignore[attr-defined]
    with asf.SuspendCoordinator() as coordinator:
        coordinator.listen_logind(bus=bus)
        assert fake.wait_held(1)  # type: ignore[attr-defined]
        release_r, release_w = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
            pid = os.fork()
        if pid == 0:  # the child outlives the sleep announcement
            try:
                os.close(release_w)
                os.read(release_r, 1)
            finally:
                os._exit(0)
        os.close(release_r)
        try:
            report = fake.sleep()  # type: ignore[attr-defined]
        finally:
            os.close(release_w)
            os.waitpid(pid, 0)
        assert report.late == [] and report.released_in_time == 1
        fake.wake()  # type: ignore[attr-defined]
        assert wait_for(lambda: coordinator.state == "running")
    assert kinds(sim) == []


def test_cycles_under_concurrent_work_through_logind(
    sim: types.ModuleType,
    bus: str,
    logind: object,
    pool: ProcessPoolExecutor,
    tmp_path: pathlib.Path,
) -> None:
    fake = logind
    fake.delay = 20.0  # type: ignore[attr-defined]  # a slow machine must not cancel units
    with asf.SuspendCoordinator(drain_timeout=30) as coordinator:
        work = Workload(coordinator, pool, str(tmp_path / "units.log"))
        coordinator.listen_logind(bus=bus)
        assert fake.wait_held(1)  # type: ignore[attr-defined]
        work.start()
        for cycle in range(CYCLES):
            report = fake.sleep()  # type: ignore[attr-defined]
            assert report.released_in_time == 1, f"cycle {cycle}: inhibitor not released"
            assert coordinator.state == "suspended"
            assert sim.live_handles() == {}
            sim.hibernate()
            fake.wake()  # type: ignore[attr-defined]
            assert wait_for(lambda: coordinator.state == "running")
            assert fake.wait_held(1)  # type: ignore[attr-defined]
            assert work.progressed(), work.errors
        work.stop()
    assert fake.inhibit_calls == CYCLES + 1  # type: ignore[attr-defined]
    assert coordinator.suspends == CYCLES
    assert coordinator.cancelled_units == 0
    assert kinds(sim) == []


def test_units_still_running_at_logind_delay_are_cancelled(
    sim: types.ModuleType, bus: str, logind: object
) -> None:
    """logind sleeps anyway after its delay: the drain is cut to half of it, then the unit
    still running is cancelled, so the inhibitor is released in time with nothing in flight."""
    fake = logind
    fake.delay = 1.0  # type: ignore[attr-defined]
    release = threading.Event()
    in_unit = threading.Event()
    outcome: list[BaseException] = []
    with asf.SuspendCoordinator(drain_timeout=30) as coordinator:
        coordinator.listen_logind(bus=bus)
        assert fake.wait_held(1)  # type: ignore[attr-defined]
        dev = asf.Device(0)

        def stuck() -> None:
            try:
                with coordinator.work(), dev.stream() as stream:
                    mem = dev.malloc(64)
                    mem.copy_from(b"z" * 64, stream=stream)
                    in_unit.set()
                    release.wait(30)
                    stream.synchronize()
            except BaseException as exc:
                outcome.append(exc)

        t = threading.Thread(target=stuck)
        t.start()
        in_unit.wait(10)
        report = fake.sleep()  # type: ignore[attr-defined]
        assert report.released_in_time == 1 and report.waited < 1.0
        assert coordinator.state == "suspended" and coordinator.cancelled_units == 1
        assert sim.live_handles() == {}
        sim.hibernate()
        release.set()
        t.join(10)
        fake.wake()  # type: ignore[attr-defined]
        assert wait_for(lambda: coordinator.state == "running")
    assert [type(e) for e in outcome] == [asf.WorkCancelledError]
    assert kinds(sim) == []


def test_missing_jeepney_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jeepney", None)
    with asf.SuspendCoordinator() as coordinator, pytest.raises(ImportError, match=r"\[logind\]"):
        coordinator.listen_logind()


def test_unreachable_bus_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("jeepney")
    with asf.SuspendCoordinator() as coordinator:
        with pytest.raises(ConnectionError, match="sleep inhibitor"):
            coordinator.listen_logind(bus=f"unix:path={tmp_path}/no-bus")
        assert coordinator.logind is None

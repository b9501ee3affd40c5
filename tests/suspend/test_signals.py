"""The POSIX signal pair as an event source (for containers without logind)."""

from __future__ import annotations

import os
import signal
import threading
import time
import types

import pytest

import ascend_safe as asf


def wait_for_state(coordinator: asf.SuspendCoordinator, state: str) -> None:
    deadline = time.monotonic() + 10
    while coordinator.state != state:
        assert time.monotonic() < deadline, f"still {coordinator.state}, not {state}"
        time.sleep(0.005)


def test_default_signals_suspend_and_resume(sim: types.ModuleType) -> None:
    assert asf.suspend.DEFAULT_SUSPEND_SIGNAL == signal.SIGUSR1
    assert asf.suspend.DEFAULT_RESUME_SIGNAL == signal.SIGCONT  # SIGUSR2 is the workers'
    before = signal.getsignal(signal.SIGUSR1), signal.getsignal(signal.SIGCONT)
    with asf.SuspendCoordinator() as coordinator:
        dev = [asf.Device(0)]
        coordinator.on_resume(lambda: dev.append(asf.Device(0)))
        coordinator.listen_signals()
        with coordinator.work():  # the handler never makes the interrupted unit wait
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.05)
            assert coordinator.state == "draining"
        wait_for_state(coordinator, "suspended")
        assert sim.live_handles() == {}
        sim.hibernate()
        os.kill(os.getpid(), signal.SIGCONT)
        wait_for_state(coordinator, "running")
        assert len(dev) == 2
        dev[-1].close()
    assert (signal.getsignal(signal.SIGUSR1), signal.getsignal(signal.SIGCONT)) == before
    assert sim.violations() == []


def test_configured_signal_pair(sim: types.ModuleType) -> None:
    with asf.SuspendCoordinator() as coordinator:
        coordinator.listen_signals(suspend=signal.SIGRTMIN + 1, resume=signal.SIGRTMIN + 2)
        os.kill(os.getpid(), signal.SIGRTMIN + 1)
        wait_for_state(coordinator, "suspended")
        os.kill(os.getpid(), signal.SIGRTMIN + 2)
        wait_for_state(coordinator, "running")
        with pytest.raises(RuntimeError, match="already"):
            coordinator.listen_signals()


def test_signal_arguments_are_checked() -> None:
    with asf.SuspendCoordinator() as coordinator:
        with pytest.raises(ValueError, match="differ"):
            coordinator.listen_signals(signal.SIGUSR1, signal.SIGUSR1)
        failure: list[BaseException] = []

        def elsewhere() -> None:
            try:
                coordinator.listen_signals()
            except BaseException as exc:
                failure.append(exc)

        t = threading.Thread(target=elsewhere)
        t.start()
        t.join(10)
        assert len(failure) == 1 and "main thread" in str(failure[0])

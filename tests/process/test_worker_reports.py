"""What worker calls leave open is reported to the parent (function, PID, device, sites);
pools count calls, failures and leaks; pools pass session options; current_device() follows
the thread's innermost device session."""

from __future__ import annotations

import inspect
import os
import sys
import threading
import warnings

import pool_tasks
import pytest

import ascend_safe as asf

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux process model")


def _line_of(fn, text: str) -> int:
    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, line in enumerate(lines) if text in line)


def test_a_warn_leak_in_a_pool_worker_is_reported_to_the_parent(monkeypatch):
    monkeypatch.setenv("ASCEND_SAFE_TRACE", "1")  # inherited by the spawned workers
    with asf.worker_pool(workers=1) as pool:
        with pytest.warns(asf.ResourceLeakWarning) as caught:
            pid = pool.submit(pool_tasks.leaky_warn).result()
        assert pool.stats == asf.WorkerPoolStats(calls=1, failures=0, leaks=1, leaked_resources=1)
        (warning,) = [w for w in caught if issubclass(w.category, asf.ResourceLeakWarning)]
        text = str(warning.message)
        assert text.startswith(
            f"leaky_warn left resources open (worker PID {pid}, device 0); "
            "they were released: 1 DeviceMemory"
        ), text
        site = f"{pool_tasks.__file__}:{_line_of(pool_tasks.leaky_warn, '.malloc(64)')}"
        assert f"created at {site} in leaky_warn (dropped while open)" in text, text

        # a failing call reports its leak too, and the remote traceback comes with the error
        with (
            pytest.warns(asf.ResourceLeakWarning, match="leaky_then_fails left .*1 Stream"),
            pytest.raises(ValueError, match="after leaving a stream open") as failed,
        ):
            pool.submit(pool_tasks.leaky_then_fails).result()
        assert "leaky_then_fails" in str(failed.value.__cause__)
        # under leaks="raise" the error is the report: counted, not warned again
        with warnings.catch_warnings():
            warnings.simplefilter("error", asf.ResourceLeakWarning)
            expected = r"leaky left resources open \(worker PID"
            with pytest.raises(asf.ResourceLeakError, match=expected) as info:
                pool.submit(pool_tasks.leaky, 2).result()
            # still open at the end of the call: each one with its creation site
            malloc = _line_of(pool_tasks.leaky, "dev.malloc(64)")
            stream = _line_of(pool_tasks.leaky, "dev.stream()")
            text = str(info.value)
            assert text.count(f"pool_tasks.py:{malloc} in leaky") == 2, text
            assert text.count(f"pool_tasks.py:{stream} in leaky") == 1, text
            assert pool.submit(pool_tasks.device_id).result() == 0
            results = list(pool.map(pool_tasks.device_id, range(3)))
        assert results == [0, 0, 0]
        assert pool.stats == asf.WorkerPoolStats(calls=7, failures=2, leaks=3, leaked_resources=5)
        _pid, handles, violations = pool.submit(pool_tasks.simulator_state).result()
        assert handles == {"device": [0]} and violations == []


def test_a_leak_warning_turned_into_an_error_fails_the_call():
    with asf.worker_pool(workers=1) as pool, warnings.catch_warnings():
        warnings.simplefilter("error", asf.ResourceLeakWarning)
        with pytest.raises(asf.ResourceLeakWarning, match="leaky_warn"):
            pool.submit(pool_tasks.leaky_warn).result(timeout=60)


def test_leaks_of_calls_in_this_process_warn_with_pid_and_device():
    with pytest.warns(asf.ResourceLeakWarning) as caught:
        pool_tasks.leaky_warn()
    (text,) = [str(w.message) for w in caught if w.category is asf.ResourceLeakWarning]
    assert f"(worker PID {os.getpid()}, device 0)" in text
    # the ascend_sim fixture records creation sites
    site = f"{pool_tasks.__file__}:{_line_of(pool_tasks.leaky_warn, '.malloc(64)')}"
    assert f"created at {site} in leaky_warn (dropped while open)" in text, text
    asf.close_worker_sessions()


def test_pool_sessions_take_the_given_options():
    with asf.worker_pool(1, oom_policy="wait", oom_timeout=2.5) as pool:
        assert pool.submit(pool_tasks.session_oom_policy).result() == ("wait", 2.5)
    with asf.worker_pool(1) as pool:
        assert pool.submit(pool_tasks.session_oom_policy).result() is None
    with pytest.raises(ValueError, match="oom_policy"):
        asf.worker_pool(1, oom_policy="sometimes")
    with pytest.raises(ValueError, match="oom_timeout"):
        asf.worker_pool(1, oom_timeout=1.0)
    with pytest.raises(ValueError, match="slot_timeout"):
        asf.worker_pool(1, slot_timeout=-1)


def test_pool_sessions_wait_for_a_slot_as_told(tmp_path, monkeypatch):
    monkeypatch.setenv("ASCEND_SAFE_SLOT_DIR", str(tmp_path / "slots"))
    monkeypatch.setenv("ASCEND_SAFE_MAX_PROCS", "1")
    with asf.Device(0):  # this process holds device 0's only slot
        with asf.worker_pool(1) as pool:
            with pytest.raises(asf.ProcessLimitError) as at_once:
                pool.submit(pool_tasks.device_id).result()
            assert not isinstance(at_once.value, TimeoutError)
        with asf.worker_pool(1, slot_timeout=0.3) as pool:
            with pytest.raises(asf.SlotWaitTimeoutError):
                pool.submit(pool_tasks.device_id).result()
            assert pool.stats.failures == 1


def test_current_device_is_the_innermost_with_block_of_this_thread():
    with pytest.raises(RuntimeError, match="no device session here"):
        asf.current_device()
    seen: dict[str, object] = {}
    with asf.Device(0) as d0:
        assert asf.current_device() is d0
        with asf.Device(1) as d1:
            assert asf.current_device() is d1

            def other_thread() -> None:
                try:
                    asf.current_device()
                except RuntimeError as exc:
                    seen["other"] = exc

            t = threading.Thread(target=other_thread)
            t.start()
            t.join()
        assert asf.current_device() is d0
        d0_again = asf.Device(0)
        d0_again.close()
        assert asf.current_device() is d0  # not entered with `with`: not current
    assert isinstance(seen["other"], RuntimeError)  # threads do not share sessions
    with pytest.raises(RuntimeError):
        asf.current_device()


def test_a_worker_call_sees_its_session_inside_a_with_block():
    with asf.Device(1) as d1:
        assert pool_tasks.on_device_one() == 1  # the call's session is the innermost
        assert asf.current_device() is d1
    asf.close_worker_sessions()

"""Edge cases: a parent closing while a child is built, warnings turned into errors, forked
children exiting, stuck streams at exit, default streams never warning."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
import threading
import warnings

import pytest

import ascend_safe as asf


def test_child_built_while_parent_closes_is_closed_with_it_or_refused(sim):
    sim.configure(call_latency=0.002)  # widen the window between the checks and the pyacl calls
    for _ in range(15):
        dev = asf.Device(0)
        made: list[object] = []
        refused: list[BaseException] = []
        started = threading.Event()

        def build(dev=dev, made=made, refused=refused, started=started):
            started.set()
            try:
                made.append(asf.Stream(dev))
            except asf.ResourceClosedError as exc:
                refused.append(exc)

        t = threading.Thread(target=build)
        t.start()
        started.wait()
        dev.close()
        t.join()
        assert len(made) + len(refused) == 1
        if made:
            assert made[0].closed  # closed together with its device
        else:
            assert "cannot create a Stream" in str(refused[0])
        assert asf.live_resources() == []
        assert sim.live_handles() == {}
    assert sim.violations() == []


def test_resource_warning_as_error_still_releases(sim):
    with asf.Device(0) as dev:
        mem = dev.malloc(64)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            del mem
            gc.collect()
        assert asf.live_resources() == [dev]
        assert "device_memory" not in sim.live_handles()


def test_dropped_device_does_not_warn_about_its_default_stream(sim):
    dev = asf.Device(0)
    with pytest.warns(ResourceWarning) as record:
        del dev
        gc.collect()
        asf.live_resources()
    assert [str(w.message).split("#")[0] for w in record] == ["unclosed <Device "]
    assert sim.live_handles() == {}


def test_staging_memory_is_internal(sim):
    with asf.Device(0) as dev, dev.stream() as s, dev.malloc(64) as mem:
        with sim.hold_streams():
            mem.copy_from(b"\x01" * 64, stream=s)
            assert "host_memory" in sim.live_handles()  # the pinned staging buffer
            assert asf.live_resources() == [dev, s, mem]  # not the user's to close
        s.synchronize()
        pooled = [r for r in asf.live_resources(internal=True) if r.kind == "staging memory"]
        assert [r.ptr for r in pooled] == sim.live_handles()["host_memory"]  # kept for reuse


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    full_env = dict(os.environ, ASCEND_SAFE_BACKEND="sim", **env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_exit_with_a_stuck_stream_does_not_hang():
    proc = _run(
        """
        import ascend_safe as asf
        from ascend_safe import sim
        dev = asf.Device(0)
        s = dev.stream()
        mem = dev.malloc(64)
        held = sim.hold_streams()
        held.__enter__()  # the stream never finishes
        mem.fill(1, stream=s)
        print("exiting", flush=True)
        """,
        ASCEND_SAFE_EXIT_TIMEOUT="0.3",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "exiting"
    assert "507046" in proc.stderr  # the timeout is reported, not waited out forever
    assert "Traceback" not in proc.stderr


def test_forked_child_exit_leaves_the_parent_resources_alone(tmp_path):
    record = tmp_path / "violations.jsonl"
    proc = _run(
        f"""
        import os, sys, warnings
        import ascend_safe as asf
        from ascend_safe import sim
        sim.configure(record_file={str(record)!r})
        dev = asf.Device(0)
        mem = dev.malloc(64, fill=7)
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
        if pid == 0:
            sys.exit(0)  # a normal exit, with the parent's objects still open
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert mem.to_bytes() == b"\\x07" * 64
        dev.close()
        print("parent ok", flush=True)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "parent ok"
    assert proc.stderr == ""  # neither a leak report nor a fork error from the child's exit
    assert not record.exists() or record.read_text() == ""


def test_bad_fork_policy_variable_is_named_at_first_use_not_at_import():
    proc = _run(
        """
        import ascend_safe as asf
        print("imported", flush=True)
        try:
            asf.Device(0)
        except ValueError as exc:
            print("refused:", exc)
        """,
        ASCEND_SAFE_FORK_POLICY="sometimes",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("imported\nrefused: ")
    assert "ASCEND_SAFE_FORK_POLICY='sometimes' is not valid: use one of sync" in proc.stdout


def test_doctor_starts_with_a_bad_fork_policy_and_reports_it():
    proc = subprocess.run(
        [sys.executable, "-m", "ascend_safe", "doctor", "--json"],
        env=dict(os.environ, ASCEND_SAFE_BACKEND="sim", ASCEND_SAFE_FORK_POLICY="sometimes"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(proc.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    env = checks["environment"]
    assert env["status"] == "fail"
    assert "ASCEND_SAFE_FORK_POLICY" in env["summary"] and "sync" in env["summary"]
    assert "ASCEND_SAFE_FORK_POLICY" in env["fix"]
    # Only the environment check reports it: the probes still ran.
    assert checks["versions"]["status"] != "fail", checks["versions"]
    others = [n for n, c in checks.items() if n != "environment" and "FORK" in c["summary"]]
    assert others == []


def test_waiting_through_another_stream_delivers_host_copies(sim):
    sim.configure(async_delay=0.01)
    with asf.Device(0) as dev, dev.stream() as s1, dev.stream() as s2, dev.malloc(64) as mem:
        out = bytearray(64)
        mem.fill(0x41, stream=s1)
        mem.copy_to(out, stream=s1)  # lands in a pinned buffer, then in `out`
        done_on_s1 = dev.event()
        done_on_s1.record(s1)
        s2.wait(done_on_s1)
        s2.synchronize()  # s2 is past the wait, so s1 is past the copy
        assert out == b"\x41" * 64
        done_on_s1.close()


def test_failed_close_keeps_waiting_for_the_stream_on_retry(sim):
    sim.configure(async_delay=0.05)
    with asf.Device(0) as dev, dev.stream() as s:
        mem = dev.malloc(64)
        mem.fill(1, stream=s)
        sim.inject_fault("rt.synchronize_stream", 507000)
        with pytest.raises(asf.AclError):
            mem.close()
        assert not mem.closed
        mem.close()  # retried: still synchronizes the stream before the free
    assert [v.kind for v in sim.violations()] == []


def test_a_signal_handler_closing_the_parent_runs_after_the_creation(sim):
    import signal

    if not hasattr(signal, "setitimer"):
        pytest.skip("needs setitimer")
    sim.configure(call_latency=0.05)
    dev = asf.Device(0)
    seen: list[bool] = []

    def handler(signum, frame):
        seen.append(dev.closed)
        dev.close()

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        mem = dev.malloc(64)  # the alarm fires while the allocation is in pyacl
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert seen == [False]  # the handler ran once the allocation was recorded, not inside it
    assert dev.closed and mem.closed
    sim.configure(call_latency=0.0)
    assert asf.live_resources() == []
    assert sim.live_handles() == {}
    assert sim.violations() == []


def test_interrupt_at_the_return_of_an_allocation_does_not_leak(sim):
    import signal

    if not hasattr(signal, "setitimer"):
        pytest.skip("needs setitimer")
    sim.configure(call_latency=0.05)
    dev = asf.Device(0)
    dev.malloc(64).close()  # the first allocation also asks the run mode (memory admission)

    def handler(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        with pytest.raises(KeyboardInterrupt):
            dev.malloc(64)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    sim.configure(call_latency=0.0)
    try:
        assert sim.live_handles().get("device_memory", []) == []
    finally:
        dev.close()
        sim.clear_violations()


def test_large_staging_buffers_are_not_doubled(sim):
    size = (5 << 20) + 12345
    with asf.Device(0) as dev, dev.stream() as s, dev.malloc(size) as mem:
        mem.copy_from(bytes(size), stream=s)
        staging = [r for r in asf.live_resources(internal=True) if r.kind == "staging memory"]
        assert [r.size for r in staging] == [6 << 20]
        s.synchronize()


def test_fork_while_another_thread_works_never_hangs_the_child(sim):
    import os
    import time

    stop = threading.Event()
    with asf.Device(0) as dev:

        def churn():
            while not stop.is_set():
                with dev.event():
                    pass

        worker = threading.Thread(target=churn)
        worker.start()
        try:
            hung = 0
            for _ in range(40):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    pid = os.fork()
                if pid == 0:
                    dev.close()  # abandons the parent's objects: must not wait for any lock
                    os._exit(0)
                deadline = time.monotonic() + 5
                while True:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        assert os.waitstatus_to_exitcode(status) == 0
                        break
                    if time.monotonic() > deadline:
                        os.kill(pid, 9)
                        os.waitpid(pid, 0)
                        hung += 1
                        break
                    time.sleep(0.005)
            assert hung == 0
        finally:
            stop.set()
            worker.join()


def test_exit_does_not_wait_forever_for_a_blocked_allocation():
    import time

    start = time.monotonic()
    proc = _run(
        """
        import threading, time
        import ascend_safe as asf
        from ascend_safe import sim
        sim.configure(run_mode=0, memory_per_device=1 << 20, rc_malloc_timeout=60)
        asf.set_oom_policy("native")  # the RC-mode hang, without memory admission
        dev = asf.Device(0)
        first = dev.malloc(1 << 19)
        def blocked():
            dev.malloc(1 << 20)  # RC mode: waits for memory that never comes
        threading.Thread(target=blocked, daemon=True).start()
        time.sleep(0.2)
        print("exiting", flush=True)
        """,
        ASCEND_SAFE_EXIT_TIMEOUT="0.5",
    )
    assert time.monotonic() - start < 30  # not the simulator's 60 s malloc timeout
    assert proc.stdout.strip() == "exiting"
    assert "creating a resource" in proc.stderr

"""Memory admission across processes sharing one simulated device in RC mode: memory another
process holds is seen through get_mem_info, so raise refuses at once, wait is admitted once the
other process frees, and native reproduces the hang (bounded by the simulator's timeout)."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator

import admission_tasks
import pytest

import ascend_safe as asf
from ascend_safe import slots

MEMORY = 1 << 20

HOLDER = textwrap.dedent(
    """
    import sys
    import ascend_safe as asf
    with asf.Device(0) as dev:
        mem = dev.malloc(700_000)
        print("holding", flush=True)
        sys.stdin.readline()
        mem.close()
        print("freed", flush=True)
        sys.stdin.readline()
    """
)


@pytest.fixture
def holder(sim) -> Iterator[subprocess.Popen[str]]:
    """Another process of the same simulated machine holding 700000 bytes of device 0."""
    asf.set_oom_policy(None)
    sim.configure(run_mode=0, memory_per_device=MEMORY, rc_malloc_timeout=5.0)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER],
        env=dict(os.environ, ASCEND_SAFE_BACKEND="sim"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "holding"
        yield proc
    finally:
        asf.set_oom_policy(None)
        proc.stdin.close()
        proc.wait(30)
        proc.stdout.close()


def _free_in(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("free\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "freed"


def _hangs(sim):
    return [v for v in sim.violations() if v.kind == "rc_malloc_hang"]


def test_raise_sees_memory_held_by_another_process(sim, holder):
    with asf.Device(0) as dev:
        with pytest.raises(asf.OutOfDeviceMemoryError) as info:
            dev.malloc(400_000)
        err = info.value
        assert (err.free, err.total) == (MEMORY - 700_032, MEMORY)
        assert err.largest == []
        assert "this process holds no live device allocation there" in str(err)
        _free_in(holder)
        dev.malloc(400_000).close()
    assert _hangs(sim) == []


def test_wait_is_admitted_when_another_process_frees(sim, holder):
    asf.set_oom_policy("wait", timeout=30)
    with asf.Device(0) as dev:
        got: list[asf.DeviceMemory] = []
        waiter = threading.Thread(target=lambda: got.append(dev.malloc(400_000)))
        waiter.start()
        waiter.join(0.2)
        assert waiter.is_alive() and not got
        _free_in(holder)  # no wake-up from another process: found by polling get_mem_info
        waiter.join(30)
        assert len(got) == 1
        got[0].close()
    assert _hangs(sim) == []


def test_native_hangs_until_the_simulator_gives_up(sim, holder):
    sim.configure(rc_malloc_timeout=0.3)
    asf.set_oom_policy("native")
    with asf.Device(0) as dev, pytest.raises(asf.OutOfDeviceMemoryError):
        dev.malloc(400_000)
    assert len(_hangs(sim)) == 1
    sim.clear_violations()


ROUNDS = 20


def _race(sim, tmp_path, policy: str, rounds: int) -> list[list[str]]:
    """Two spawned processes, released together by a barrier each round, asking for 60% of
    device 0; the outcomes per round."""
    asf.set_oom_policy(None)
    # A call that blocks in RC mode gives up after 2 s and records rc_malloc_hang, in whichever
    # process it happened (the record file collects them).
    sim.configure(
        run_mode=0,
        memory_per_device=MEMORY,
        rc_malloc_timeout=2.0,
        record_file=str(tmp_path / "violations.jsonl"),
    )
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2, timeout=60)
    results = ctx.Queue()
    size = MEMORY * 6 // 10
    procs = [
        ctx.Process(target=admission_tasks.race, args=(policy, rounds, size, barrier, results))
        for _ in range(2)
    ]
    for proc in procs:
        proc.start()
    try:
        outcomes: list[list[str]] = [[] for _ in range(rounds)]
        for _ in range(2 * rounds):
            index, outcome = results.get(timeout=120)
            outcomes[index].append(outcome)
    finally:
        for proc in procs:
            proc.join(60)
        sim.configure(record_file=None)
    assert [proc.exitcode for proc in procs] == [0, 0]
    return outcomes


def test_two_processes_racing_under_raise_never_both_get_in(sim, tmp_path):
    outcomes = _race(sim, tmp_path, "raise", ROUNDS)
    assert [sorted(o) for o in outcomes] == [["admitted", "refused"]] * ROUNDS
    assert _hangs(sim) == []


def test_two_processes_racing_under_wait_both_get_in(sim, tmp_path):
    outcomes = _race(sim, tmp_path, "wait", 5)
    assert outcomes == [["admitted", "admitted"]] * 5
    assert _hangs(sim) == []


CRASH_WHILE_ADMITTING = textwrap.dedent(
    """
    import fcntl, os, sys, threading, time
    import ascend_safe as asf
    from ascend_safe import _backend, admission

    asf.set_oom_policy("raise")
    dev = asf.Device(0)
    dev.malloc(64).close()
    fd = next(iter(admission._lock_files.values()))
    assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC, "lock file inherited by exec"
    inside = threading.Event()
    real = _backend._functions["rt.malloc"]

    def slow(size, kind):
        inside.set()
        time.sleep(30)
        return real(size, kind)

    _backend._functions["rt.malloc"] = slow
    threading.Thread(target=dev.malloc, args=(1000,), daemon=True).start()
    inside.wait(10)  # the admission lock is held now
    asf.set_fork_policy("off")
    pid = os.fork()
    if pid == 0:
        try:
            os.fstat(fd)
            print("child holds", flush=True)
        except OSError:
            print("child closed", flush=True)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)  # let the parent's reader see the end of its output
        os.dup2(devnull, 2)
        time.sleep(float(sys.argv[1]))
        os._exit(0)
    time.sleep(0.2)
    print(pid, flush=True)
    os._exit(0)  # dies mid-allocation, holding the lock
    """
)


def test_a_forked_child_does_not_keep_a_dead_parents_admission_lock(sim, tmp_path):
    sim.configure(run_mode=0, memory_per_device=MEMORY, rc_malloc_timeout=5.0)
    with asf.Device(0) as dev:
        dev.malloc(64).close()  # the lock file exists
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_WHILE_ADMITTING, "5"],
        env=dict(os.environ, ASCEND_SAFE_BACKEND="sim"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    said, child = proc.stdout.split()[0:2], int(proc.stdout.split()[-1])
    assert " ".join(said) == "child closed"
    try:
        os.kill(child, 0)  # the child is still alive...
        assert _admission_lock_is_free(0)  # ...and does not pin the lock its parent held
    finally:
        os.kill(child, signal.SIGKILL)
    asf.set_oom_policy("raise")
    with asf.Device(0) as dev:
        dev.malloc(400_000).close()  # admission goes on
    assert _hangs(sim) == []


def _admission_lock_is_free(device_id: int) -> bool:
    path = os.path.join(slots.slot_dir(), f"dev{device_id}.admission")
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True

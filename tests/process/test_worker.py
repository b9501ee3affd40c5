"""The worker decorator and pools, with real spawned processes."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import model_tasks
import pool_tasks
import pytest

import ascend_safe as asf
from ascend_safe import sim

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux process model")


def test_pool_over_two_devices_gives_right_results():
    payloads = [bytes([i]) * (256 + i) for i in range(24)]
    with (
        multiprocessing.get_context("spawn").Manager() as manager,
        asf.worker_pool(workers=4, devices=[0, 1]) as pool,
    ):
        barrier = manager.Barrier(4)
        met = [f.result() for f in [pool.submit(pool_tasks.meet, barrier) for _ in range(4)]]
        results = list(pool.map(pool_tasks.round_trip, payloads))
        states = [pool.submit(pool_tasks.simulator_state) for _ in range(8)]
        states = [f.result() for f in states]
    # four distinct workers, spread round-robin over the two devices
    assert len({pid for pid, _ in met}) == 4
    assert sorted(dev for _, dev in met) == [0, 0, 1, 1]
    assert [r[2] for r in results] == payloads
    assert {r[1] for r in results} <= {0, 1}
    assert os.getpid() not in {r[0] for r in results}
    for _pid, handles, violations in states:
        # each worker keeps exactly its device session open between calls, nothing else
        assert set(handles) == {"device"} and len(handles["device"]) == 1
        assert violations == []


def test_plain_executor_with_spawn_context():
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(4, mp_context=ctx) as pool:
        results = list(pool.map(pool_tasks.round_trip, [b"abc" * 50] * 8))
        assert pool.submit(pool_tasks.on_device_one).result() == 1
    assert all(r[1] == 0 and r[2] == b"abc" * 50 for r in results)


def test_per_call_leaks_are_released_and_reported():
    with asf.worker_pool(workers=1) as pool:
        expected = r"leaky left resources open.*2 DeviceMemory, 1 Stream"
        with pytest.raises(asf.ResourceLeakError, match=expected):
            pool.submit(pool_tasks.leaky, 2).result()
        _pid, handles, violations = pool.submit(pool_tasks.simulator_state).result()
        assert handles == {"device": [0]}
        assert violations == []
        with pytest.warns(asf.ResourceLeakWarning, match="leaky_warn left"):
            pool.submit(pool_tasks.leaky_warn).result()
        _pid, handles, _ = pool.submit(pool_tasks.simulator_state).result()
        assert handles == {"device": [0]}


def test_multiprocessing_pool():
    with asf.worker_mp_pool(2, devices=[1]) as pool:
        results = pool.map(pool_tasks.round_trip, [b"x" * 100, b"y" * 100])
    assert [r[1] for r in results] == [1, 1]
    assert [r[2] for r in results] == [b"x" * 100, b"y" * 100]


def test_decorated_function_refuses_forked_child_of_pyacl_process(sim):
    with asf.Device(0) as dev, dev.malloc(8):
        r, w = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                pool_tasks.round_trip(b"abc")
            except asf.ForkSafetyError as exc:
                os.write(w, str(exc).encode())
            os._exit(0)
        os.close(w)
        message = os.read(r, 4096).decode()
        os.close(r)
        os.waitpid(pid, 0)
    assert "spawn" in message and "ascend_safe.worker" in message


def test_worker_functions_pickle_by_reference():
    assert pickle.loads(pickle.dumps(pool_tasks.round_trip)) is pool_tasks.round_trip


def test_worker_argument_validation():
    with pytest.raises(ValueError, match="leaks"):
        asf.worker(leaks="sometimes")
    with pytest.raises(TypeError):
        asf.worker(device="0")
    with pytest.raises(ValueError):
        asf.worker_pool(0)
    with pytest.raises(ValueError):
        asf.worker_pool(2, devices=[])
    with pytest.raises(RuntimeError, match="no device session here"):
        asf.current_device()


def _parent_script(tmp_path, main_body: str):
    """A program that uses pool_tasks from a pool; *main_body* runs under the main guard."""
    script = tmp_path / "parent.py"
    prelude = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {os.path.dirname(pool_tasks.__file__)!r})
        os.environ["ASCEND_SAFE_BACKEND"] = "sim"
        import ascend_safe as asf
        import pool_tasks
        if __name__ == "__main__":
        """
    )
    script.write_text(prelude + textwrap.indent(textwrap.dedent(main_body), "    "))
    return script


def test_workers_die_with_their_parent(tmp_path):
    script = _parent_script(
        tmp_path,
        """
        import time
        pool = asf.worker_pool(workers=3, devices=[0, 1])
        futures = [pool.submit(pool_tasks.round_trip, b"z" * 64) for _ in range(12)]
        pids = {f.result()[0] for f in futures}
        print(" ".join(map(str, sorted(pids))), flush=True)
        time.sleep(60)
        """,
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        line = parent.stdout.readline()
        pids = [int(p) for p in line.split()]
        assert pids, "the parent printed no worker pids"
        for pid in pids:
            os.kill(pid, 0)  # alive
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        alive = pids
        while alive and time.monotonic() < deadline:
            alive = [pid for pid in alive if _alive(pid)]
            time.sleep(0.05)
        assert alive == [], f"orphaned workers still running: {alive}"
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.stdout.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purpose (its parent, init, reaps it)
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_concurrent_calls_in_one_worker_do_not_close_each_other(sim):
    # calls in several threads of one process: each only answers for what it created
    with concurrent.futures.ThreadPoolExecutor(4) as threads:
        slow = threads.submit(pool_tasks.keep_then_close, 0.3)
        fast = [threads.submit(pool_tasks.keep_then_close, 0.0) for _ in range(5)]
        assert all(f.result() == os.getpid() for f in fast)
        assert slow.result() == os.getpid()
    asf.close_worker_sessions()


def test_pool_workers_exit_quietly(tmp_path):
    script = _parent_script(
        tmp_path,
        """
        with asf.worker_pool(workers=2, devices=[0, 1]) as pool:
            print(len(list(pool.map(pool_tasks.round_trip, [b"a" * 64] * 6))))
        """,
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "6"
    assert proc.stderr == ""  # the workers' own device sessions are not reported as leaks


def test_pool_started_from_a_short_lived_thread_survives_the_thread():
    box = {}

    def first_use():
        pool = asf.worker_pool(workers=2)
        box["pool"] = pool
        box["pids"] = {pool.submit(pool_tasks.round_trip, b"q" * 64).result()[0] for _ in range(4)}

    t = threading.Thread(target=first_use)
    t.start()
    t.join()  # the thread that started the workers is gone; the parent process is not
    time.sleep(0.3)
    pool = box["pool"]
    try:
        result = pool.submit(pool_tasks.round_trip, b"r" * 64).result(timeout=30)
        assert result[2] == b"r" * 64
    finally:
        pool.shutdown()


def test_model_loaded_once_per_worker_process(tmp_path):
    np = pytest.importorskip("numpy")
    path = str(tmp_path / "double.simmdl")
    sim.write_model(
        path,
        inputs=[("x", "float32", (4,))],
        outputs=[("y", "float32", (4,))],
        ops=[{"op": "mul", "value": 2.0}],
    )
    xs = [np.full(4, i, np.float32) for i in range(16)]
    with asf.worker_pool(workers=2, devices=[0, 1]) as pool:
        results = list(pool.map(model_tasks.infer, [path] * len(xs), xs))
        states = [pool.submit(model_tasks.live).result() for _ in range(4)]
    for x, (_pid, _dev, loads, y) in zip(xs, results):
        assert loads == 1  # one load per worker process, reused by every call
        np.testing.assert_array_equal(y, x * 2)
    assert {dev for _, dev, _, _ in results} <= {0, 1}
    for handles in states:  # the session and the kept model: nothing else between calls
        assert set(handles) == {
            "device",
            "model",
            "model_desc",
            "dataset",
            "device_memory",
            "data_buffer",
        }
        assert len(handles["model"]) == 1

"""Memory admission on the simulator's RC mode (run_mode 0), whose malloc blocks when memory
runs out: the policies raise / wait / native, padding, concurrency, and 207001 in host mode."""

from __future__ import annotations

import fcntl
import os
import pickle
import threading
import time
from pathlib import Path

import pytest

import ascend_safe as asf
from ascend_safe import _backend, admission, slots

MEMORY = 1 << 20


@pytest.fixture(autouse=True)
def _policy_reset(sim, monkeypatch):
    monkeypatch.delenv("ASCEND_SAFE_OOM_POLICY", raising=False)
    monkeypatch.delenv("ASCEND_SAFE_OOM_TIMEOUT", raising=False)
    asf.set_oom_policy(None)
    admission.refresh_environment()
    # A blocked RC malloc gives up after 5 s in the simulator: a test that hangs fails fast.
    sim.configure(run_mode=0, memory_per_device=MEMORY, rc_malloc_timeout=5.0)
    yield
    asf.set_oom_policy(None)
    admission.refresh_environment()


def _hangs(sim):
    return [v for v in sim.violations() if v.kind == "rc_malloc_hang"]


def test_rc_mode_default_refuses_at_once_with_details(sim):
    with asf.Device(0) as dev:
        held = dev.malloc(700_000)
        before = sim.call_counts().get("rt.malloc", 0)
        with pytest.raises(asf.OutOfDeviceMemoryError) as info:
            dev.malloc(400_000)
        err = info.value
        assert sim.call_counts().get("rt.malloc", 0) == before  # decided before the call
        assert err.code == 207001 and err.api == "acl.rt.malloc"
        assert err.requested == 400_000
        assert err.details["padded"] == 400_032
        free, total = dev.mem_info()
        assert (err.free, err.total) == (free, total) == (MEMORY - 700_032, MEMORY)
        assert err.largest == [(repr(held), 700_000)]
        text = str(err)
        for part in (
            "400000 bytes requested",
            f"{free} of {MEMORY} bytes free",
            repr(held),
            "'raise'",
            "set_oom_policy",
        ):
            assert part in text
        held.close()
    assert _hangs(sim) == []


def test_padding_is_counted(sim):
    with asf.Device(0) as dev:
        free, _ = dev.mem_info()
        # The raw size fits; with pyacl's +32 padding it does not, and RC mode would hang.
        with pytest.raises(asf.OutOfDeviceMemoryError):
            dev.malloc(free - 16)
        with pytest.raises(asf.OutOfDeviceMemoryError):
            dev.dvpp_malloc(free - 16)
        exact = dev.malloc(free - 32)  # rounds to free - 32, plus 32: exactly free
        assert dev.mem_info()[0] == 0
        exact.close()
    assert admission.padded_size("rt.malloc", 1) == 64
    assert admission.padded_size("rt.malloc_align32", 1) == 32
    assert admission.padded_size("media.dvpp_malloc", 64) == 96


def test_wait_is_woken_by_a_free_in_this_process(sim):
    asf.set_oom_policy("wait", timeout=30)
    with asf.Device(0) as dev:
        held = dev.malloc(700_000)
        got: list[asf.DeviceMemory] = []
        waiter = threading.Thread(target=lambda: got.append(dev.malloc(400_000)))
        waiter.start()
        waiter.join(0.2)
        assert waiter.is_alive() and not got  # waiting, not admitted
        held.close()
        waiter.join(30)
        assert not waiter.is_alive() and len(got) == 1
        assert got[0].to_bytes(16) == bytes(16)
        got[0].close()
    assert _hangs(sim) == []


def test_wait_gives_up_after_its_timeout(sim):
    with asf.Device(0) as dev:
        dev.set_oom_policy("wait", timeout=0.2)
        held = dev.malloc(700_000)
        with pytest.raises(asf.OutOfDeviceMemoryError) as info:
            dev.malloc(400_000)
        assert "after waiting" in str(info.value) and "'wait'" in str(info.value)
        held.close()
    assert _hangs(sim) == []


def test_native_reproduces_the_hang(sim):
    sim.configure(rc_malloc_timeout=0.3)
    asf.set_oom_policy("native")
    with asf.Device(0) as dev:
        held = dev.malloc(700_000)
        with pytest.raises(asf.OutOfDeviceMemoryError) as info:
            dev.malloc(400_000)  # blocks in the simulator until its safety timeout
        assert info.value.requested == 400_000
        held.close()
    assert len(_hangs(sim)) == 1
    sim.clear_violations()


@pytest.mark.parametrize("policy", ["raise", "wait"])
def test_two_threads_are_not_both_admitted_against_the_same_memory(sim, policy, monkeypatch):
    # A driver whose malloc takes a while before it takes the memory: the second thread
    # decides while the first thread's malloc is still running.
    real_malloc = sim.acl_module().rt.malloc

    def slow_malloc(size: int, kind: int) -> tuple[int, int]:
        time.sleep(0.1)
        return real_malloc(size, kind)

    monkeypatch.setitem(_backend._functions, "rt.malloc", slow_malloc)
    asf.set_oom_policy(policy, timeout=30)
    with asf.Device(0) as dev:
        barrier = threading.Barrier(2)
        results: list[object] = []

        def one() -> None:
            barrier.wait()
            try:
                results.append(dev.malloc(600_000))
            except asf.OutOfDeviceMemoryError as exc:
                results.append(exc)

        threads = [threading.Thread(target=one) for _ in range(2)]
        for t in threads:
            t.start()
        if policy == "wait":  # the second waits for the first to be closed
            for _ in range(200):
                mems = [r for r in results if isinstance(r, asf.DeviceMemory)]
                if mems:
                    break
                threads[0].join(0.05)
            mems[0].close()
        for t in threads:
            t.join(30)
        mems = [r for r in results if isinstance(r, asf.DeviceMemory)]
        errors = [r for r in results if isinstance(r, asf.OutOfDeviceMemoryError)]
        if policy == "raise":
            assert len(mems) == 1 and len(errors) == 1
        else:
            assert len(mems) == 2 and not errors
        for m in mems:
            m.close()
    assert _hangs(sim) == []


def test_device_policy_overrides_the_process_one(sim):
    asf.set_oom_policy("native")
    with asf.Device(0) as dev:
        dev.set_oom_policy("raise")
        assert asf.get_oom_policy(dev) == ("raise", None)
        assert asf.get_oom_policy() == ("native", None)
        held = dev.malloc(700_000)
        with pytest.raises(asf.OutOfDeviceMemoryError):
            dev.malloc(400_000)
        dev.set_oom_policy(None)
        assert asf.get_oom_policy(dev) == ("native", None)
        held.close()
    assert _hangs(sim) == []


def test_policy_from_the_environment(sim, monkeypatch):
    monkeypatch.setenv("ASCEND_SAFE_OOM_POLICY", "Wait")
    monkeypatch.setenv("ASCEND_SAFE_OOM_TIMEOUT", "0.1")
    admission.refresh_environment()
    assert asf.get_oom_policy() == ("wait", 0.1)
    with asf.Device(0) as dev:
        held = dev.malloc(700_000)
        with pytest.raises(asf.OutOfDeviceMemoryError, match="after waiting"):
            dev.malloc(400_000)
        held.close()
    monkeypatch.setenv("ASCEND_SAFE_OOM_POLICY", "wiat")
    admission.refresh_environment()
    with pytest.raises(ValueError, match="ASCEND_SAFE_OOM_POLICY='wiat'"):
        asf.get_oom_policy()
    monkeypatch.setenv("ASCEND_SAFE_OOM_POLICY", "wait")
    monkeypatch.setenv("ASCEND_SAFE_OOM_TIMEOUT", "soon")
    admission.refresh_environment()
    with pytest.raises(ValueError, match="ASCEND_SAFE_OOM_TIMEOUT"):
        asf.get_oom_policy()


def test_bad_policy_arguments():
    with pytest.raises(ValueError, match="'raise', 'wait', 'native'"):
        asf.set_oom_policy("hang")
    with pytest.raises(TypeError):
        asf.set_oom_policy("wait", timeout="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        asf.set_oom_policy("wait", timeout=-1)


def test_host_mode_default_is_native_and_207001_gets_details(sim):
    sim.configure(run_mode=1)
    with asf.Device(0) as dev:
        assert admission.effective_policy(dev).policy == "native"
        held = dev.malloc(700_000)
        before = sim.call_counts().get("rt.malloc", 0)
        with pytest.raises(asf.OutOfDeviceMemoryError) as info:
            dev.malloc(400_000)
        assert sim.call_counts()["rt.malloc"] == before + 1  # pyacl itself said 207001
        err = info.value
        assert err.requested == 400_000 and err.total == MEMORY
        assert err.largest == [(repr(held), 700_000)]
        assert "400000 bytes requested" in str(err)
        again = pickle.loads(pickle.dumps(err))
        assert again.details == err.details and str(again) == str(err)
        held.close()


def test_cached_memory_is_released_before_refusing(sim):
    with asf.Device(0) as dev:
        cache = [dev.malloc(700_000)]
        asked: list[tuple[int, int]] = []

        def release(device_id: int, nbytes: int) -> int:
            asked.append((device_id, nbytes))
            freed = sum(m.size for m in cache)
            for m in cache:
                m.close()
            cache.clear()
            return freed

        unregister = admission.on_release_cached(release)
        try:
            mem = dev.malloc(400_000)
        finally:
            unregister()
        assert asked == [(0, 400_032)]
        mem.close()
    assert _hangs(sim) == []


def test_host_memory_is_not_admitted(sim):
    with asf.Device(0) as dev:
        before = sim.call_counts().get("rt.get_mem_info", 0)
        with dev.malloc_host(4096):
            pass
        assert sim.call_counts().get("rt.get_mem_info", 0) == before


def _admission_lock_is_free(device_id: int) -> bool:
    """Whether another open file description can take device *device_id*'s admission lock
    (what another process would see)."""
    path = os.path.join(slots.slot_dir(), f"dev{device_id}.admission")
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def test_an_interrupted_allocation_leaves_no_reservation(sim, monkeypatch):
    def interrupted(size: int, kind: int) -> tuple[int, int]:
        raise KeyboardInterrupt

    with asf.Device(0) as dev:
        with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
            patch.setitem(_backend._functions, "rt.malloc", interrupted)
            dev.malloc(700_000)
        # No phantom 700000 bytes in flight: this fits and is admitted.
        assert _admission_lock_is_free(0)  # other processes are not shut out
        mem = dev.malloc(700_000)
        mem.close()
    assert _hangs(sim) == []


def _model(sim, path, weight_bytes: int) -> str:
    np = pytest.importorskip("numpy")
    sim.write_model(
        str(path),
        inputs=[("x", "float32", (1, 4))],
        outputs=[("y", "float32", (1, weight_bytes // 16))],
        ops=[{"op": "matmul", "weight": np.zeros((4, weight_bytes // 16), np.float32)}],
    )
    return str(path)


@pytest.mark.parametrize("source", ["file", "bytes"])
def test_a_model_that_does_not_fit_is_refused_before_loading(sim, tmp_path, source):
    path = _model(sim, tmp_path / "big.simmdl", 600_000)
    arg = path if source == "file" else Path(path).read_bytes()
    api = "mdl.load_from_file" if source == "file" else "mdl.load_from_mem"
    with asf.Device(0) as dev:
        held = dev.malloc(700_000)
        before = sim.call_counts().get(api, 0)
        with pytest.raises(asf.OutOfDeviceMemoryError) as info:
            asf.Model(dev, arg)
        assert sim.call_counts().get(api, 0) == before  # decided before the call
        assert info.value.requested is not None and info.value.requested >= 600_000
        assert info.value.api == "acl." + api
        held.close()
        model = asf.Model(dev, arg)  # fits now
        assert sim.live_handles().get("model")
        model.close()
    assert _hangs(sim) == []


def test_a_model_load_waits_for_memory_freed_meanwhile(sim, tmp_path):
    path = _model(sim, tmp_path / "big.simmdl", 600_000)
    asf.set_oom_policy("wait", timeout=30)
    with asf.Device(0) as dev:
        held = dev.malloc(700_000)
        threading.Timer(0.2, held.close).start()
        start = time.monotonic()
        model = asf.Model(dev, path)
        assert time.monotonic() - start >= 0.15
        model.close()
    assert _hangs(sim) == []


def test_a_loaded_model_takes_from_the_shared_budget(sim, tmp_path):
    path = _model(sim, tmp_path / "big.simmdl", 600_000)
    with asf.Device(0) as dev:
        free_before = dev.mem_info()[0]
        model = asf.Model(dev, path)
        assert dev.mem_info()[0] <= free_before - 600_000
        with pytest.raises(asf.OutOfDeviceMemoryError):
            dev.malloc(700_000)  # refused: the model holds the memory
        model.close()
        assert dev.mem_info()[0] == free_before
    assert _hangs(sim) == []


def test_a_lock_held_too_long_by_another_process_is_refused_not_waited_for(sim, monkeypatch):
    monkeypatch.setattr(admission, "_LOCK_PATIENCE", 0.3)
    with asf.Device(0) as dev:
        dev.malloc(64).close()  # the lock file exists
        path = os.path.join(slots.slot_dir(), "dev0.admission")
        other = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # another open file description
        try:
            fcntl.flock(other, fcntl.LOCK_EX)  # as a process stuck in an admitted malloc
            before = sim.call_counts().get("rt.malloc", 0)
            start = time.monotonic()
            with pytest.raises(asf.OutOfDeviceMemoryError) as info:
                dev.malloc(1000)
            assert 0.25 <= time.monotonic() - start < 5
            assert "another process's admitted allocation on device 0" in str(info.value)
            assert sim.call_counts().get("rt.malloc", 0) == before
        finally:
            os.close(other)
        dev.malloc(1000).close()  # the lock is free again
    assert _hangs(sim) == []


def test_a_thread_stuck_in_an_admitted_call_does_not_hang_the_others(sim, monkeypatch):
    monkeypatch.setattr(admission, "_LOCK_PATIENCE", 0.3)
    real_malloc = sim.acl_module().rt.malloc
    inside = threading.Event()

    def stuck_malloc(size: int, kind: int) -> tuple[int, int]:
        if size == 1234:
            inside.set()
            time.sleep(1.5)
        return real_malloc(size, kind)

    monkeypatch.setitem(_backend._functions, "rt.malloc", stuck_malloc)
    with asf.Device(0) as dev:
        got: list[asf.DeviceMemory] = []
        slow = threading.Thread(target=lambda: got.append(dev.malloc(1234)))
        slow.start()
        assert inside.wait(10)
        with pytest.raises(asf.OutOfDeviceMemoryError) as info:
            dev.malloc(1000)
        assert "another thread's admitted allocation on device 0" in str(info.value)
        slow.join(10)
        got[0].close()
    assert _hangs(sim) == []

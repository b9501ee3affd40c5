"""The caching memory pool: reuse, zeroing on reuse, stream-aware reuse, statistics, limit,
flush on out-of-memory, threads, and teardown with the device."""

from __future__ import annotations

import threading

import pytest

import ascend_safe as asf
from ascend_safe import admission
from ascend_safe.pool import size_class


def _device_bytes(sim, ptr: int, size: int) -> bytes:
    """The simulator's own bytes at a device address (RC mode: the host reads device memory)."""
    return sim.acl_module().util.ptr_to_bytes(ptr, size)


def test_size_classes():
    assert [size_class(n) for n in (1, 512, 513, 1000, 4096, 4097)] == [
        512,
        512,
        1024,
        1024,
        4096,
        8192,
    ]
    assert size_class(1 << 20) == 1 << 20
    assert size_class((1 << 20) + 1) == 2 << 20
    assert size_class(5 * (1 << 20) - 7) == 5 << 20


def test_a_freed_block_is_reused_and_counted(sim):
    with asf.Device(0) as dev, asf.MemoryPool(dev) as pool:
        first = pool.malloc(1000)
        ptr = first.ptr
        assert (first.size, first.block_size) == (1000, 1024)
        first.close()
        calls = sim.call_counts().get("rt.malloc", 0)
        second = pool.malloc(700)  # same size class
        assert second.ptr == ptr
        assert sim.call_counts().get("rt.malloc", 0) == calls  # no new allocation
        stats = pool.stats
        assert (stats.hits, stats.misses, stats.in_use, stats.cached) == (1, 1, 1024, 0)
        other = pool.malloc(5000)  # another class: a new block
        assert other.ptr != ptr
        second.close()
        other.close()
        stats = pool.stats
        assert (stats.in_use, stats.cached, stats.peak) == (0, 1024 + 8192, 1024 + 8192)


def test_every_reuse_is_zeroed_in_the_simulators_memory(sim):
    sim.configure(run_mode=0)  # RC: the test reads the device bytes straight from the sim
    with asf.Device(0) as dev, asf.MemoryPool(dev) as pool:
        stream = dev.stream()
        block = pool.malloc(4096)
        block.copy_from(b"\xaa" * 4096)
        ptr = block.ptr
        assert _device_bytes(sim, ptr, 4096) == b"\xaa" * 4096
        block.close()
        again = pool.malloc(4096)
        assert again.ptr == ptr
        assert _device_bytes(sim, ptr, 4096) == bytes(4096)
        again.copy_from(b"\xbb" * 4096, stream=stream)
        again.close()
        on_stream = pool.malloc(3000, stream=stream)  # zeroed by memset_async on the stream
        assert on_stream.ptr == ptr
        stream.synchronize()
        assert _device_bytes(sim, ptr, 3000) == bytes(3000)
        assert on_stream.to_bytes() == bytes(3000)
        on_stream.close()
        stream.close()


def test_a_block_freed_with_queued_work_goes_only_to_its_stream(sim):
    with asf.Device(0) as dev, asf.MemoryPool(dev) as pool:
        s, t = dev.stream(), dev.stream()
        block = pool.malloc(4096, stream=s)
        ptr = block.ptr
        with sim.hold_streams():
            block.copy_from(b"\x01" * 4096, stream=s)
            block.close()  # s still has the copy (and the zeroing) queued
            assert s.busy
            elsewhere = pool.malloc(4096, stream=t)
            synchronous = pool.malloc(4096)
            assert ptr not in (elsewhere.ptr, synchronous.ptr)
            same = pool.malloc(4096, stream=s)  # stream order makes this safe
            assert same.ptr == ptr
            same.close()
        assert not sim.violations()
        s.synchronize()
        later = pool.malloc(4096, stream=t)  # s's work is complete now
        assert later.ptr == ptr
        t.synchronize()
        assert later.to_bytes() == bytes(4096)
        for m in (later, elsewhere, synchronous):
            m.close()
        s.close()
        t.close()


def test_work_on_another_stream_also_holds_the_block_back(sim):
    with asf.Device(0) as dev, asf.MemoryPool(dev) as pool:
        s, t = dev.stream(), dev.stream()
        block = pool.malloc(4096, stream=s)
        s.synchronize()
        ptr = block.ptr
        with sim.hold_streams():
            block.copy_from(b"\x02" * 4096, stream=t)  # used on t, not its own stream
            block.close()
            on_s = pool.malloc(4096, stream=s)
            assert on_s.ptr != ptr
            on_t = pool.malloc(4096, stream=t)
            assert on_t.ptr == ptr
        t.synchronize()
        s.synchronize()
        assert on_t.to_bytes() == bytes(4096)
        on_s.close()
        on_t.close()
        s.close()
        t.close()


def test_release_cached_waits_for_streams_then_frees(sim):
    with asf.Device(0) as dev, asf.MemoryPool(dev) as pool:
        s = dev.stream()
        block = pool.malloc(1 << 16, stream=s)
        with sim.hold_streams():
            block.copy_from(bytes(1 << 16), stream=s)
            block.close()
        assert pool.release_cached() == 1 << 16  # synchronizes s before the free
        assert not s.busy
        assert pool.stats.cached == 0
        assert not sim.violations()
        s.close()


def test_limit_flushes_the_cache_then_refuses(sim):
    with asf.Device(0) as dev, asf.MemoryPool(dev, limit=8192) as pool:
        small = pool.malloc(4096)
        small.close()  # cached: 4096
        big = pool.malloc(8000)  # 8192 would pass the limit: the cache is flushed first
        assert pool.stats.cached == 0 and pool.stats.in_use == 8192
        with pytest.raises(asf.PoolLimitError, match="limit of 8192 bytes"):
            pool.malloc(1)
        big.close()
        with pytest.raises(ValueError, match="limit"):
            asf.MemoryPool(dev, limit=0)


def test_out_of_memory_flushes_the_cache_and_retries_once(sim):
    sim.configure(memory_per_device=4 << 20)
    asf.set_oom_policy("native")
    try:
        with asf.Device(0) as dev, asf.MemoryPool(dev) as pool:
            cached = [pool.malloc(1 << 20) for _ in range(3)]
            for m in cached:
                m.close()
            assert pool.stats.cached == 3 << 20
            big = pool.malloc(2 << 20)  # fits only once the cache is freed
            assert pool.stats.cached == 0 and pool.stats.in_use == 2 << 20
            big.close()
    finally:
        asf.set_oom_policy(None)


def test_memory_admission_flushes_the_pool_for_other_allocations(sim):
    sim.configure(run_mode=0, memory_per_device=4 << 20, rc_malloc_timeout=2.0)
    asf.set_oom_policy("raise")
    try:
        with asf.Device(0) as dev, asf.MemoryPool(dev) as pool:
            for m in [pool.malloc(1 << 20) for _ in range(3)]:
                m.close()
            with dev.malloc(3 << 20) as plain:  # admission asks the pool to let go first
                assert plain.size == 3 << 20
            assert pool.stats.cached == 0
    finally:
        asf.set_oom_policy(None)
    assert admission._release_cached(0, 1) == 0  # the closed pool unregistered itself


def test_blocks_are_device_children_closed_with_it(sim):
    dev = asf.Device(0)
    pool = asf.MemoryPool(dev)
    held = pool.malloc(100)
    pool.malloc(200).close()  # one cached
    kinds = sorted(type(r).__name__ for r in asf.live_resources())
    assert kinds == ["Device", "DeviceMemory", "DeviceMemory", "PooledMemory"]
    dev.close()
    assert held.closed
    assert asf.live_resources() == []
    assert sim.live_handles() == {}
    pool.close()


def test_threads_share_a_pool(sim):
    errors: list[BaseException] = []
    with asf.Device(0) as dev, asf.MemoryPool(dev) as pool:

        def work(n: int) -> None:
            try:
                for i in range(50):
                    m = pool.malloc(512 * (1 + (i + n) % 4))
                    assert m.to_bytes() == bytes(m.size)
                    m.copy_from(bytes([n + 1]) * m.size)
                    m.close()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert errors == []
        stats = pool.stats
        assert stats.in_use == 0
        assert stats.hits + stats.misses == 200
        assert stats.hits > 100


def test_closed_pool_refuses_and_frees_blocks_given_back(sim):
    with asf.Device(0) as dev:
        pool = asf.MemoryPool(dev)
        held = pool.malloc(100)
        pool.close()
        with pytest.raises(asf.ResourceClosedError, match="MemoryPool"):
            pool.malloc(100)
        held.close()  # freed, not cached
        assert pool.stats.cached == 0
        assert [type(r).__name__ for r in asf.live_resources()] == ["Device"]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_sizes_are_refused(sim, bad):
    with asf.Device(0) as dev, asf.MemoryPool(dev) as pool, pytest.raises((TypeError, ValueError)):
        pool.malloc(bad)


def test_a_dropped_block_warns_and_goes_back_to_the_pool(sim):
    import gc

    with asf.Device(0) as dev, asf.MemoryPool(dev) as pool:
        block = pool.malloc(100)
        ptr = block.ptr
        with pytest.warns(ResourceWarning, match="unclosed"):
            del block
            gc.collect()
        again = pool.malloc(100)
        assert again.ptr == ptr
        assert pool.stats.hits == 1
        again.close()


_EXIT_PROGRAM = """
import os, json, atexit
os.environ["ASCEND_SAFE_BACKEND"] = "sim"
import ascend_safe as asf
from ascend_safe import sim

def report():  # registered before pyacl is loaded: runs after the library's exit teardown
    with open(os.environ["REPORT"], "w") as fh:
        json.dump({"handles": sim.live_handles(),
                   "violations": [v.kind for v in sim.violations()]}, fh)
atexit.register(report)

sim.configure(async_delay=0.005)
dev = asf.Device(0)
pool = asf.MemoryPool(dev)
s = dev.stream()
held = pool.malloc(4096, stream=s)
held.copy_from(bytes(4096), stream=s)
freed = pool.malloc(1 << 16, stream=s)
freed.copy_from(bytes(1 << 16), stream=s)
freed.close()  # cached, with work still queued on s
"""


def test_exit_frees_live_and_cached_blocks_after_their_streams(tmp_path, sim):
    import json
    import os
    import subprocess
    import sys

    script = tmp_path / "prog.py"
    script.write_text(_EXIT_PROGRAM)
    report = tmp_path / "report.json"
    env = dict(os.environ, REPORT=str(report))
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "PooledMemory" in proc.stderr and "DeviceMemory" in proc.stderr  # leak-reported
    result = json.loads(report.read_text())
    assert result == {"handles": {}, "violations": []}

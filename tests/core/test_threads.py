"""Resources cross threads; concurrent closes free once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from threadhop import in_other_thread

import ascend_safe as asf


def test_create_in_one_thread_use_and_close_in_another(sim):
    with asf.Device(0) as dev:
        ctx = asf.Context(dev)
        s, mem = asf.Stream(ctx), asf.DeviceMemory(ctx, 64)

        def use():
            mem.copy_from(b"\x04" * 64, stream=s)
            s.synchronize()
            assert mem.to_bytes() == b"\x04" * 64
            s.close()
            mem.close()

        in_other_thread(use)
        assert s.closed and mem.closed
        d2 = dev.malloc(8)
        in_other_thread(d2.close)
        in_other_thread(ctx.close)
    assert sim.violations() == []


def test_concurrent_close_frees_once(sim):
    with asf.Device(0) as dev:
        for _ in range(20):
            objs = [dev.malloc(64), dev.stream(), dev.event(), dev.malloc_host(64)]
            barrier = threading.Barrier(4)

            def close_all(objs=objs, barrier=barrier):
                barrier.wait()
                for o in objs:
                    o.close()

            threads = [threading.Thread(target=close_all) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert all(o.closed for o in objs)
    assert sim.violations() == []
    assert sim.call_counts()["rt.free"] == 20
    assert sim.call_counts()["rt.destroy_stream"] == 20


def test_many_threads_allocate_and_copy(sim):
    with asf.Device(0) as dev:
        def work(i):
            with dev.stream() as s, dev.malloc(256) as m:
                data = bytes([i]) * 256
                m.copy_from(data, stream=s)
                out = bytearray(256)
                m.copy_to(out, stream=s)
                s.synchronize()
                assert out == data

        with ThreadPoolExecutor(8) as pool:
            for future in [pool.submit(work, i) for i in range(32)]:
                future.result()
        assert asf.live_resources() == [dev]

"""Quick per-call overhead of the hot path over the raw pyacl calls it makes.

Runs against an instant stand-in for pyacl (every call returns success at once, in pyacl's
return shapes), so what is measured is the library's own cost. Figures are medians of
interleaved library/raw batches, in microseconds and in units of E, one empty Python function
call measured in the same run. Usage: ``python benchmarks/overhead_quick.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import itertools
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
import types
from typing import Any, Callable

_handles = itertools.count(0x1000, 0x40)
_keep: list[Any] = []


def _alloc(size: int, *_: Any) -> tuple[int, int]:
    buf = ctypes.create_string_buffer(size + 64)
    _keep.append(buf)
    return (ctypes.addressof(buf) + 63) & ~63, 0


def _stub() -> types.ModuleType:
    """A module shaped like pyacl whose calls do nothing."""

    def ok(*_: Any) -> int:
        return 0

    def new(*_: Any) -> tuple[int, int]:
        return next(_handles), 0

    rt = types.SimpleNamespace(
        get_device_count=lambda: (1, 0), set_device=ok, reset_device=ok,
        get_context=new, set_context=ok, create_context=new, destroy_context=ok,
        create_stream=new, create_stream_with_config=new, destroy_stream=ok,
        synchronize_stream=ok, synchronize_stream_with_timeout=ok,
        stream_query=lambda *_: (0, 0), stream_wait_event=ok,
        create_event=new, create_event_with_flag=new, destroy_event=ok, record_event=ok,
        synchronize_event=ok, query_event_status=lambda *_: (1, 0),
        malloc=lambda size, policy: (next(_handles), 0), free=ok,
        malloc_host=_alloc, free_host=ok, memset=ok, memset_async=ok,
        memcpy=ok, memcpy_async=ok, synchronize_device=ok,
        get_mem_info=lambda *_: (1 << 34, 1 << 35, 0), get_run_mode=lambda: (1, 0),  # host
    )
    util = types.SimpleNamespace(bytes_to_ptr=lambda b: 0x2000)
    module = types.ModuleType("acl")
    module.rt = rt  # type: ignore[attr-defined]
    module.util = util  # type: ignore[attr-defined]
    module.init = ok  # type: ignore[attr-defined]
    module.finalize = ok  # type: ignore[attr-defined]
    module.get_soc_name = lambda: "Ascend910B1"  # type: ignore[attr-defined]
    module.get_recent_err_msg = lambda: ""  # type: ignore[attr-defined]
    module.create_data_buffer = lambda ptr, size: next(_handles)  # type: ignore[attr-defined]
    module.destroy_data_buffer = ok  # type: ignore[attr-defined]
    return module


def _install() -> types.ModuleType:
    os.environ.setdefault("ASCEND_SAFE_SLOT_DIR", tempfile.mkdtemp(prefix="ovh-slots-"))
    from ascend_safe import _backend

    stub = _stub()
    _backend._module = stub
    _backend._name = "acl"
    _backend._functions.clear()
    return stub


def _per_call(fn: Callable[[], object], n: int) -> float:
    start = time.process_time()  # CPU time: steadier than wall time on a shared machine
    for _ in range(n):
        fn()
    return (time.process_time() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    stub = _install()
    import ascend_safe as asf

    dev = asf.Device(0)
    stream = dev.stream()
    ev = dev.event()
    mem = dev.malloc(4096)
    data = bytes(4096)
    out = bytearray(4096)
    rt = stub.rt

    def empty() -> None:
        pass

    def raw_copy_from() -> None:
        rt.set_context(1)
        rt.memcpy(0x1000, 4096, stub.util.bytes_to_ptr(data), 4096, 1)

    def raw_copy_to() -> None:
        rt.set_context(1)
        rt.memcpy(stub.util.bytes_to_ptr(out), 4096, 0x1000, 4096, 2)

    def raw_to_bytes() -> None:
        b = bytearray(4096)
        rt.memcpy(stub.util.bytes_to_ptr(b), 4096, 0x1000, 4096, 2)
        bytes(b)

    def raw_record() -> None:
        rt.record_event(1, 2)

    def raw_sync() -> None:
        rt.synchronize_stream(1)

    def raw_ev_sync() -> None:
        rt.synchronize_event(1)

    def raw_stream_cc() -> None:
        h, _ = rt.create_stream()
        rt.destroy_stream(h)

    def raw_event_cc() -> None:
        h, _ = rt.create_event()
        rt.destroy_event(h)

    def raw_mem_cc() -> None:
        p, _ = rt.malloc(4096, 0)
        rt.memset(p, 4096, 0, 4096)
        rt.free(p)

    def raw_buf_cc() -> None:
        h = stub.create_data_buffer(0x1000, 4096)
        stub.destroy_data_buffer(h)

    def lib_stream_cc() -> None:
        asf.Stream(dev).close()

    def lib_event_cc() -> None:
        asf.Event(dev).close()

    def lib_mem_cc() -> None:
        asf.DeviceMemory(dev, 4096).close()

    def lib_buf_cc() -> None:
        asf.DataBuffer(mem).close()

    cases: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
        ("copy_from(bytes) 4 KiB sync", lambda: mem.copy_from(data), raw_copy_from),
        ("copy_to(bytearray) 4 KiB sync", lambda: mem.copy_to(out), raw_copy_to),
        ("to_bytes 4 KiB", mem.to_bytes, raw_to_bytes),
        ("Event.record", lambda: ev.record(stream), raw_record),
        ("Stream.synchronize idle", stream.synchronize, raw_sync),
        ("Event.synchronize", ev.synchronize, raw_ev_sync),
        ("create+close Stream", lib_stream_cc, raw_stream_cc),
        ("create+close Event", lib_event_cc, raw_event_cc),
        ("create+close DeviceMemory (zero-fill)", lib_mem_cc, raw_mem_cc),
        ("create+close DataBuffer", lib_buf_cc, raw_buf_cc),
    ]
    gc.collect()
    results: dict[str, tuple[list[float], list[float]]] = {c[0]: ([], []) for c in cases}
    e_times: list[float] = []
    for _ in range(args.rounds):
        e_times.append(_per_call(empty, args.n))
        for name, lib, raw in cases:
            results[name][0].append(_per_call(lib, args.n))
            results[name][1].append(_per_call(raw, args.n))
            _keep.clear()
    e = statistics.median(e_times)
    print(
        f"E (empty call) = {e * 1e9:.1f} ns; gc enabled, process CPU time; "
        f"{args.rounds} rounds x {args.n}"
    )
    print(f"{'operation':40s} {'lib us':>8s} {'raw us':>8s} {'over us':>8s} {'over E':>7s}")
    for name, (lib_t, raw_t) in results.items():
        diffs = [a - b for a, b in zip(lib_t, raw_t)]
        over = statistics.median(diffs)
        print(
            f"{name:40s} {statistics.median(lib_t) * 1e6:8.3f} "
            f"{statistics.median(raw_t) * 1e6:8.3f} {over * 1e6:8.3f} {over / e:7.1f}"
        )
    # heap per live object (tracemalloc), beyond the raw handle
    for label, make in (
        ("Stream", lambda: asf.Stream(dev)),
        ("Event", lambda: asf.Event(dev)),
        ("DeviceMemory", lambda: asf.DeviceMemory(dev, 64)),
        ("DataBuffer", lambda: asf.DataBuffer(mem)),
    ):
        objs = [make() for _ in range(50)]  # warm up
        for o in objs:
            o.close()
        del objs
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        objs = [make() for _ in range(1000)]
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        list_bytes = sys.getsizeof(objs)
        per = (after - before - list_bytes) / 1000
        print(f"heap per live {label}: {per:.0f} bytes (handle int ~28-32 bytes included)")
        for o in objs:
            o.close()
        del objs
    dev.close()


if __name__ == "__main__":
    main()

"""Library overhead against raw pyacl calls, measured side by side in one run.

Usage: ``python benchmarks/run.py [--repeat N]``. Runs on the backend that
``ASCEND_SAFE_BACKEND`` selects (the simulator by default here). Each case times the same work
done with raw ``acl`` calls and through ascend_safe, interleaved, and prints the median of each
and their ratio; absolute times depend on the machine, ratios are what to compare.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any, Callable

os.environ.setdefault("ASCEND_SAFE_BACKEND", "sim")

import ascend_safe as asf
from ascend_safe import _backend

SIZE = 4096


def _time(fn: Callable[[], None], inner: int) -> float:
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - start) / inner


Cases = dict[str, tuple[Callable[[], None], Callable[[], None]]]


def _cases(dev: asf.Device, acl: Any) -> tuple[Cases, Callable[[], None]]:
    stream = dev.stream()
    raw_stream, _ = acl.rt.create_stream()
    mem = dev.malloc(SIZE)
    raw_ptr, _ = acl.rt.malloc(SIZE, 0)
    payload = bytes(SIZE)
    host = bytearray(SIZE)

    def raw_alloc() -> None:
        ptr, _ret = acl.rt.malloc(SIZE, 0)
        acl.rt.memset(ptr, SIZE, 0, SIZE)
        acl.rt.free(ptr)

    def lib_alloc() -> None:
        asf.DeviceMemory(dev, SIZE).close()

    def raw_stream_cycle() -> None:
        s, _ret = acl.rt.create_stream()
        acl.rt.synchronize_stream(s)
        acl.rt.destroy_stream(s)

    def lib_stream_cycle() -> None:
        asf.Stream(dev).close()

    def raw_copy() -> None:
        ptr = acl.util.bytes_to_ptr(payload)
        acl.rt.memcpy(raw_ptr, SIZE, ptr, SIZE, 1)

    def lib_copy() -> None:
        mem.copy_from(payload)

    def raw_async_round_trip() -> None:
        acl.rt.memset_async(raw_ptr, SIZE, 1, SIZE, raw_stream)
        acl.rt.synchronize_stream(raw_stream)

    def lib_async_round_trip() -> None:
        mem.fill(1, stream=stream)
        stream.synchronize()

    raw_pinned, _ = acl.rt.malloc_host(SIZE)

    def raw_async_from_bytes() -> None:
        import ctypes

        ctypes.memmove(raw_pinned, payload, SIZE)  # a careful raw user reuses a pinned buffer
        acl.rt.memcpy_async(raw_ptr, SIZE, raw_pinned, SIZE, 1, raw_stream)
        acl.rt.synchronize_stream(raw_stream)

    def lib_async_from_bytes() -> None:
        mem.copy_from(payload, stream=stream)  # staged through the session's pinned pool
        stream.synchronize()

    def raw_readback() -> None:
        import ctypes

        window = (ctypes.c_char * SIZE).from_buffer(host)
        acl.rt.memcpy(ctypes.addressof(window), SIZE, raw_ptr, SIZE, 2)
        del window

    def lib_readback() -> None:
        mem.copy_to(host)

    def cleanup() -> None:
        acl.rt.free_host(raw_pinned)
        acl.rt.free(raw_ptr)
        acl.rt.destroy_stream(raw_stream)

    return {
        "malloc+memset+free 4 KiB": (raw_alloc, lib_alloc),
        "stream create+sync+destroy": (raw_stream_cycle, lib_stream_cycle),
        "memcpy host->device 4 KiB": (raw_copy, lib_copy),
        "memset_async+synchronize": (raw_async_round_trip, lib_async_round_trip),
        "memcpy device->host 4 KiB": (raw_readback, lib_readback),
        "async bytes->device+sync 4 KiB": (raw_async_from_bytes, lib_async_from_bytes),
    }, cleanup


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--inner", type=int, default=300)
    args = parser.parse_args()
    acl = _backend.acl()
    print(f"backend: {asf.backend_name()}; median of {args.repeat} runs x {args.inner} calls")
    print(f"{'case':<30} {'raw us':>9} {'lib us':>9} {'lib/raw':>8}")
    with asf.Device(0) as dev:
        cases, cleanup = _cases(dev, acl)
        for name, (raw, lib) in cases.items():
            raw_t, lib_t = [], []
            for _ in range(args.repeat):  # interleaved, so drift hits both alike
                raw_t.append(_time(raw, args.inner))
                lib_t.append(_time(lib, args.inner))
            r, lt = statistics.median(raw_t), statistics.median(lib_t)
            print(f"{name:<30} {r * 1e6:9.2f} {lt * 1e6:9.2f} {lt / r:8.2f}")
        cleanup()


if __name__ == "__main__":
    main()

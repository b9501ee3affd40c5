"""Python heap cost of holding open resources, side by side with raw pyacl handles.

Usage: ``python benchmarks/memory.py [--count N]``. Opens N small device allocations and N
streams, once as raw ``acl`` handles kept in lists, once as ascend_safe objects, and reports
the Python heap bytes per resource that ``tracemalloc`` sees for each (the simulator's own
bookkeeping is the same in both runs and is measured out by taking the raw run as baseline).
"""

from __future__ import annotations

import argparse
import gc
import os
import tracemalloc
from typing import Any, Callable

os.environ.setdefault("ASCEND_SAFE_BACKEND", "sim")

import ascend_safe as asf
from ascend_safe import _backend


def _heap_growth(make: Callable[[], Any]) -> tuple[int, Any]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    kept = make()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return grown, kept


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()
    n = args.count
    acl = _backend.acl()
    with asf.Device(0) as dev:

        def raw() -> tuple[list[int], list[int]]:
            ptrs = [acl.rt.malloc(64, 0)[0] for _ in range(n)]
            streams = [acl.rt.create_stream()[0] for _ in range(n)]
            return ptrs, streams

        def lib() -> tuple[list[asf.DeviceMemory], list[asf.Stream]]:
            return [dev.malloc(64) for _ in range(n)], [dev.stream() for _ in range(n)]

        raw_bytes, (ptrs, streams) = _heap_growth(raw)
        for p in ptrs:
            acl.rt.free(p)
        for s in streams:
            acl.rt.destroy_stream(s)
        lib_bytes, (mems, lib_streams) = _heap_growth(lib)
        for obj in [*mems, *lib_streams]:
            obj.close()
    per_raw = raw_bytes / (2 * n)
    per_lib = lib_bytes / (2 * n)
    print(f"{n} allocations + {n} streams held open (Python heap, tracemalloc)")
    print(f"  raw pyacl handles : {per_raw:8.0f} bytes per resource")
    print(f"  ascend_safe       : {per_lib:8.0f} bytes per resource")
    print(f"  library overhead  : {per_lib - per_raw:8.0f} bytes per resource "
          f"(ratio {per_lib / per_raw:.2f})")


if __name__ == "__main__":
    main()

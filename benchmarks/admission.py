"""Cost of memory admission's cross-process lock on an allocation.

Usage: ``python benchmarks/admission.py [--repeat N] [--inner N]``. On the simulator, times
``Device.malloc(4096)`` + ``close()`` under OOM policy ``raise`` in RC mode (check and call under
the per-device ``flock``), the same with the ``flock`` left out (what admission cost before it
served processes), and under ``native`` (no check), interleaved; prints the median of each and
the difference, which is what the lock costs. Absolute times depend on the machine.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import statistics
import time
from typing import Callable

os.environ.setdefault("ASCEND_SAFE_BACKEND", "sim")

import ascend_safe as asf
from ascend_safe import admission, sim

SIZE = 4096


def _per_call(fn: Callable[[], None], inner: int) -> float:
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - start) / inner


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--inner", type=int, default=2000)
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    cases: list[tuple[str, bool, str]] = [
        ("RC mode, raise (flock)", True, "raise"),
        ("RC mode, raise, no flock", False, "raise"),
        ("RC mode, native (no check)", True, "native"),
    ]
    sim.configure(run_mode=0)
    real_lock_file = admission._lock_file
    for _ in range(args.repeat):
        for name, lock, policy in cases:
            asf.set_oom_policy(policy)
            admission._lock_file = real_lock_file if lock else lambda device, device_id: -1
            with asf.Device(0) as dev:
                dev.malloc(SIZE).close()  # run mode asked, lock file opened

                def one(dev: asf.Device = dev) -> None:
                    dev.malloc(SIZE).close()

                results.setdefault(name, []).append(_per_call(one, args.inner))
                if lock and policy == "raise":
                    fd = next(iter(admission._lock_files.values()))

                    def pair(fd: int = fd) -> None:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        fcntl.flock(fd, fcntl.LOCK_UN)

                    results.setdefault("flock + unlock alone", []).append(
                        _per_call(pair, args.inner)
                    )
    admission._lock_file = real_lock_file
    asf.set_oom_policy(None)
    medians = {name: statistics.median(times) * 1e6 for name, times in results.items()}
    for name, us in medians.items():
        print(f"{name:32s} {us:8.2f} us")
    cost = medians[cases[0][0]] - medians[cases[1][0]]
    print(f"{'lock cost per allocation':32s} {cost:8.2f} us")


if __name__ == "__main__":
    main()

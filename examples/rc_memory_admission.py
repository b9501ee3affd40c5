"""Memory admission in RC mode: an allocation that does not fit, with ``asf.set_oom_policy``.

Runs on the built-in simulator configured as an RC-mode device (run mode ACL_DEVICE) with 1 MiB
of memory. In RC mode pyacl's ``malloc`` does not fail when memory runs out: it waits, without
limit, for memory to be freed. ascend_safe decides before the call instead.

Shows:
- the default in RC mode, ``raise``: ``OutOfDeviceMemoryError`` at once, saying what was asked,
  what is free and which allocations of this process are the largest;
- ``set_oom_policy("wait", timeout=...)``: the allocation waits until another thread frees
  memory (here, after 0.2 s), then succeeds;
- ``wait`` with nothing freed gives up after its timeout with the same error.
"""

from __future__ import annotations

import os

os.environ.setdefault("ASCEND_SAFE_BACKEND", "sim")

import threading
import time

import ascend_safe as asf
from ascend_safe import sim

MiB = 1 << 20


def main() -> None:
    if asf.backend_name() == "sim":
        sim.configure(run_mode=0, memory_per_device=MiB)  # an RC-mode device of 1 MiB
    with asf.Device(0) as dev:
        print("OOM policy set:", asf.get_oom_policy(dev), "(None: the default, raise in RC mode)")
        held = dev.malloc(700_000)

        # 1. raise (the RC-mode default): refused before pyacl is called
        try:
            dev.malloc(400_000)
        except asf.OutOfDeviceMemoryError as err:
            print(f"refused: {err.requested} bytes requested, {err.free} of {err.total} free")
            print("largest:", [text for text, _n in err.largest])

        # 2. wait: another thread frees the big block after 0.2 s
        asf.set_oom_policy("wait", timeout=10)
        freer = threading.Timer(0.2, held.close)
        freer.start()
        t0 = time.perf_counter()
        with dev.malloc(400_000) as mem:
            print(f"waited {time.perf_counter() - t0:.1f} s, then got {mem.size} bytes")
            # 3. wait with a timeout and nothing freed
            asf.set_oom_policy("wait", timeout=0.2)
            try:
                dev.malloc(900_000)
            except asf.OutOfDeviceMemoryError:
                print("gave up after the timeout")
        freer.join()
        asf.set_oom_policy(None)  # back to the environment / the default
    print(asf.leak_report())


if __name__ == "__main__":
    main()

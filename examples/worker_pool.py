"""A pool of worker processes spread over two devices, with error and leak handling.

Runs on the built-in simulator unless ASCEND_SAFE_BACKEND says otherwise (the simulator has two
devices by default).

Shows:
- ``@asf.worker()`` functions run in spawned worker processes (never forked), each holding one
  device session that ``asf.current_device()`` returns; ``worker_pool(workers, devices)``
  spreads the workers round-robin over the devices;
- arguments and results are data (bytes, numpy arrays): resource objects cannot be pickled;
- an ``AclError`` (or any exception) raised in a worker reaches the caller with its code;
- a worker call that leaves a resource open: the resource is released after the call, and
  with ``leaks="raise"`` the call fails with ``ResourceLeakError`` naming it.
"""

from __future__ import annotations

import collections
import os

os.environ.setdefault("ASCEND_SAFE_BACKEND", "sim")

import ascend_safe as asf

KEPT: list[asf.DeviceMemory] = []


@asf.worker()
def checksum(data: bytes) -> tuple[int, int, int]:
    """Round-trip *data* through device memory; return (device id, pid, checksum)."""
    dev = asf.current_device()
    with dev.stream() as s, dev.malloc(len(data)) as mem:
        mem.copy_from(data, stream=s)
        out = bytearray(len(data))
        mem.copy_to(out, stream=s)
        s.synchronize()
    return dev.id, os.getpid(), sum(out) % 65521


@asf.worker()
def bad_size(n: int) -> int:
    """Allocates more than the device has: pyacl's error comes back as an AclError."""
    with asf.current_device().malloc(n) as mem:
        return mem.size


@asf.worker(leaks="raise")
def leaky(n: int) -> int:
    """Forgets to close what it allocates (a bug): the call fails, the memory is released."""
    mem = asf.current_device().malloc(n)
    KEPT.append(mem)  # still referenced, so only the worker's leak check can release it
    return n


def main() -> None:
    batches = [bytes([i]) * 4096 for i in range(16)]
    with asf.worker_pool(workers=2, devices=[0, 1]) as pool:
        results = list(pool.map(checksum, batches))
        assert [r[2] for r in results] == [sum(b) % 65521 for b in batches]
        per_device = collections.Counter(dev for dev, _pid, _sum in results)
        print(f"{len(results)} batches on devices {sorted(per_device)}")

        try:
            pool.submit(bad_size, 1 << 40).result()
        except asf.AclError as err:  # here OutOfDeviceMemoryError, a subclass
            print(f"worker error: {type(err).__name__} code {err.code} from {err.api}")

        try:
            pool.submit(leaky, 1024).result()
        except asf.ResourceLeakError as err:
            print("leak caught:", str(err).splitlines()[0])

        # The pool still works after both failures.
        assert pool.submit(checksum, b"again").result()[2] == sum(b"again")
    print("pool closed; parent holds:", asf.leak_report())


if __name__ == "__main__":
    main()

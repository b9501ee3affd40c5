"""Basic copies: host bytes and numpy arrays in and out of device memory.

Runs on the built-in simulator unless ASCEND_SAFE_BACKEND says otherwise
(``ASCEND_SAFE_BACKEND=acl python examples/basic_copies.py`` on an NPU machine).

Shows: a device session, zero-filled allocations, synchronous copies from bytes, numpy and
other memory, offsets, ``fill``, reading back with ``to_bytes`` / ``to_numpy``, and that
nothing is left open at the end.
"""

from __future__ import annotations

import os

os.environ.setdefault("ASCEND_SAFE_BACKEND", "sim")

import numpy as np

import ascend_safe as asf


def main() -> None:
    with asf.Device(0) as dev:
        print(f"backend: {asf.backend_name()}, device {dev.id}")

        # Every allocation starts zero-filled (fill=<byte> for another value).
        with dev.malloc(64) as mem:
            assert mem.to_bytes() == bytes(64)

            mem.copy_from(b"hello, device")  # bytes-like in, at offset 0
            mem.copy_from(b"!!", offset=13)  # at an offset inside the memory
            print("read back:", mem.to_bytes(15))  # b'hello, device!!'

            # numpy in and out (a copy; dtype and shape describe the bytes)
            x = np.arange(8, dtype=np.float32)
            mem.copy_from(x)
            y = mem.to_numpy(np.float32, (8,))
            assert np.array_equal(x, y)

            # device to device, and into a writable host buffer
            with dev.malloc(64, fill=0xFF) as other:
                other.copy_from(mem, nbytes=32)
                out = bytearray(64)
                other.copy_to(out)
                assert out[:32] == mem.to_bytes(32) and out[32:] == b"\xff" * 32

            mem.fill(7)
            assert mem.to_bytes(4) == b"\x07" * 4

        # Page-locked host memory is a memory object too.
        with dev.malloc_host(16) as pinned:
            pinned.copy_from(b"pinned host data")
            print("pinned:", pinned.to_bytes())

    print(asf.leak_report())


if __name__ == "__main__":
    main()

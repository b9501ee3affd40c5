"""A raw pyacl program: upload a batch, copy it on the device, download it (see its port,
``safe_copy_pipeline.py``, which does the same with ascend_safe).

Written the way pyacl programs usually are: integer handles, return codes checked by hand, a
teardown list at the end. It runs on the simulator (``ascend_safe.sim.install()`` makes
``import acl`` load it) unless ASCEND_SAFE_BACKEND=acl, and then prints what the simulator saw.

What this style gets wrong, even when it looks careful (each is marked below with [n]):
1. an error half-way raises past the teardown: everything created so far leaks (and the device
   stays set) because the cleanup is not in ``finally`` blocks in reverse order;
2. ``malloc`` returns uninitialised memory; reading it before writing returns stale data
   (possibly another tenant's);
3. async copies need page-locked host memory (``malloc_host``) and the stream synchronized
   before the host bytes are read or freed; nothing checks either;
4. after ``destroy_stream`` the variable still holds the old integer, and ``0`` silently means
   "the default stream": a later use goes to the wrong place instead of failing;
5. teardown order (free memory, destroy streams, then the context, reset the device, finalize)
   is the programmer's job, and return codes of the teardown calls are usually ignored.
"""

from __future__ import annotations

import os
import sys

if os.environ.setdefault("ASCEND_SAFE_BACKEND", "sim") == "sim":
    from ascend_safe import sim

    sim.install()  # `import acl` now loads the simulator

import acl

ACL_MEM_MALLOC_HUGE_FIRST = 0
ACL_MEMCPY_HOST_TO_DEVICE = 1
ACL_MEMCPY_DEVICE_TO_HOST = 2
ACL_MEMCPY_DEVICE_TO_DEVICE = 3
DEVICE_ID = 0
SIZE = 4096


def check_ret(what: str, ret: int) -> None:
    if ret != 0:
        raise RuntimeError(f"{what} failed with {ret}: {acl.get_recent_err_msg()}")


def main() -> None:
    check_ret("acl.init", acl.init())
    check_ret("acl.rt.set_device", acl.rt.set_device(DEVICE_ID))
    context, ret = acl.rt.create_context(DEVICE_ID)
    check_ret("acl.rt.create_context", ret)
    stream, ret = acl.rt.create_stream()
    check_ret("acl.rt.create_stream", ret)

    # [1] from here on, any check_ret that raises leaks everything above it
    dev_in, ret = acl.rt.malloc(SIZE, ACL_MEM_MALLOC_HUGE_FIRST)
    check_ret("acl.rt.malloc", ret)
    dev_out, ret = acl.rt.malloc(SIZE, ACL_MEM_MALLOC_HUGE_FIRST)
    check_ret("acl.rt.malloc", ret)
    # [2] dev_out holds whatever was there before; memset it (count, value, dest_max order!)
    check_ret("acl.rt.memset", acl.rt.memset(dev_out, SIZE, 0, SIZE))
    host, ret = acl.rt.malloc_host(SIZE)  # [3] pinned memory for the async copies
    check_ret("acl.rt.malloc_host", ret)

    batch = bytes(range(256)) * (SIZE // 256)
    src = acl.util.bytes_to_ptr(batch)
    check_ret("memcpy", acl.rt.memcpy(host, SIZE, src, SIZE, ACL_MEMCPY_HOST_TO_DEVICE))
    check_ret("memcpy_async", acl.rt.memcpy_async(
        dev_in, SIZE, host, SIZE, ACL_MEMCPY_HOST_TO_DEVICE, stream))
    check_ret("memcpy_async", acl.rt.memcpy_async(
        dev_out, SIZE, dev_in, SIZE, ACL_MEMCPY_DEVICE_TO_DEVICE, stream))
    check_ret("memcpy_async", acl.rt.memcpy_async(
        host, SIZE, dev_out, SIZE, ACL_MEMCPY_DEVICE_TO_HOST, stream))
    check_ret("synchronize_stream", acl.rt.synchronize_stream(stream))  # [3] before reading host
    result = acl.util.ptr_to_bytes(host, SIZE)
    assert result == batch
    print("round trip ok:", len(result), "bytes")

    # [5] teardown in the right order, by hand; [4] the variables keep their stale values
    acl.rt.free_host(host)
    acl.rt.free(dev_out)
    acl.rt.free(dev_in)
    acl.rt.destroy_stream(stream)
    acl.rt.destroy_context(context)
    acl.rt.reset_device(DEVICE_ID)
    acl.finalize()


if __name__ == "__main__":
    main()
    if os.environ["ASCEND_SAFE_BACKEND"] == "sim":
        print("simulator: live handles", len(sim.live_handles()),
              "violations", len(sim.violations()))
    sys.exit(0)

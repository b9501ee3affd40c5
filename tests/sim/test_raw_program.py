"""A raw pyacl program, written like the official samples, runs unchanged on the simulator."""

from __future__ import annotations

from ascend_safe import sim

ACL_SUCCESS = 0
ACL_MEM_MALLOC_NORMAL_ONLY = 2
ACL_MEMCPY_HOST_TO_DEVICE = 1
ACL_MEMCPY_DEVICE_TO_HOST = 2
ACL_MEMCPY_DEVICE_TO_DEVICE = 3
DEVICE_ID = 0
SIZE = 1024


def check_ret(message: str, ret: int) -> None:
    if ret != ACL_SUCCESS:
        raise Exception(f"{message} failed ret={ret}")


def _program() -> bytes:
    import acl

    check_ret("acl.init", acl.init())
    check_ret("acl.rt.set_device", acl.rt.set_device(DEVICE_ID))
    context, ret = acl.rt.create_context(DEVICE_ID)
    check_ret("acl.rt.create_context", ret)
    stream, ret = acl.rt.create_stream()
    check_ret("acl.rt.create_stream", ret)

    host_in, ret = acl.rt.malloc_host(SIZE)
    check_ret("acl.rt.malloc_host", ret)
    host_out, ret = acl.rt.malloc_host(SIZE)
    check_ret("acl.rt.malloc_host", ret)
    dev_a, ret = acl.rt.malloc(SIZE, ACL_MEM_MALLOC_NORMAL_ONLY)
    check_ret("acl.rt.malloc", ret)
    dev_b, ret = acl.rt.malloc(SIZE, ACL_MEM_MALLOC_NORMAL_ONLY)
    check_ret("acl.rt.malloc", ret)
    check_ret("acl.rt.memset", acl.rt.memset(dev_a, SIZE, 0, SIZE))
    check_ret("acl.rt.memset", acl.rt.memset(dev_b, SIZE, 0, SIZE))

    data = bytes(i % 251 for i in range(SIZE))
    check_ret(
        "acl.rt.memcpy",
        acl.rt.memcpy(dev_a, SIZE, acl.util.bytes_to_ptr(data), SIZE, ACL_MEMCPY_HOST_TO_DEVICE),
    )
    check_ret(
        "acl.rt.memcpy",
        acl.rt.memcpy(dev_b, SIZE, dev_a, SIZE, ACL_MEMCPY_DEVICE_TO_DEVICE),
    )
    check_ret(
        "acl.rt.memcpy_async",
        acl.rt.memcpy_async(host_out, SIZE, dev_b, SIZE, ACL_MEMCPY_DEVICE_TO_HOST, stream),
    )
    check_ret("acl.rt.synchronize_stream", acl.rt.synchronize_stream(stream))
    result = acl.util.ptr_to_bytes(host_out, SIZE)

    check_ret("acl.rt.free", acl.rt.free(dev_a))
    check_ret("acl.rt.free", acl.rt.free(dev_b))
    check_ret("acl.rt.free_host", acl.rt.free_host(host_in))
    check_ret("acl.rt.free_host", acl.rt.free_host(host_out))
    check_ret("acl.rt.destroy_stream", acl.rt.destroy_stream(stream))
    check_ret("acl.rt.destroy_context", acl.rt.destroy_context(context))
    check_ret("acl.rt.reset_device", acl.rt.reset_device(DEVICE_ID))
    check_ret("acl.finalize", acl.finalize())
    return result


def test_raw_program_moves_real_data() -> None:
    sim.configure(async_delay=0.001)
    sim.install()
    try:
        result = _program()
    finally:
        sim.uninstall()
    assert result == bytes(i % 251 for i in range(SIZE))
    assert sim.live_handles() == {}
    assert sim.violations() == []
    counts = sim.call_counts()
    assert counts["rt.memcpy_async"] == 1 and counts["rt.malloc"] == 2

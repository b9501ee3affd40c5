"""Memory: padded extent, alignment, ``get_mem_info`` accounting, data movement, exhaustion."""

from __future__ import annotations

import ctypes
from typing import Any

from ._case import DEVICE_TO_DEVICE, HOST_TO_DEVICE, HOST_TO_HOST, NotApplicable, Probe, case

PADDING = "pyacl malloc docs and src/runtime (device memory): sizes are rounded up to 32 "
MB = 1 << 20


@case(
    "rt.malloc.padded_extent_usable",
    "memory",
    expect=[0, True],
    evidence=PADDING + "plus 32 bytes, and copies are checked against destMax only: malloc(100) "
    "has a usable extent of 160 bytes (the simulator records a violation past 100)",
)
def _padding(p: Probe) -> Any:
    dev = p.malloc(100)
    data = bytes(range(160))
    src = p.pageable(data)
    ret = p.acl.rt.memcpy(dev, 160, src, 160, HOST_TO_DEVICE)
    return [ret, ret == 0 and p.read_device(dev, 160) == data]


@case(
    "rt.malloc_align32.padded_extent_usable",
    "memory",
    expect=0,
    evidence=PADDING + "with no extra 32 for malloc_align32: malloc_align32(100) spans 128 bytes",
)
def _padding32(p: Probe) -> Any:
    ptr: int = p.ok("rt.malloc_align32", 100, 0)
    p.defer(p.acl.rt.free, ptr)
    src = p.pageable(bytes(128))
    return p.acl.rt.memcpy(ptr, 128, src, 128, HOST_TO_DEVICE)


@case(
    "rt.malloc.alignment",
    "memory",
    expect=[True, True, True],
    evidence="pyacl malloc docs: the start address is 64-byte aligned",
)
def _alignment(p: Probe) -> Any:
    return [p.malloc(size) % 64 == 0 for size in (1, 100, 4097)]


@case(
    "rt.get_mem_info.counts_allocations",
    "memory",
    expect=[True, True],
    evidence="pyacl get_mem_info docs: free memory of the current device; an allocation lowers "
    "it by at least its size and a free gives it back (other processes may move it too)",
)
def _mem_info(p: Probe) -> Any:
    rt = p.acl.rt
    before, total = p.ok("rt.get_mem_info", 1)
    ptr = p.ok("rt.malloc", 8 * MB, 0)
    freed = [False]
    p.defer(lambda: freed[0] or rt.free(ptr))
    during, _ = p.ok("rt.get_mem_info", 1)
    rt.free(ptr)
    freed[0] = True
    after, _ = p.ok("rt.get_mem_info", 1)
    p.note("free_before_during_after", [before, during, after])
    p.note("total", total)
    return [before - during >= 8 * MB, after > during]


@case(
    "rt.memset.fills",
    "memory",
    expect=True,
    evidence="pyacl memset docs: sets count bytes to value",
)
def _memset(p: Probe) -> Any:
    dev = p.malloc(256)
    p.ok("rt.memset", dev, 256, 0xAB, 256)
    return p.read_device(dev, 256) == b"\xab" * 256


@case(
    "rt.memcpy.device_to_device",
    "memory",
    expect=True,
    evidence="pyacl memcpy docs: synchronous copy between device buffers",
)
def _d2d(p: Probe) -> Any:
    a, b = p.malloc(512), p.malloc(512)
    data = bytes((i * 3) & 0xFF for i in range(512))
    p.write_device(a, data)
    p.ok("rt.memcpy", b, 512, a, 512, DEVICE_TO_DEVICE)
    return p.read_device(b, 512) == data


@case(
    "rt.memcpy.host_to_host",
    "memory",
    expect=[0, True],
    evidence="pyacl memcpy docs: host-to-host copies are synchronous memcpy",
)
def _h2h(p: Probe) -> Any:
    data = b"host to host" * 8
    src = p.pageable(data)
    dst = p.pageable(bytes(len(data)))
    ret = p.acl.rt.memcpy(dst, len(data), src, len(data), HOST_TO_HOST)
    return [ret, ctypes.string_at(dst, len(data)) == data]


@case(
    "rt.malloc_host.readable_from_host",
    "memory",
    expect=True,
    evidence="pyacl malloc_host docs: pinned host memory the host reads and writes directly",
)
def _host(p: Probe) -> Any:
    ptr = p.malloc_host(64)
    ctypes.memset(ptr, 0x11, 64)
    return ctypes.string_at(ptr, 64) == b"\x11" * 64


@case(
    "rt.malloc.exhaustion",
    "memory",
    expect=207001,
    risky=True,
    timeout=120.0,
    evidence="pyacl Restrictions page and OOM troubleshooting: running out of device memory "
    "gives ACL_ERROR_RT_MEMORY_ALLOCATION (in RC mode malloc blocks instead)",
)
def _exhaustion(p: Probe) -> Any:
    rt = p.acl.rt
    _, total = p.ok("rt.get_mem_info", 1)
    chunk = max(MB, total // 8)
    for _ in range(int(total // chunk) + 4):
        ptr, ret = rt.malloc(chunk, 0)
        if ret != 0:
            return ret
        p.defer(rt.free, ptr)
    return "every allocation succeeded"


#: The memory kind of each SoC family: its device memory is HBM or DDR (acl_rt.h
#: aclrtMemAttr: ACL_DDR_MEM 0, ACL_HBM_MEM 1).
_SOC_MEMORY = (("Ascend910", 1), ("Ascend310", 0))


@case(
    "rt.get_mem_info.memory_kind_of_the_soc",
    "memory",
    expect=[True, 0, 0],
    evidence="src/runtime/api/impl/api_error.cc MemGetInfoEx: the driver reports the memory "
    "kind the SoC has (HBM on Ascend910 parts, DDR on Ascend310 parts); the other kind has no "
    "memory, so its total is 0",
)
def _mem_kind(p: Probe) -> Any:
    soc = p.acl.get_soc_name() or ""
    kind = next((k for prefix, k in _SOC_MEMORY if soc.startswith(prefix)), None)
    if kind is None:
        raise NotApplicable(f"SoC {soc!r}: which memory kind it has is not known to the kit")
    p.note("soc", soc)
    free, total, ret = p.acl.rt.get_mem_info(kind)
    _, other_total, other_ret = p.acl.rt.get_mem_info(1 - kind)
    return [ret == 0 and 0 < free <= total, other_total, other_ret]


@case(
    "util.ptr_to_bytes.device_memory_in_rc_mode",
    "memory",
    expect=True,
    evidence="python/pyACL util/bytes_convert.cpp: ptr_to_bytes wraps the address; in RC mode "
    "(run mode 0) device memory is the host's, so the bytes are readable",
)
def _rc_ptr_to_bytes(p: Probe) -> Any:
    run_mode = p.ok("rt.get_run_mode")
    if run_mode != 0:
        raise NotApplicable("host mode: a device address is not readable from the host")
    dev = p.malloc(64)
    p.ok("rt.memset", dev, 64, 0x42, 64)
    return bool(p.acl.util.ptr_to_bytes(dev, 64) == b"\x42" * 64)


@case(
    "util.ptr_to_bytes.null",
    "memory",
    expect=["bytes", 16],
    phase="bare",
    evidence="python/pyACL util/bytes_convert.cpp: PyBytes_FromStringAndSize(NULL, size) makes "
    "a new bytes object of size unset bytes, not an error",
)
def _null_ptr_to_bytes(p: Probe) -> Any:
    data = p.acl.util.ptr_to_bytes(0, 16)
    return [type(data).__name__, len(data)]


@case(
    "util.ptr_to_numpy.device_memory_in_rc_mode",
    "memory",
    expect=[66, 66, 66, 66],
    evidence="python/pyACL util/numpy_convert.cpp: ptr_to_numpy wraps the address in an array "
    "without copying; in RC mode (run mode 0) device memory is the host's",
)
def _rc_ptr_to_numpy(p: Probe) -> Any:
    run_mode = p.ok("rt.get_run_mode")
    if run_mode != 0:
        raise NotApplicable("host mode: a device address is not readable from the host")
    try:
        import numpy  # noqa: F401  (ptr_to_numpy returns a numpy array)
    except ImportError:
        raise NotApplicable("numpy is not installed") from None
    dev = p.malloc(64)
    p.ok("rt.memset", dev, 64, 0x42, 64)
    return [int(v) for v in p.acl.util.ptr_to_numpy(dev, (4,), 2)]  # NPY_UBYTE


@case(
    "media.dvpp_malloc.extent_rounded_to_32",
    "memory",
    expect=[0, True],
    evidence="src/runtime/api/impl/api_impl.cc DevDvppMalloc: the size is rounded up to 32 "
    "(no padding): dvpp_malloc(100) spans 128 bytes",
)
def _dvpp_extent(p: Probe) -> Any:
    ptr: int = p.ok("media.dvpp_malloc", 100)
    p.defer(p.acl.media.dvpp_free, ptr)
    data = bytes(range(128))
    ret = p.acl.rt.memcpy(ptr, 128, p.pageable(data), 128, HOST_TO_DEVICE)
    return [ret, ret == 0 and p.read_device(ptr, 128) == data]

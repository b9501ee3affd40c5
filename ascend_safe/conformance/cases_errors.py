"""Return codes of documented error paths: size 0, null and stale handles, double free and
destroy, out-of-range values, timeouts, wrong context, refcounts.

Cases that touch a destroyed handle run in a child process: on hardware a stale handle is a
dangling runtime pointer, and a crash must cost only that case.
"""

from __future__ import annotations

import threading
from typing import Any

from ._case import HOST_TO_DEVICE, Probe, case

API_ERROR = "src/runtime/api/impl/api_error.cc: "
ACL_MEMORY = "src/acl/aclrt_impl/memory.cpp: "
SIM_CHOICE = "undocumented; the code the simulator chose (docs/simulator.md)"

# ---------------------------------------------------------------------------- null and zero


@case(
    "rt.malloc.size_zero",
    "error-codes",
    expect=[[0, 100000], [0, 100000]],
    evidence=ACL_MEMORY + "aclrtMalloc/aclrtMallocHost check size 0 -> ACL_ERROR_INVALID_PARAM",
)
def _malloc_zero(p: Probe) -> Any:
    rt = p.acl.rt
    out = []
    for result, free in ((rt.malloc(0, 0), rt.free), (rt.malloc_host(0), rt.free_host)):
        if result[1] == 0:
            p.defer(free, result[0])
        out.append(list(result))
    return out


@case(
    "rt.null_handles",
    "error-codes",
    expect=[100000] * 6,
    evidence="src/acl/aclrt_impl/{memory,stream,event,context}.cpp: null pointer and handle "
    "checks -> ACL_ERROR_INVALID_PARAM",
)
def _null_handles(p: Probe) -> Any:
    rt = p.acl.rt
    return [
        rt.free(0),
        rt.free_host(0),
        rt.destroy_stream(0),
        rt.destroy_event(0),
        rt.destroy_context(0),
        rt.set_context(0),
    ]


@case(
    "rt.memcpy.null_pointer",
    "error-codes",
    expect=100000,
    evidence=ACL_MEMORY + "aclrtMemcpy null dst -> ACL_ERROR_INVALID_PARAM",
)
def _memcpy_null(p: Probe) -> Any:
    src = p.pageable(b"x" * 64)
    return p.acl.rt.memcpy(0, 64, src, 64, HOST_TO_DEVICE)


@case(
    "rt.memcpy.count_zero",
    "error-codes",
    expect=0,
    evidence=ACL_MEMORY + "aclrtMemcpy returns success for count 0 before checking pointers",
)
def _memcpy_zero(p: Probe) -> Any:
    return p.acl.rt.memcpy(0, 0, 0, 0, HOST_TO_DEVICE)


# ---------------------------------------------------------------------------- out of range


@case(
    "rt.set_device.out_of_range",
    "error-codes",
    expect=107001,
    evidence="src/runtime/api/impl/api_error.cc: device id >= count -> RT_ERROR_DEVICE_ID "
    "(ACL_ERROR_RT_INVALID_DEVICEID)",
)
def _device_range(p: Probe) -> Any:
    count = p.ok("rt.get_device_count")
    ret = p.acl.rt.set_device(count)
    if ret == 0:
        p.defer(p.acl.rt.reset_device, count)
    return ret


@case(
    "rt.create_context.out_of_range",
    "error-codes",
    expect=[0, 107001],
    evidence="src/runtime/api/impl/api_error.cc: device id >= count -> RT_ERROR_DEVICE_ID "
    "(ACL_ERROR_RT_INVALID_DEVICEID)",
)
def _context_range(p: Probe) -> Any:
    count = p.ok("rt.get_device_count")
    previous = p.current_context()
    result = p.acl.rt.create_context(count)
    if result[1] == 0:
        p.defer(p.acl.rt.destroy_context, result[0])
        p.defer(p.acl.rt.set_context, previous)
    return list(result)


@case(
    "rt.create_stream_with_config.out_of_range",
    "error-codes",
    expect=[0, 0],
    evidence="pyacl create_stream_with_config docs: a priority above 7 is clamped, an unknown "
    "flag behaves like create_stream",
)
def _stream_config_range(p: Probe) -> Any:
    out = []
    for priority, flag in ((99, 0), (0, 0x400)):
        stream, ret = p.acl.rt.create_stream_with_config(priority, flag)
        if ret == 0:
            p.defer(p.acl.rt.destroy_stream, stream)
        out.append(ret)
    return out


@case(
    "rt.memcpy.kind_out_of_range",
    "error-codes",
    expect=100000,
    evidence=ACL_MEMORY + "MemcpyKindTranslate: a kind outside the enum -> ACL_ERROR_INVALID_PARAM",
)
def _memcpy_kind(p: Probe) -> Any:
    dev = p.malloc(64)
    src = p.pageable(b"x" * 64)
    return p.acl.rt.memcpy(dev, 64, src, 64, 8)


@case(
    "rt.get_mem_info.unknown_attribute",
    "error-codes",
    expect=[0, 0, 107016],
    evidence=API_ERROR + "MemGetInfo: an attribute outside aclrtMemAttr -> "
    "RT_ERROR_INVALID_MEMORY_TYPE (107016)",
)
def _mem_attr(p: Probe) -> Any:
    return list(p.acl.rt.get_mem_info(18))


@case(
    "get_cann_version.unknown_package",
    "error-codes",
    expect=[
        {
            "major_version": "",
            "minor_version": "",
            "patch_version": "",
            "release_version": "",
            "reserved": "",
            "version": "",
        },
        100000,
    ],
    evidence="src/acl/aclrt_impl/acl.cpp: aclsysGetCANNVersion package name out of "
    "aclCANNPackageName -> ACL_ERROR_INVALID_PARAM; python/pyACL py_init_acl.cpp "
    "(WrapAclsysGetCANNVersion, GetPyDictFromVersion) builds the dict from the zeroed version "
    "struct whatever ret is, so a failure returns six empty strings, not None",
)
def _cann_pkg(p: Probe) -> Any:
    return list(p.acl.get_cann_version(8))


@case(
    "rt.memcpy.count_over_max",
    "error-codes",
    expect=107000,
    evidence=API_ERROR + "MemCopySync: cnt > destMax -> RT_ERROR_INVALID_VALUE (107000)",
)
def _memcpy_over(p: Probe) -> Any:
    dev = p.malloc(256)
    src = p.pageable(b"x" * 128)
    return p.acl.rt.memcpy(dev, 64, src, 128, HOST_TO_DEVICE)


@case(
    "rt.memset_async.count_over_max",
    "error-codes",
    expect=107000,
    evidence=API_ERROR + "MemsetAsync: cnt > destMax -> RT_ERROR_INVALID_VALUE (107000)",
)
def _memset_over(p: Probe) -> Any:
    dev = p.malloc(256)
    stream = p.stream()
    return p.acl.rt.memset_async(dev, 64, 0, 128, stream)


@case(
    "rt.malloc.minus_one",
    "error-codes",
    expect=[0, 100000],
    evidence="pyACL parses size with 'k' (-1 wraps to 2**64-1); "
    + ACL_MEMORY
    + "aclrtMalloc rejects the wrapped size -> ACL_ERROR_INVALID_PARAM",
)
def _malloc_minus_one(p: Probe) -> Any:
    result = p.acl.rt.malloc(-1, 0)
    if result[1] == 0:
        p.defer(p.acl.rt.free, result[0])
    return list(result)


# ---------------------------------------------------------------------------- timeouts


def _timeouts(p: Probe, timeout: int) -> list[int]:
    rt = p.acl.rt
    stream = p.stream()
    event = p.event()
    p.ok("rt.record_event", event, stream)
    p.ok("rt.synchronize_stream", stream)
    return [
        rt.synchronize_stream_with_timeout(stream, timeout),
        rt.synchronize_event_with_timeout(event, timeout),
        rt.synchronize_device_with_timeout(timeout),
    ]


@case(
    "rt.synchronize_with_timeout.zero_timeout",
    "error-codes",
    expect=[107000, 107000, 107000],
    evidence=API_ERROR + "StreamSynchronize/EventSynchronize/DeviceSynchronize: (timeout < -1) "
    "|| (timeout == 0) -> RT_ERROR_INVALID_VALUE (107000)",
)
def _timeout_zero(p: Probe) -> Any:
    return _timeouts(p, 0)


@case(
    "rt.synchronize_with_timeout.below_minus_one",
    "error-codes",
    expect=[107000, 107000, 107000],
    evidence=API_ERROR + "timeout < -1 -> RT_ERROR_INVALID_VALUE (107000)",
)
def _timeout_negative(p: Probe) -> Any:
    return _timeouts(p, -2)


@case(
    "rt.synchronize_with_timeout.forever_and_positive",
    "error-codes",
    expect=[[0, 0, 0], [0, 0, 0]],
    evidence=API_ERROR + "timeout -1 waits without limit, > 0 is milliseconds",
)
def _timeout_valid(p: Probe) -> Any:
    return [_timeouts(p, -1), _timeouts(p, 5000)]


# ---------------------------------------------------------------------------- contexts


@case(
    "rt.wrong_context",
    "error-codes",
    expect=[107003, 107003, 107003, 0],
    evidence="src/runtime/api/impl/api_impl.cc: a stream of another context on memcpy_async, "
    "memset_async, record_event -> RT_ERROR_STREAM_CONTEXT (107003); StreamSynchronize "
    "switches to the stream's context and waits instead",
)
def _wrong_context(p: Probe) -> Any:
    rt = p.acl.rt
    first = p.context()
    stream = p.stream()  # belongs to `first`
    # Destroy the stream with `first` current, whatever the probe left current.
    p.defer(rt.set_context, first)
    p.context()  # a second context is now current
    dev = p.malloc(256)
    host = p.malloc_host(256)
    event = p.event()
    return [
        rt.memcpy_async(dev, 256, host, 256, HOST_TO_DEVICE, stream),
        rt.memset_async(dev, 256, 0, 256, stream),
        rt.record_event(event, stream),
        rt.synchronize_stream(stream),
    ]


@case(
    "rt.destroy_context.default_context",
    "error-codes",
    expect=107002,
    evidence="src/acl/aclrt_impl/context.cpp and src/runtime/core/src/runtime.cc: the default "
    "context of a device cannot be destroyed -> ACL_ERROR_RT_CONTEXT_NULL (107002)",
)
def _destroy_default(p: Probe) -> Any:
    ctx = p.ok("rt.get_context")
    return p.acl.rt.destroy_context(ctx)


@case(
    "rt.no_context",
    "error-codes",
    expect=[[0, 107002], [0, 107002], [0, 107002], [0, 107002]],
    phase="init",
    evidence=SIM_CHOICE + " (runtime: no current context -> RT_ERROR_CONTEXT_NULL)",
)
def _no_context(p: Probe) -> Any:
    rt = p.acl.rt
    out = []
    for result, free in (
        (rt.get_context(), None),
        (rt.get_device(), None),
        (rt.create_stream(), rt.destroy_stream),
        (rt.malloc(64, 0), rt.free),
    ):
        if result[1] == 0 and free is not None:
            p.defer(free, result[0])
        out.append(list(result))
    return out


@case(
    "rt.reset_device.refcount_zero",
    "error-codes",
    expect=[507007, 507007],
    phase="init",
    evidence="src/runtime/core/src/runtime.cc and " + API_ERROR + "resetting a device whose "
    "set_device refcount is 0 -> ACL_ERROR_RT_CONTEXT_RELEASE_ERROR (507007)",
)
def _reset_zero(p: Probe) -> Any:
    return [p.acl.rt.reset_device(p.device), p.acl.rt.reset_device_force(p.device)]


# ---------------------------------------------------------------------------- events


@case(
    "rt.event_elapsed_time.unrecorded",
    "error-codes",
    expect=[0.0, 507000],
    evidence=API_ERROR + "EventElapsedTime on events never recorded -> "
    "ACL_ERROR_RT_INTERNAL_ERROR (507000)",
)
def _elapsed_unrecorded(p: Probe) -> Any:
    start, end = p.event(), p.event()
    return list(p.acl.rt.event_elapsed_time(start, end))


# ---------------------------------------------------------------------------- stale handles


def _stale(p: Probe, create: str, destroy: str, *args: Any) -> list[int]:
    """Create with *create*, destroy twice with *destroy*; the two return codes."""
    handle = p.ok(create, *args)
    alive = [True]
    p.defer(lambda: alive and p.fn(destroy)(handle))
    first = p.fn(destroy)(handle)
    if first == 0:
        alive.clear()
    return [first, p.fn(destroy)(handle)]


@case(
    "rt.free.double_free",
    "error-codes",
    expect=[0, 207002],
    isolated=True,
    evidence=SIM_CHOICE + " (runtime free of an address it does not hold -> RT_ERROR_MEMORY_FREE)",
)
def _double_free(p: Probe) -> Any:
    return _stale(p, "rt.malloc", "rt.free", 256, 0)


@case(
    "rt.free_host.double_free",
    "error-codes",
    expect=[0, 207002],
    isolated=True,
    evidence=SIM_CHOICE,
)
def _double_free_host(p: Probe) -> Any:
    return _stale(p, "rt.malloc_host", "rt.free_host", 256)


@case(
    "rt.destroy_stream.twice",
    "error-codes",
    expect=[0, 107017],
    isolated=True,
    evidence=SIM_CHOICE + " (runtime: RT_ERROR_INVALID_HANDLE family)",
)
def _stream_twice(p: Probe) -> Any:
    return _stale(p, "rt.create_stream", "rt.destroy_stream")


@case(
    "rt.destroy_event.twice",
    "error-codes",
    expect=[0, 107017],
    isolated=True,
    evidence=SIM_CHOICE,
)
def _event_twice(p: Probe) -> Any:
    return _stale(p, "rt.create_event", "rt.destroy_event")


@case(
    "rt.destroy_context.twice",
    "error-codes",
    expect=[0, 107002],
    isolated=True,
    evidence="src/runtime/api/impl/api_impl.cc ContextDestroy: a context that is not live "
    "gives RT_ERROR_CONTEXT_NULL (107002)",
)
def _context_twice(p: Probe) -> Any:
    previous = p.current_context()
    p.defer(p.acl.rt.set_context, previous)
    return _stale(p, "rt.create_context", "rt.destroy_context", p.device)


@case(
    "rt.stale_handles.use",
    "error-codes",
    expect=[107017, 107017, 107000],
    isolated=True,
    evidence=SIM_CHOICE + " (destroyed stream/event handles; freed device pointer in memcpy)",
)
def _stale_use(p: Probe) -> Any:
    rt = p.acl.rt
    stream = p.ok("rt.create_stream")
    event = p.ok("rt.create_event")
    dev = p.ok("rt.malloc", 64, 0)
    for destroy, handle in ((rt.destroy_stream, stream), (rt.destroy_event, event), (rt.free, dev)):
        if destroy(handle) != 0:
            p.defer(destroy, handle)
    src = p.pageable(b"x" * 64)
    return [
        rt.synchronize_stream(stream),
        rt.synchronize_event(event),
        rt.memcpy(dev, 64, src, 64, HOST_TO_DEVICE),
    ]


@case(
    "destroy_data_buffer.twice",
    "error-codes",
    expect=[0, 100000],
    isolated=True,
    evidence=SIM_CHOICE + " (acl layer: data buffers are checked by the acl wrapper)",
)
def _buffer_twice(p: Probe) -> Any:
    acl = p.acl
    buf = acl.create_data_buffer(0, 0)
    first = acl.destroy_data_buffer(buf)
    if first != 0:
        p.defer(acl.destroy_data_buffer, buf)
    return [first, acl.destroy_data_buffer(buf)]


# ------------------------------------------------------------------ more source-checked codes


@case(
    "rt.wrong_context.events_and_query",
    "error-codes",
    expect=[107003, 107003, 0, 0],
    evidence="src/runtime/api/impl/api_impl.cc: reset_event and stream_wait_event with a "
    "stream of another context -> RT_ERROR_STREAM_CONTEXT (107003); StreamQuery has no "
    "context check; stream 0 is the current context's default stream, always accepted",
)
def _wrong_context_events(p: Probe) -> Any:
    rt = p.acl.rt
    first = p.context()
    stream = p.stream()  # belongs to `first`
    p.defer(rt.set_context, first)
    event = p.event(0x1)  # SYNC: has a wait task, so reset/wait reach the context check
    p.context()  # a second context is now current
    dev = p.malloc(256)
    host = p.malloc_host(256)
    p.defer(rt.synchronize_stream, 0)
    return [
        rt.reset_event(event, stream),
        rt.stream_wait_event(stream, event),
        rt.stream_query(stream)[-1],
        rt.memcpy_async(dev, 256, host, 256, HOST_TO_DEVICE, 0),
    ]


@case(
    "rt.set_context.destroyed",
    "error-codes",
    expect=[0, 107000],
    isolated=True,
    evidence=API_ERROR + "ContextSetCurrent: CHECK_CONTEXT_VALID_WITH_RETURN, a context that "
    "is not live -> RT_ERROR_INVALID_VALUE (107000)",
)
def _set_destroyed_context(p: Probe) -> Any:
    rt = p.acl.rt
    previous = p.current_context()
    p.defer(rt.set_context, previous)
    ctx = p.ok("rt.create_context", p.device)
    first = rt.destroy_context(ctx)
    if first != 0:
        p.defer(rt.destroy_context, ctx)
    return [first, rt.set_context(ctx)]


@case(
    "rt.count_over_max.memcpy_async_and_memset",
    "error-codes",
    expect=[107000, 107000],
    evidence=API_ERROR + "MemcpyAsync and MemSetSync: cnt > destMax -> RT_ERROR_INVALID_VALUE "
    "(107000)",
)
def _count_over_max(p: Probe) -> Any:
    rt = p.acl.rt
    dev = p.malloc(64)
    host = p.malloc_host(64)
    p.defer(rt.synchronize_stream, 0)
    return [rt.memcpy_async(dev, 32, host, 64, HOST_TO_DEVICE, 0), rt.memset(dev, 32, 0, 64)]


@case(
    "rt.malloc_align32.size_overflow",
    "error-codes",
    expect=[0, 100000],
    evidence=ACL_MEMORY + "aclrtMallocAlign32 -> aclMallocMemInner -> GetAlignedAndPaddingSize: "
    "a size whose rounding up to 32 overflows size_t -> ACL_ERROR_INVALID_PARAM",
)
def _align32_overflow(p: Probe) -> Any:
    ptr, ret = p.acl.rt.malloc_align32((1 << 64) - 16, 0)
    if ret == 0:
        p.defer(p.acl.rt.free, ptr)
    return [ptr if ret != 0 else "ptr", ret]


@case(
    "rt.calls_before_init.accepted",
    "init",
    expect=[0, 0, 0],
    phase="bare",
    evidence="src/acl/aclrt_impl/*.cpp: no runtime entry point checks acl.init (only the dump "
    "functions return ACL_ERROR_UNINITIALIZE); the docs require acl.init first",
)
def _before_init(p: Probe) -> Any:
    rt = p.acl.rt
    set_ret = rt.set_device(p.device)
    if set_ret == 0:
        p.defer(rt.reset_device, p.device)
    ptr, malloc_ret = rt.malloc(64, 0)
    free_ret = rt.free(ptr) if malloc_ret == 0 else None
    return [set_ret, malloc_ret, free_ret]


@case(
    "rt.set_device.negative_id",
    "error-codes",
    expect=[107001, 107001, 107001, 107001],
    evidence=API_ERROR + "SetDevice and DeviceReset: ChgUserDevIdToDeviceId of the id cast to "
    "uint32 fails, or the driver id is < 0 -> RT_ERROR_DEVICE_ID "
    "(ACL_ERROR_RT_INVALID_DEVICEID, 107001)",
)
def _negative_device(p: Probe) -> Any:
    rt = p.acl.rt
    out = []
    for device in (-1, -(1 << 31)):
        ret = rt.set_device(device)
        if ret == 0:
            p.defer(rt.reset_device, device)
        out.append(ret)
    out.append(rt.reset_device(-1))
    out.append(rt.reset_device_force(-1))
    return out


@case(
    "rt.memcpy.kind_inner_inter_device",
    "error-codes",
    expect=[100000, 100000, 100000],
    evidence=ACL_MEMORY + "MemcpyKindTranslate accepts HOST_TO_HOST .. HOST_TO_BUF_TO_DEVICE "
    "(0..5) only: ACL_MEMCPY_INNER_DEVICE_TO_DEVICE (6) and INTER_DEVICE_TO_DEVICE (7) -> "
    "ACL_ERROR_INVALID_PARAM in memcpy and memcpy_async",
)
def _kind_inner_inter(p: Probe) -> Any:
    rt = p.acl.rt
    dst, src = p.malloc(64), p.malloc(64)
    p.defer(rt.synchronize_stream, 0)
    return [
        rt.memcpy(dst, 64, src, 64, 6),
        rt.memcpy(dst, 64, src, 64, 7),
        rt.memcpy_async(dst, 64, src, 64, 6, 0),
    ]


@case(
    "rt.destroy_stream.thread_without_context",
    "error-codes",
    expect=[107002, 107002],
    evidence="src/runtime/api/impl/api_impl.cc StreamDestroy: CHECK_CONTEXT_VALID_WITH_RETURN "
    "(RT_ERROR_CONTEXT_NULL, 107002) before the stream's context is compared; "
    "destroy_stream_force goes through the same StreamDestroy (flag = force)",
)
def _destroy_stream_no_context(p: Probe) -> Any:
    rt = p.acl.rt
    stream = p.ok("rt.create_stream")
    codes: list[Any] = []
    # destroyed at the end in this thread, unless a call below already did it
    p.defer(lambda: 0 in codes or (rt.synchronize_stream(stream), rt.destroy_stream(stream)))

    def destroy_in_a_new_thread(destroy: Any) -> None:
        def work() -> None:
            try:
                codes.append(destroy(stream))
            except Exception as exc:  # reported as the observation
                codes.append(f"{type(exc).__name__}: {exc}")

        worker = threading.Thread(target=work, name="kit-no-context")
        worker.start()
        worker.join(30.0)

    destroy_in_a_new_thread(rt.destroy_stream)
    if 0 not in codes:
        destroy_in_a_new_thread(rt.destroy_stream_force)
    return codes

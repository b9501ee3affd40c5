"""Async semantics (pageable and pinned sources, ordering, alignment) and events (status
polarity of the three query calls, elapsed time)."""

from __future__ import annotations

import ctypes
import struct
from typing import Any

from ._case import DEVICE_TO_HOST, HOST_TO_DEVICE, HOST_TO_HOST, NotApplicable, Probe, case

API_ERROR = "src/runtime/api/impl/api_error.cc: "
ACL_EVENT_SYNC = 0x1
SIZE = 4096


def _pattern(seed: int, size: int = SIZE) -> bytes:
    return bytes((seed + i * 7) & 0xFF for i in range(size))


@case(
    "rt.memcpy_async.pageable_source_copied_at_call",
    "async",
    expect=True,
    evidence=API_ERROR + "MemcpyAsync from host memory not from malloc_host synchronizes the "
    "stream and copies synchronously (pyacl memcpy_async docs >= 8.5 say the same)",
)
def _pageable(p: Probe) -> Any:
    stream = p.stream()
    dev = p.malloc(SIZE)
    original = _pattern(1)
    src = p.pageable(original)
    p.ok("rt.memcpy_async", dev, SIZE, src, SIZE, HOST_TO_DEVICE, stream)
    ctypes.memset(src, 0, SIZE)  # a synchronous copy has already read the source
    p.ok("rt.synchronize_stream", stream)
    return p.read_device(dev, SIZE) == original


@case(
    "rt.memcpy_async.pinned_round_trip_in_order",
    "async",
    expect=True,
    evidence="pyacl docs (memcpy_async, memset_async): tasks on one stream run in issue order",
)
def _pinned_order(p: Probe) -> Any:
    stream = p.stream()
    dev = p.malloc(SIZE)
    src = p.malloc_host(SIZE)
    dst = p.malloc_host(SIZE)
    data = _pattern(3)
    ctypes.memmove(src, data, SIZE)
    ctypes.memset(dst, 0, SIZE)
    p.ok("rt.memcpy_async", dev, SIZE, src, SIZE, HOST_TO_DEVICE, stream)
    p.ok("rt.memset_async", dev, SIZE, 0x5A, 16, stream)
    p.ok("rt.memcpy_async", dst, SIZE, dev, SIZE, DEVICE_TO_HOST, stream)
    p.ok("rt.synchronize_stream", stream)
    return ctypes.string_at(dst, SIZE) == b"\x5a" * 16 + data[16:]


@case(
    "rt.stream_wait_event.orders_streams",
    "async",
    expect=True,
    evidence="pyacl docs (stream_wait_event): the stream waits for the event's recorded work",
)
def _cross_stream(p: Probe) -> Any:
    first, second = p.stream(), p.stream()
    event = p.event(ACL_EVENT_SYNC)
    dev = p.malloc(SIZE)
    src = p.malloc_host(SIZE)
    dst = p.malloc_host(SIZE)
    data = _pattern(5)
    ctypes.memmove(src, data, SIZE)
    ctypes.memset(dst, 0, SIZE)
    p.ok("rt.memcpy_async", dev, SIZE, src, SIZE, HOST_TO_DEVICE, first)
    p.ok("rt.record_event", event, first)
    p.ok("rt.stream_wait_event", second, event)
    p.ok("rt.memcpy_async", dst, SIZE, dev, SIZE, DEVICE_TO_HOST, second)
    p.ok("rt.synchronize_stream", second)
    return ctypes.string_at(dst, SIZE) == data


@case(
    "rt.memcpy_async.unaligned_accepted",
    "async",
    expect=0,
    evidence=API_ERROR + "MemcpyAsync has no 64-byte alignment check (the docs state the "
    "restriction; the simulator records a violation, or refuses with strict=True)",
)
def _unaligned(p: Probe) -> Any:
    stream = p.stream()
    dev = p.malloc(256)
    host = p.malloc_host(256)
    ret = p.acl.rt.memcpy_async(dev + 1, 128, host + 1, 64, HOST_TO_DEVICE, stream)
    p.acl.rt.synchronize_stream(stream)
    return ret


@case(
    "rt.memcpy_async.host_to_host_in_host_mode",
    "async",
    expect=207000,
    evidence="C doc aclrtMemcpyAsync and pyacl memcpy_async doc (9.x): host-to-host async copy "
    "in ACL_HOST (EP) mode -> ACL_ERROR_RT_FEATURE_NOT_SUPPORT",
)
def _h2h(p: Probe) -> Any:
    mode = p.ok("rt.get_run_mode")
    if mode != 1:
        raise NotApplicable("only ACL_HOST mode refuses host-to-host async copies")
    stream = p.stream()
    a, b = p.malloc_host(128), p.malloc_host(128)
    ret = p.acl.rt.memcpy_async(b, 128, a, 128, HOST_TO_HOST, stream)
    p.acl.rt.synchronize_stream(stream)
    return ret


# ---------------------------------------------------------------------------- events


@case(
    "rt.query_event.status_polarity",
    "events",
    expect=[[0, 0], [1, 0], [0, 0]],
    evidence="acl_rt.h: aclrtEventStatus COMPLETE=0, aclrtEventRecordedStatus COMPLETE=1, "
    "aclrtEventWaitStatus COMPLETE=0 (query_event, query_event_status, "
    "query_event_wait_status of a completed event)",
)
def _polarity(p: Probe) -> Any:
    rt = p.acl.rt
    stream = p.stream()
    event = p.event(ACL_EVENT_SYNC)
    p.ok("rt.record_event", event, stream)
    p.ok("rt.synchronize_event", event)
    return [
        list(rt.query_event(event)),
        list(rt.query_event_status(event)),
        list(rt.query_event_wait_status(event)),
    ]


@case(
    "rt.stream_query.complete_after_sync",
    "events",
    expect=[0, 0],
    evidence="acl_rt.h: aclrtStreamStatus COMPLETE=0",
)
def _stream_query(p: Probe) -> Any:
    stream = p.stream()
    p.ok("rt.synchronize_stream", stream)
    return list(p.acl.rt.stream_query(stream))


@case(
    "rt.event_elapsed_time.c_float",
    "events",
    expect=["float", True, True],
    evidence=API_ERROR + "EventElapsedTime writes a float32_t; pyACL returns it as a Python "
    "float, so the value is exactly representable as a C float",
)
def _elapsed(p: Probe) -> Any:
    stream = p.stream()
    start, end = p.event(), p.event()
    dev = p.malloc(SIZE)
    p.ok("rt.record_event", start, stream)
    p.ok("rt.memset_async", dev, SIZE, 0, SIZE, stream)
    p.ok("rt.record_event", end, stream)
    p.ok("rt.synchronize_stream", stream)
    ms = p.ok("rt.event_elapsed_time", start, end)
    p.note("elapsed_ms", ms)
    as_float32 = struct.unpack("f", struct.pack("f", ms))[0]
    return [type(ms).__name__, ms == as_float32, ms >= 0.0]


@case(
    "rt.synchronize_event.after_record",
    "events",
    expect=[0, 0, [0, 0]],
    evidence="pyacl docs: record_event then synchronize_event waits for the recorded work",
)
def _sync_event(p: Probe) -> Any:
    rt = p.acl.rt
    stream = p.stream()
    event = p.event()
    return [
        rt.record_event(event, stream),
        rt.synchronize_event(event),
        list(rt.query_event(event)),
    ]


@case(
    "rt.memcpy_async.rc_pageable_copied_at_call",
    "async",
    expect=True,
    evidence=API_ERROR + "MemcpyAsyncCheckLocation / JudgeIsInvolvePageableMemory do not look "
    "at the run mode: in RC mode too a host-to-device copy from memory not from malloc_host "
    "synchronizes the stream and copies synchronously (only the kind auto-correction is "
    "host-mode only)",
)
def _rc_pageable(p: Probe) -> Any:
    if p.ok("rt.get_run_mode") != 0:
        raise NotApplicable("RC mode (run mode 0) only; host mode: see pageable_source_copied")
    stream = p.stream()
    dev = p.malloc(SIZE)
    original = _pattern(5)
    src = p.pageable(original)
    p.ok("rt.memcpy_async", dev, SIZE, src, SIZE, HOST_TO_DEVICE, stream)
    ctypes.memset(src, 0, SIZE)  # a synchronous copy has already read the source
    p.ok("rt.synchronize_stream", stream)
    return p.read_device(dev, SIZE) == original


@case(
    "rt.event_elapsed_time.without_time_line_flag",
    "events",
    expect=[0, True],
    evidence="src/runtime/core/src/event/event.cc Event::ElapsedTime: any recorded event has "
    "timestamps; api_error.cc EventElapsedTime checks no TIME_LINE flag",
)
def _elapsed_sync_only(p: Probe) -> Any:
    stream = p.stream()
    start, end = p.event(0x1), p.event(0x1)  # ACL_EVENT_SYNC only
    p.ok("rt.record_event", start, stream)
    p.ok("rt.record_event", end, stream)
    p.ok("rt.synchronize_stream", stream)
    ms, ret = p.acl.rt.event_elapsed_time(start, end)
    return [ret, ms >= 0.0]


@case(
    "rt.event_elapsed_time.external_or_ipc",
    "events",
    expect=[[0.0, 207000], [0.0, 207000]],
    evidence=API_ERROR + "EventElapsedTime: an event whose flag is RT_EVENT_EXTERNAL (0x20) or "
    "RT_EVENT_IPC (0x40) -> RT_ERROR_FEATURE_NOT_SUPPORT (207000), before the records are read",
)
def _elapsed_external(p: Probe) -> Any:
    rt = p.acl.rt
    plain = p.event()
    external = p.event(0x20)
    ipc = p.ok("rt.create_event_ex_with_flag", 0x40)
    p.defer(rt.destroy_event, ipc)
    return [list(rt.event_elapsed_time(external, plain)), list(rt.event_elapsed_time(plain, ipc))]

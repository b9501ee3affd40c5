"""Return shapes and types of every implemented top-level, ``acl.rt``, ``acl.media`` and
``acl.util`` function, plus the calls that work before ``acl.init``.

pyacl returns ``ret`` alone, the C out-parameters then ``ret`` last, or a bare value
(``python/pyACL/``: the ``Py_BuildValue`` formats of each function).
"""

from __future__ import annotations

from typing import Any

from ._case import HOST_TO_DEVICE, Probe, case, shape

PYACL = "python/pyACL (hicann/runtime): return tuple of "
ACL_EVENT_SYNC = 0x1

# ---------------------------------------------------------------------------- before acl.init


@case(
    "rt.get_run_mode.before_init",
    "init",
    expect="(int, ret=0)",
    phase="bare",
    evidence="src/acl/aclrt_impl/device.cpp: get run mode path has no init check; Ascend/samples "
    "acllite_image.py calls acl.rt.get_run_mode() at import time",
)
def _run_mode_before_init(p: Probe) -> Any:
    return shape(p.acl.rt.get_run_mode())


@case(
    "get_soc_name.before_init",
    "init",
    expect="str",
    phase="bare",
    evidence=PYACL + "get_soc_name (bare str); called before acl.init by the samples",
)
def _soc_before_init(p: Probe) -> Any:
    return shape(p.acl.get_soc_name(), bare=True)


@case(
    "get_version.before_init",
    "init",
    expect="(int, int, int, ret=0)",
    phase="bare",
    evidence=PYACL + "get_version; aclrtGetVersion needs no init (src/acl/aclrt_impl/acl.cpp)",
)
def _version_before_init(p: Probe) -> Any:
    return shape(p.acl.get_version())


@case(
    "get_recent_err_msg.after_failure",
    "return-shapes",
    expect=["ret=100000", "str"],
    evidence=PYACL + "get_recent_err_msg (bare str or None); a failed call leaves a message",
)
def _recent_error(p: Probe) -> Any:
    p.acl.get_recent_err_msg()  # clear what earlier calls left
    result = p.acl.rt.free(0)
    return [shape(result), shape(p.acl.get_recent_err_msg(), bare=True)]


# ---------------------------------------------------------------------------- top level


@case(
    "get_cann_version.shape",
    "return-shapes",
    expect="(dict, ret=0)",
    evidence=PYACL + "get_cann_version: (dict, ret)",
)
def _cann_version(p: Probe) -> Any:
    return shape(p.acl.get_cann_version(0))


@case(
    "get_cann_version.keys",
    "return-shapes",
    expect=[
        "major_version",
        "minor_version",
        "patch_version",
        "release_version",
        "reserved",
        "version",
    ],
    evidence=PYACL + "get_cann_version: dict built from aclCANNPackageVersion",
)
def _cann_version_keys(p: Probe) -> Any:
    info = p.ok("get_cann_version", 0)
    return sorted(info) if isinstance(info, dict) else repr(info)


@case(
    "get_cann_version.values_are_strings",
    "return-shapes",
    expect=["str"],
    evidence="acl_base_rt.h aclCANNPackageVersion: every field is a char array; python/pyACL "
    "py_init_acl.cpp GetPyDictFromVersion builds each value with Py_BuildValue('s')",
)
def _cann_version_values(p: Probe) -> Any:
    info = p.ok("get_cann_version", 0)
    if not isinstance(info, dict):
        return repr(info)
    return sorted({type(value).__name__ for value in info.values()})


@case(
    "data_buffer.shapes",
    "return-shapes",
    expect=["int", "int", "int", "int", "ret=0", "ret=0"],
    evidence=PYACL + "create_data_buffer, get_data_buffer_addr/size/size_v2 (bare values), "
    "update_data_buffer and destroy_data_buffer (ret)",
)
def _data_buffer(p: Probe) -> Any:
    acl = p.acl
    buf = acl.create_data_buffer(0, 0)
    destroyed: list[bool] = []
    p.defer(lambda: destroyed or acl.destroy_data_buffer(buf))
    out = [
        shape(buf, bare=True),
        shape(acl.get_data_buffer_addr(buf), bare=True),
        shape(acl.get_data_buffer_size(buf), bare=True),
        shape(acl.get_data_buffer_size_v2(buf), bare=True),
        shape(acl.update_data_buffer(buf, 0, 0)),
        shape(acl.destroy_data_buffer(buf)),
    ]
    destroyed.append(True)
    return out


@case(
    "data_buffer.values",
    "return-shapes",
    expect=[True, 4096, 4096, 1],
    evidence=PYACL + "data buffer getters return what create/update stored",
)
def _data_buffer_values(p: Probe) -> Any:
    acl = p.acl
    ptr = p.malloc(4096)
    buf = acl.create_data_buffer(ptr, 4096)
    p.defer(acl.destroy_data_buffer, buf)
    first = [
        acl.get_data_buffer_addr(buf) == ptr,
        acl.get_data_buffer_size(buf),
        acl.get_data_buffer_size_v2(buf),
    ]
    acl.update_data_buffer(buf, ptr, 1)
    return [*first, acl.get_data_buffer_size_v2(buf)]


# ---------------------------------------------------------------------------- acl.rt: device


@case(
    "rt.get_device.shape",
    "return-shapes",
    expect=["(int, ret=0)", True],
    evidence=PYACL + "get_device: (device_id, ret)",
)
def _get_device(p: Probe) -> Any:
    result = p.acl.rt.get_device()
    return [shape(result), result[0] == p.device]


@case(
    "rt.get_device_count.shape",
    "return-shapes",
    expect=["(int, ret=0)", True],
    evidence=PYACL + "get_device_count: (count, ret)",
)
def _device_count(p: Probe) -> Any:
    result = p.acl.rt.get_device_count()
    return [shape(result), result[0] >= 1]


@case(
    "rt.get_run_mode.shape",
    "return-shapes",
    expect=["(int, ret=0)", True],
    evidence=PYACL + "get_run_mode: (run_mode, ret); ACL_DEVICE=0, ACL_HOST=1 (acl_rt.h)",
)
def _run_mode(p: Probe) -> Any:
    result = p.acl.rt.get_run_mode()
    return [shape(result), result[0] in (0, 1)]


@case(
    "rt.set_device.reset_device.shapes",
    "return-shapes",
    expect=["ret=0", "ret=0"],
    evidence=PYACL + "set_device and reset_device return ret; set_device is refcounted",
)
def _set_reset(p: Probe) -> Any:
    first = p.acl.rt.set_device(p.device)
    return [shape(first), shape(p.acl.rt.reset_device(p.device) if first == 0 else first)]


@case(
    "rt.reset_device_force.shape",
    "return-shapes",
    expect=["ret=0", "ret=0"],
    phase="init",
    evidence=PYACL + "reset_device_force returns ret",
)
def _reset_force(p: Probe) -> Any:
    first = p.acl.rt.set_device(p.device)
    return [shape(first), shape(p.acl.rt.reset_device_force(p.device) if first == 0 else first)]


@case(
    "rt.synchronize_device.shapes",
    "return-shapes",
    expect=["ret=0", "ret=0"],
    evidence=PYACL + "synchronize_device and synchronize_device_with_timeout return ret",
)
def _sync_device(p: Probe) -> Any:
    rt = p.acl.rt
    return [shape(rt.synchronize_device()), shape(rt.synchronize_device_with_timeout(5000))]


# ---------------------------------------------------------------------------- contexts


@case(
    "rt.context.shapes",
    "return-shapes",
    expect=["(int, ret=0)", "(int, ret=0)", True, "ret=0", "ret=0"],
    evidence=PYACL + "create_context/get_context: (context, ret); set_context/destroy_context: "
    "ret; create_context makes the new context current",
)
def _contexts(p: Probe) -> Any:
    rt = p.acl.rt
    previous = p.current_context()
    created = rt.create_context(p.device)
    ctx = created[0]
    done: list[bool] = []
    if created[1] == 0:
        p.defer(lambda: done or rt.destroy_context(ctx))
        p.defer(rt.set_context, previous)
    current = rt.get_context()
    out = [shape(created), shape(current), current[0] == ctx, shape(rt.set_context(previous))]
    out.append(shape(rt.destroy_context(ctx)))
    done.append(True)
    return out


# ---------------------------------------------------------------------------- streams


@case(
    "rt.stream.shapes",
    "return-shapes",
    expect=["(int, ret=0)", "(int, ret=0)", "ret=0", "ret=0", "(int, ret=0)", "ret=0", "ret=0"],
    evidence=PYACL + "create_stream/create_stream_with_config/stream_query: (value, ret); "
    "synchronize_stream(_with_timeout), destroy_stream(_force): ret",
)
def _streams(p: Probe) -> Any:
    rt = p.acl.rt
    first = rt.create_stream()
    second = rt.create_stream_with_config(0, 0)
    alive = {s[0] for s in (first, second) if s[1] == 0}
    for handle in alive:
        p.defer(lambda h=handle: h in alive and rt.destroy_stream(h))
    s = first[0]
    out = [
        shape(first),
        shape(second),
        shape(rt.synchronize_stream(s)),
        shape(rt.synchronize_stream_with_timeout(s, 5000)),
        shape(rt.stream_query(s)),
    ]
    out.append(shape(rt.destroy_stream(s)))
    alive.discard(s)
    out.append(shape(rt.destroy_stream_force(second[0])))
    alive.discard(second[0])
    return out


# ---------------------------------------------------------------------------- events


@case(
    "rt.event.create_shapes",
    "return-shapes",
    expect=["(int, ret=0)", "(int, ret=0)", "(int, ret=0)", "ret=0", "ret=0", "ret=0"],
    evidence=PYACL + "create_event/create_event_with_flag/create_event_ex_with_flag: "
    "(event, ret); destroy_event: ret",
)
def _event_create(p: Probe) -> Any:
    rt = p.acl.rt
    made = [
        rt.create_event(),
        rt.create_event_with_flag(ACL_EVENT_SYNC),
        rt.create_event_ex_with_flag(ACL_EVENT_SYNC),
    ]
    alive = {m[0] for m in made if m[1] == 0}
    for handle in alive:
        p.defer(lambda h=handle: h in alive and rt.destroy_event(h))
    out = [shape(m) for m in made]
    for m in made:
        out.append(shape(rt.destroy_event(m[0])))
        alive.discard(m[0])
    return out


@case(
    "rt.event.use_shapes",
    "return-shapes",
    expect=[
        "ret=0",
        "ret=0",
        "ret=0",
        "ret=0",
        "(int, ret=0)",
        "(int, ret=0)",
        "(int, ret=0)",
        "(float, ret=0)",
        "ret=0",
        "ret=0",
    ],
    evidence=PYACL + "record_event, stream_wait_event, synchronize_event(_with_timeout), "
    "reset_event: ret; query_event(_status/_wait_status) and event_elapsed_time: (value, ret)",
)
def _event_use(p: Probe) -> Any:
    rt = p.acl.rt
    stream = p.stream()
    start = p.event()
    end = p.event(ACL_EVENT_SYNC)
    out = [
        shape(rt.record_event(start, stream)),
        shape(rt.record_event(end, stream)),
        shape(rt.synchronize_event(end)),
        shape(rt.synchronize_event_with_timeout(end, 5000)),
        shape(rt.query_event(end)),
        shape(rt.query_event_status(end)),
        shape(rt.query_event_wait_status(end)),
        shape(rt.event_elapsed_time(start, end)),
        shape(rt.stream_wait_event(stream, end)),
        shape(rt.reset_event(end, stream)),
    ]
    rt.synchronize_stream(stream)
    return out


# ---------------------------------------------------------------------------- memory


@case(
    "rt.malloc.shapes",
    "return-shapes",
    expect=[
        "(int, ret=0)",
        "(int, ret=0)",
        "(int, ret=0)",
        "(int, ret=0)",
        "ret=0",
        "ret=0",
        "ret=0",
        "ret=0",
    ],
    evidence=PYACL + "malloc/malloc_align32/malloc_cached/malloc_host: (ptr, ret); "
    "free/free_host: ret",
)
def _mallocs(p: Probe) -> Any:
    rt = p.acl.rt
    made = [rt.malloc(256, 0), rt.malloc_align32(256, 0), rt.malloc_cached(256, 0)]
    host = rt.malloc_host(256)
    live = {m[0] for m in made if m[1] == 0}
    for ptr in live:
        p.defer(lambda q=ptr: q in live and rt.free(q))
    host_live = [host[0]] if host[1] == 0 else []
    p.defer(lambda: host_live and rt.free_host(host[0]))
    out = [shape(m) for m in made] + [shape(host)]
    for m in made:
        out.append(shape(rt.free(m[0])))
        live.discard(m[0])
    out.append(shape(rt.free_host(host[0])))
    host_live.clear()
    return out


@case(
    "rt.memcpy_memset.shapes",
    "return-shapes",
    expect=["ret=0", "ret=0", "ret=0", "ret=0"],
    evidence=PYACL + "memset, memset_async, memcpy, memcpy_async return ret",
)
def _copies(p: Probe) -> Any:
    rt = p.acl.rt
    stream = p.stream()
    dev = p.malloc(256)
    host = p.malloc_host(256)
    out = [
        shape(rt.memset(dev, 256, 0, 256)),
        shape(rt.memset_async(dev, 256, 1, 256, stream)),
        shape(rt.memcpy(host, 256, dev, 256, 2)),
        shape(rt.memcpy_async(dev, 256, host, 256, HOST_TO_DEVICE, stream)),
    ]
    rt.synchronize_stream(stream)
    return out


@case(
    "rt.get_mem_info.shape",
    "return-shapes",
    expect=["(int, int, ret=0)", True],
    evidence=PYACL + "get_mem_info: (free, total, ret)",
)
def _mem_info(p: Probe) -> Any:
    result = p.acl.rt.get_mem_info(1)
    return [shape(result), 0 <= result[0] <= result[1]]


@case(
    "media.dvpp_malloc.shapes",
    "return-shapes",
    expect=["(int, ret=0)", True, "ret=0"],
    evidence=PYACL + "media dvpp_malloc: (ptr, ret), 128-byte aligned; dvpp_free: ret",
)
def _dvpp(p: Probe) -> Any:
    media = p.acl.media
    result = media.dvpp_malloc(256)
    live = [result[0]] if result[1] == 0 else []
    p.defer(lambda: live and media.dvpp_free(result[0]))
    out = [shape(result), result[0] % 128 == 0, shape(media.dvpp_free(result[0]))]
    live.clear()
    return out


# ---------------------------------------------------------------------------- acl.util


@case(
    "util.bytes_ptr.shapes",
    "return-shapes",
    expect=["int", "bytes", True],
    phase="bare",
    evidence=PYACL + "util bytes_to_ptr (int), ptr_to_bytes (bytes, a copy)",
)
def _bytes_ptr(p: Probe) -> Any:
    util = p.acl.util
    data = b"conformance"
    ptr = util.bytes_to_ptr(data)
    copied = util.ptr_to_bytes(ptr, len(data))
    return [shape(ptr, bare=True), shape(copied, bare=True), copied == data]


@case(
    "util.numpy.shapes",
    "return-shapes",
    expect=["int", "int", "ndarray", "ndarray", [2, 3], True],
    phase="bare",
    evidence=PYACL + "util numpy_to_ptr (int), numpy_contiguous_to_ptr (ptr, array), "
    "ptr_to_numpy (array wrapping the memory, no copy; npy type 11 = float32)",
)
def _numpy(p: Probe) -> Any:
    import warnings

    import numpy as np

    util = p.acl.util
    array = np.arange(6, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy_to_ptr warns that it is deprecated
        ptr = util.numpy_to_ptr(array)
        cptr, contiguous = util.numpy_contiguous_to_ptr(array[::2])
        view = util.ptr_to_numpy(ptr, (2, 3), 11)
    view[0, 0] = 42.0
    return [
        shape(ptr, bare=True),
        shape(cptr, bare=True),
        shape(contiguous, bare=True),
        shape(view, bare=True),
        list(view.shape),
        bool(array[0] == 42.0),
    ]


# ---------------------------------------------------------------------------- presence

#: Functions the official samples call whose arguments the kit does not exercise (yet).
SAMPLE_CALLS = ("app_log", "rt.set_op_wait_timeout", "util.start_thread", "util.stop_thread")


@case(
    "functions.sample_calls_present",
    "return-shapes",
    expect=[],
    phase="bare",
    evidence="Ascend/samples python/common/acllite: acllite_logger.py (acl.app_log), "
    "videocapture.py and dvpp_vdec.py (acl.util.start_thread/stop_thread); pyACL source "
    "registers acl.rt.set_op_wait_timeout",
)
def _present(p: Probe) -> Any:
    missing = []
    for name in SAMPLE_CALLS:
        target: Any = p.acl
        for part in name.split("."):
            target = getattr(target, part, None)
        if not callable(target):
            missing.append(name)
    return missing

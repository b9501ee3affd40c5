"""Argument parsing: pyACL parses positional arguments with ``PyArg_ParseTuple``.

Per format letter (CPython): ``i``/``I``/``l`` take any object with ``__index__`` (numpy
integers included); ``i`` and ``l`` range-check (``OverflowError``), ``I`` keeps the low 32 bits
with no error; ``k``/``K`` take only real ``int`` (``bool`` included; numpy integers raise
``TypeError``) and keep the low 64 bits; ``s`` takes only ``str`` without NUL characters
(``ValueError`` otherwise). pyACL wraps nearly every parse in
``CHECK_NULL(PyArg_ParseTuple(...), "acl.<sub>.<fn> args parse failed")`` (``utils_methods.h``),
which replaces whatever parsing raised, overflow included, with that ``TypeError``;
``acl.util.start_thread`` does not, so CPython's own ``TypeError`` comes through there.
"""

from __future__ import annotations

from typing import Any

from ._case import Probe, case, shape

#: Where pyACL's source parses each function these cases call (python/pyACL/...).
SOURCE = {
    "init": "py_init_acl.cpp",
    "create_data_buffer": "py_init_acl.cpp",
    "rt.set_device": "rt/rt_device.cpp",
    "rt.malloc": "rt/rt_memory.cpp",
    "rt.free": "rt/rt_memory.cpp",
    "rt.memcpy": "rt/rt_memory.cpp",
    "rt.memset": "rt/rt_memory.cpp",
    "rt.get_mem_info": "rt/rt_memory.cpp",
    "rt.create_event_with_flag": "rt/rt_synchronize.cpp",
    "media.dvpp_malloc": "media/media_common.cpp",
}


def _at(api: str) -> str:
    return f"python/pyACL {SOURCE[api]}: PyArg_ParseTuple format "

#: (api, arguments, format evidence): calls that must raise TypeError.
_TYPE_ERRORS: tuple[tuple[str, str, tuple[Any, ...], str], ...] = (
    ("init.none", "init", (None,), "'|s' rejects None"),
    ("init.int", "init", (1,), "'|s' rejects int"),
    ("rt.set_device.no_args", "rt.set_device", (), "'i' needs one argument"),
    ("rt.set_device.none", "rt.set_device", (None,), "'i' rejects None"),
    ("rt.set_device.float", "rt.set_device", (0.0,), "'i' rejects float"),
    ("rt.set_device.str", "rt.set_device", ("0",), "'i' rejects str"),
    ("rt.set_device.overflow", "rt.set_device", (1 << 40,), "'i' overflow becomes TypeError"),
    ("rt.malloc.missing_policy", "rt.malloc", (64,), "'ki' needs two arguments"),
    ("rt.malloc.float_size", "rt.malloc", (64.0, 0), "'k' rejects float"),
    ("rt.free.none", "rt.free", (None,), "'k' rejects None"),
    ("rt.memcpy.four_args", "rt.memcpy", (1, 2, 3, 4), "'kkkki' needs five arguments"),
    ("create_data_buffer.one_arg", "create_data_buffer", (0,), "'kk' needs two arguments"),
    ("media.dvpp_malloc.str", "media.dvpp_malloc", ("64",), "'k' rejects str"),
)


def _type_error_case(name: str, api: str, args: tuple[Any, ...], why: str) -> None:
    @case(
        f"args.type_error.{name}",
        "arg-parsing",
        expect="TypeError: args parse failed",
        phase="init" if api != "init" else "bare",
        evidence=_at(api) + f"of acl.{api}: {why}",
    )
    def _probe(p: Probe) -> Any:
        # A call that wrongly succeeds is undone: pointers freed, the device reset.
        release = None
        if api == "rt.set_device":

            def release(result: Any) -> Any:
                return result == 0 and p.acl.rt.reset_device(args[0])
        elif api == "init":

            def release(result: Any) -> Any:
                return result == 0 and p.acl.finalize()

        return p.raises(api, *args, release=release)


for _entry in _TYPE_ERRORS:
    _type_error_case(*_entry)


@case(
    "args.keyword_arguments",
    "arg-parsing",
    expect="TypeError",
    evidence="python/pyACL method tables (py_init_acl.cpp, rt/pyrt_methods.cpp, ...): every "
    "function is METH_VARARGS, none METH_KEYWORDS (no keyword arguments)",
)
def _keywords(p: Probe) -> Any:
    try:
        result = p.acl.rt.get_mem_info(attr=1)
    except TypeError:
        return "TypeError"
    return f"returned {result!r}"


@case(
    "args.bool_as_int",
    "arg-parsing",
    expect=0,
    evidence=_at("rt.malloc") + "'ki' of acl.rt.malloc: 'k' and 'i' accept bool (an int "
    "subclass)",
)
def _bool(p: Probe) -> Any:
    ptr, ret = p.acl.rt.malloc(True, False)
    if ret == 0:
        p.defer(p.acl.rt.free, ptr)
    return ret


@case(
    "args.k_wraps_above_64_bits",
    "arg-parsing",
    expect=[0, True],
    evidence=_at("rt.malloc") + "'k' of acl.rt.malloc keeps the low 64 bits "
    "(PyLong_AsUnsignedLongMask): 2**64 + 64 is a 64-byte request",
)
def _k_wrap(p: Probe) -> Any:
    ptr, ret = p.acl.rt.malloc((1 << 64) + 64, 0)
    if ret == 0:
        p.defer(p.acl.rt.free, ptr)
        # The wrapped size is 64: a 64-byte copy fits.
        src = p.pageable(b"w" * 64)
        return [ret, p.acl.rt.memcpy(ptr, 64, src, 64, 1) == 0]
    return [ret, False]


@case(
    "args.k_wraps_negative_handle",
    "arg-parsing",
    expect=100000,
    evidence=_at("rt.free") + "'k' of acl.rt.free: -(2**64) wraps to 0, the NULL pointer -> "
    "ACL_ERROR_INVALID_PARAM",
)
def _k_negative(p: Probe) -> Any:
    return p.acl.rt.free(-(1 << 64))


# ---------------------------------------------------------------------------- numpy integers


def _np() -> Any:
    import numpy

    return numpy


@case(
    "args.numpy.i_set_device",
    "arg-parsing",
    expect=0,
    evidence=_at("rt.set_device") + "'i' of acl.rt.set_device accepts numpy.int32 (__index__)",
)
def _np_set_device(p: Probe) -> Any:
    try:
        ret = p.acl.rt.set_device(_np().int32(p.device))
    except TypeError:
        return "TypeError"
    if ret == 0:
        p.defer(p.acl.rt.reset_device, p.device)
    return ret


@case(
    "args.numpy.i_get_mem_info",
    "arg-parsing",
    expect=0,
    evidence=_at("rt.get_mem_info") + "'i' of acl.rt.get_mem_info accepts numpy.int64 (__index__)",
)
def _np_mem_info(p: Probe) -> Any:
    try:
        return p.acl.rt.get_mem_info(_np().int64(1))[-1]
    except TypeError:
        return "TypeError"


@case(
    "args.numpy.i_memset_value",
    "arg-parsing",
    expect=0,
    evidence=_at("rt.memset") + "'kkik' of acl.rt.memset: the value ('i') accepts numpy.uint8",
)
def _np_memset(p: Probe) -> Any:
    dev = p.malloc(64)
    try:
        return p.acl.rt.memset(dev, 64, _np().uint8(7), 64)
    except TypeError:
        return "TypeError"


@case(
    "args.numpy.I_event_flag",
    "arg-parsing",
    expect=0,
    evidence=_at("rt.create_event_with_flag")
    + "'I' of acl.rt.create_event_with_flag accepts numpy.uint32",
)
def _np_event_flag(p: Probe) -> Any:
    try:
        event, ret = p.acl.rt.create_event_with_flag(_np().uint32(1))
    except TypeError:
        return "TypeError"
    if ret == 0:
        p.defer(p.acl.rt.destroy_event, event)
    return ret


@case(
    "args.numpy.k_malloc_size",
    "arg-parsing",
    expect="TypeError: args parse failed",
    evidence=_at("rt.malloc") + "'k' of acl.rt.malloc refuses numpy.int64 (PyLong_Check)",
)
def _np_malloc(p: Probe) -> Any:
    return p.raises(
        "rt.malloc",
        _np().int64(64),
        0,
        release=lambda r: r[1] == 0 and p.acl.rt.free(r[0]),
    )


@case(
    "args.numpy.k_free_pointer",
    "arg-parsing",
    expect="TypeError: args parse failed",
    evidence=_at("rt.free") + "'k' of acl.rt.free refuses numpy.uint64",
)
def _np_free(p: Probe) -> Any:
    ptr = p.ok("rt.malloc", 64, 0)
    alive = [True]
    p.defer(lambda: alive and p.acl.rt.free(ptr))
    return p.raises("rt.free", _np().uint64(ptr), release=lambda r: r == 0 and alive.pop())


# ---------------------------------------------------------------------------- per-letter checks
# Formats as pyACL's source has them (python/pyACL, grep PyArg_ParseTuple per function).
# CPython: 'I' masks to 32 bits (no overflow) and takes __index__ objects; 'i' range-checks;
# 'k'/'K' take only int. CHECK_NULL(PyArg_ParseTuple(...), "<name> args parse failed")
# (utils_methods.h) replaces whatever parsing raised, OverflowError included, with that TypeError.


@case(
    "args.type_error.rt.create_stream_with_config.flag_overflow",
    "arg-parsing",
    expect="TypeError: args parse failed",
    evidence="python/pyACL rt/rt_stream.cpp: create_stream_with_config parses 'ii' (priority, "
    "flag): a flag above INT_MAX overflows 'i'",
)
def _stream_flag_overflow(p: Probe) -> Any:
    return p.raises(
        "rt.create_stream_with_config",
        0,
        1 << 40,
        release=lambda r: r[1] == 0 and p.acl.rt.destroy_stream(r[0]),
    )


@case(
    "args.numpy.i_stream_config_flag",
    "arg-parsing",
    expect=0,
    evidence="python/pyACL rt/rt_stream.cpp: create_stream_with_config 'ii': the flag ('i') "
    "accepts numpy.int32 (__index__)",
)
def _np_stream_flag(p: Probe) -> Any:
    try:
        stream, ret = p.acl.rt.create_stream_with_config(0, _np().int32(0))
    except TypeError:
        return "TypeError"
    if ret == 0:
        p.defer(p.acl.rt.destroy_stream, stream)
    return ret


@case(
    "args.I_masks.get_cann_version",
    "arg-parsing",
    expect="(dict, ret=0)",
    evidence="python/pyACL py_init_acl.cpp: get_cann_version parses 'I': 2**32 masks to "
    "package 0 (ACL_PKG_NAME_CANN), no OverflowError",
)
def _cann_mask(p: Probe) -> Any:
    try:
        return shape(p.acl.get_cann_version(1 << 32))
    except TypeError as exc:
        return f"TypeError: {exc}"


@case(
    "args.numpy.I_event_ex_flag",
    "arg-parsing",
    expect=0,
    evidence="python/pyACL rt/rt_synchronize.cpp: create_event_ex_with_flag parses 'I', which "
    "accepts numpy.uint32",
)
def _np_event_ex_flag(p: Probe) -> Any:
    try:
        event, ret = p.acl.rt.create_event_ex_with_flag(_np().uint32(1))
    except TypeError:
        return "TypeError"
    if ret == 0:
        p.defer(p.acl.rt.destroy_event, event)
    return ret


@case(
    "args.I_masks.create_event_with_flag",
    "arg-parsing",
    expect=0,
    evidence="python/pyACL rt/rt_synchronize.cpp: create_event_with_flag parses 'I': "
    "2**32 + 1 masks to flag 1 (ACL_EVENT_SYNC)",
)
def _event_flag_mask(p: Probe) -> Any:
    try:
        event, ret = p.acl.rt.create_event_with_flag((1 << 32) + 1)
    except TypeError:
        return "TypeError"
    if ret == 0:
        p.defer(p.acl.rt.destroy_event, event)
    return ret


@case(
    "args.numpy.I_op_wait_timeout",
    "arg-parsing",
    expect=[0, 0],
    evidence="python/pyACL rt/rt_synchronize.cpp: set_op_wait_timeout and "
    "set_op_execute_time_out parse 'I', which accepts numpy.uint32",
)
def _np_op_timeout(p: Probe) -> Any:
    try:
        return [
            p.acl.rt.set_op_wait_timeout(_np().uint32(0)),
            p.acl.rt.set_op_execute_time_out(_np().uint32(0)),
        ]
    except TypeError:
        return "TypeError"


@case(
    "args.numpy.I_roi_config",
    "arg-parsing",
    expect=True,
    evidence="python/pyACL media/media_vpc.cpp: dvpp_create_roi_config parses 'IIII', which "
    "accepts numpy.uint32 and masks -1 to 2**32 - 1 (no error)",
)
def _np_roi(p: Probe) -> Any:
    media = p.acl.media
    np = _np()
    try:
        handles = [
            media.dvpp_create_roi_config(np.uint32(0), np.uint32(15), np.uint32(0), np.uint32(15)),
            media.dvpp_create_roi_config(0, -1, 0, -1),
        ]
    except TypeError:
        return "TypeError"
    for handle in handles:
        if handle:
            p.defer(media.dvpp_destroy_roi_config, handle)
    return all(handles)


@case(
    "args.numpy.K_stop_thread",
    "arg-parsing",
    expect="TypeError: args parse failed",
    evidence="python/pyACL util/thread.cpp: stop_thread parses 'K', which refuses numpy.uint64",
)
def _np_stop_thread(p: Probe) -> Any:
    tid = p.ok("util.start_thread", lambda: None, None)
    stopped = [False]
    p.defer(lambda: stopped[0] or p.acl.util.stop_thread(tid))

    def release(result: Any) -> None:
        stopped[0] = True

    return p.raises("util.stop_thread", _np().uint64(tid), release=release)


@case(
    "args.start_thread.cpython_errors",
    "arg-parsing",
    expect=["TypeError", "TypeError"],
    evidence="python/pyACL util/thread.cpp: start_thread has no CHECK_NULL around "
    "PyArg_ParseTuple('OO'), so CPython's own TypeError (argument count) comes through, not "
    "'args parse failed'; a callable check raises TypeError('parameter must be callable')",
)
def _start_thread_errors(p: Probe) -> Any:
    def release(result: Any) -> None:
        if type(result) is tuple and result[-1] == 0:
            p.acl.util.stop_thread(result[0])

    return [
        p.raises("util.start_thread", lambda: None, release=release),
        p.raises("util.start_thread", 5, None, release=release),
    ]


@case(
    "args.type_error.app_log",
    "arg-parsing",
    expect=["TypeError: args parse failed"] * 3,
    phase="bare",
    evidence="python/pyACL py_init_acl.cpp: app_log parses 'is': a str level, a bytes message "
    "and a message with an embedded NUL ('s' raises ValueError) all become the TypeError",
)
def _app_log_types(p: Probe) -> Any:
    return [
        p.raises("app_log", "1", "message"),
        p.raises("app_log", 1, b"message"),
        p.raises("app_log", 1, "embedded\x00nul"),
    ]


@case(
    "args.type_error.mdl.load_from_file.embedded_nul",
    "arg-parsing",
    expect=["TypeError: args parse failed", "TypeError: args parse failed"],
    evidence="python/pyACL mdl/mdl_wrap.cpp: load_from_file and query_size parse 's', which "
    "raises ValueError for an embedded NUL; CHECK_NULL turns it into the TypeError",
)
def _load_nul(p: Probe) -> Any:
    path = "model\x00.om"
    return [
        p.raises(
            "mdl.load_from_file", path, release=lambda r: r[1] == 0 and p.acl.mdl.unload(r[0])
        ),
        p.raises("mdl.query_size", path),
    ]


@case(
    "args.type_error.create_tensor_desc.dims_not_list",
    "arg-parsing",
    expect="TypeError",
    evidence="python/pyACL py_init_acl.cpp: create_tensor_desc parses 'iOi', then "
    "CHECK_NULL(PyList_Check(dims), 'argument 2 is not list'): a tuple raises that TypeError",
)
def _tensor_dims(p: Probe) -> Any:
    return p.raises(
        "create_tensor_desc", 0, (1, 4), 2, release=lambda h: h and p.acl.destroy_tensor_desc(h)
    )


@case(
    "args.type_error.data_type_size.overflow",
    "arg-parsing",
    expect="TypeError: args parse failed",
    phase="bare",
    evidence="python/pyACL py_init_acl.cpp: data_type_size parses 'i': 2**31 overflows",
)
def _dts_overflow(p: Probe) -> Any:
    return p.raises("data_type_size", 1 << 31)


@case(
    "args.no_parse_ignores_arguments",
    "arg-parsing",
    expect=["accepted"] * 5,
    evidence="python/pyACL rt/rt_device.cpp, py_init_acl.cpp, rt/rt_synchronize.cpp, "
    "mdl/mdl_wrap.cpp, media/media_common.cpp: functions with no argument (get_device_count, "
    "get_version, create_event, mdl.create_desc, media.dvpp_create_pic_desc) never call "
    "PyArg_ParseTuple, so extra positional arguments are ignored, not refused",
)
def _no_parse(p: Probe) -> Any:
    acl = p.acl
    out: list[Any] = []

    def call(api: str, destroy: Any = None) -> None:
        try:
            result = p.fn(api)(7)
        except TypeError as exc:
            out.append(f"TypeError: {exc}")
            return
        handle = result[0] if type(result) is tuple and result[-1] == 0 else result
        if destroy is not None and type(handle) is int and handle:
            p.defer(destroy, handle)
        out.append("accepted")

    call("rt.get_device_count")
    call("get_version")
    call("rt.create_event", acl.rt.destroy_event)
    call("mdl.create_desc", acl.mdl.destroy_desc)
    call("media.dvpp_create_pic_desc", acl.media.dvpp_destroy_pic_desc)
    return out


class _Index:
    """An object that is not an int but has ``__index__`` (as numpy integers do)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


@case(
    "args.index_object.i_and_I",
    "arg-parsing",
    expect=[0, 0, 0],
    evidence=_at("rt.set_device") + "'i' (set_device, create_stream_with_config) and 'I' "
    "(create_event_with_flag) call __index__ (CPython getargs.c), so any object with it works",
)
def _index_object(p: Probe) -> Any:
    rt = p.acl.rt
    out: list[Any] = []
    try:
        ret = rt.set_device(_Index(p.device))
    except TypeError:
        ret = "TypeError"
    if ret == 0:
        p.defer(rt.reset_device, p.device)
    out.append(ret)
    for api, args in (
        ("rt.create_event_with_flag", (_Index(1),)),
        ("rt.create_stream_with_config", (_Index(0), _Index(0))),
    ):
        try:
            handle, ret = p.fn(api)(*args)
        except TypeError:
            out.append("TypeError")
            continue
        if ret == 0:
            if api == "rt.create_event_with_flag":
                p.defer(rt.destroy_event, handle)
            else:
                p.defer(rt.destroy_stream, handle)
                p.defer(rt.synchronize_stream, handle)
        out.append(ret)
    return out


@case(
    "args.I_masks_to_32_bits",
    "arg-parsing",
    expect=[0, 0],
    evidence=_at("rt.create_event_with_flag") + "'I' of create_event_with_flag masks without "
    "overflow checking (CPython getargs.c): 2**32 + 1 is flag 1 (SYNC), which reset_event needs",
)
def _I_masks(p: Probe) -> Any:
    rt = p.acl.rt
    event, ret = rt.create_event_with_flag((1 << 32) + 1)
    if ret != 0:
        return [ret, None]
    p.defer(rt.destroy_event, event)
    return [ret, rt.reset_event(event, 0)]


@case(
    "args.numpy.I_cann_version",
    "arg-parsing",
    expect=0,
    evidence="python/pyACL py_init_acl.cpp: PyArg_ParseTuple format 'I' of "
    "acl.get_cann_version accepts numpy.uint8 (__index__, masked)",
)
def _np_cann_version(p: Probe) -> Any:
    try:
        return p.acl.get_cann_version(_np().uint8(0))[-1]
    except TypeError:
        return "TypeError"

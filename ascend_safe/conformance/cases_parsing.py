"""Argument parsing: pyACL parses positional arguments with ``PyArg_ParseTuple``.

Per format letter (CPython): ``i``/``I``/``l`` take any object with ``__index__`` (numpy
integers included; ``i`` range-checks), ``k``/``K`` take only real ``int`` (``bool`` included)
and keep the low 64 bits, ``s`` takes only ``str``. pyACL turns any parse failure, overflow
included, into ``TypeError("acl.<sub>.<fn> args parse failed")``.
"""

from __future__ import annotations

from typing import Any

from ._case import Probe, case

PARSE = "python/pyACL (hicann/runtime): PyArg_ParseTuple format "

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
        evidence=PARSE + f"of acl.{api}: {why}",
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
    evidence="python/pyACL: every function is METH_VARARGS (no keyword arguments)",
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
    evidence=PARSE + "'k' and 'i' accept bool (an int subclass)",
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
    evidence=PARSE + "'k' of acl.rt.malloc keeps the low 64 bits (PyLong_AsUnsignedLongMask): "
    "2**64 + 64 is a 64-byte request",
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
    evidence=PARSE + "'k' of acl.rt.free: -(2**64) wraps to 0, the NULL pointer -> "
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
    evidence=PARSE + "'i' of acl.rt.set_device accepts numpy.int32 (__index__)",
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
    evidence=PARSE + "'i' of acl.rt.get_mem_info accepts numpy.int64 (__index__)",
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
    evidence=PARSE + "'kkik' of acl.rt.memset: the value ('i') accepts numpy.uint8",
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
    evidence=PARSE + "'I' of acl.rt.create_event_with_flag accepts numpy.uint32",
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
    evidence=PARSE + "'k' of acl.rt.malloc refuses numpy.int64 (PyLong_Check)",
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
    evidence=PARSE + "'k' of acl.rt.free refuses numpy.uint64",
)
def _np_free(p: Probe) -> Any:
    ptr = p.ok("rt.malloc", 64, 0)
    alive = [True]
    p.defer(lambda: alive and p.acl.rt.free(ptr))
    return p.raises("rt.free", _np().uint64(ptr), release=lambda r: r == 0 and alive.pop())

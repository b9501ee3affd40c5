"""The simulated ``acl`` module tree: pyacl-style argument parsing and the function table."""

from __future__ import annotations

import ctypes
import operator
import types
import warnings
from typing import Any, Callable, Optional

from ._alloc import is_device_address
from ._core import NO_PARSE, ApiSpec
from ._media import DESCRIPTOR_PAIRS
from ._runtime import Simulator

__all__ = ["SPECS", "build_modules"]

_MASK64 = (1 << 64) - 1
_MASK32 = (1 << 32) - 1
_INT_MIN = -(1 << 31)
_INT_MAX = (1 << 31) - 1


#: py_init_acl.cpp GetPyDictFromVersion: the keys of get_cann_version's dict, built from the
#: (zeroed, on failure) aclCANNPackageVersion whatever ret is.
_CANN_VERSION_KEYS = (
    "version",
    "major_version",
    "minor_version",
    "release_version",
    "patch_version",
    "reserved",
)


def _spec(
    name: str, fmt: Optional[str], outs: Optional[tuple[Any, ...]] = (), **flags: Any
) -> ApiSpec:
    impl = "api_" + name.rsplit(".", 1)[-1]
    return ApiSpec(name=name, impl=impl, fmt=fmt, outs=outs, **flags)


#: Every simulated function: dotted name below ``acl``, parse format, outputs before ``ret``.
#: Formats are pyACL's own (``python/pyACL/py_init_acl.cpp``, ``rt/rt_device.cpp``,
#: ``rt/rt_context.cpp``, ``rt/rt_stream.cpp``, ``rt/rt_synchronize.cpp``, ``rt/rt_memory.cpp``);
#: letters as CPython's ``PyArg_ParseTuple`` (see ``_INT_LETTERS``); ``s`` str, ``O`` any object,
#: ``|`` starts optional arguments. ``NO_PARSE`` marks a wrapper that never calls
#: ``PyArg_ParseTuple`` (its ``args`` is unused), so it ignores whatever it is given; ``""``
#: would be a parse of no arguments, which refuses extra ones.
SPECS: tuple[ApiSpec, ...] = (
    _spec("init", "|s", needs_init=False),
    _spec("finalize", NO_PARSE, needs_init=False, cleanup=True),
    _spec("finalize_reference", NO_PARSE, (0,), needs_init=False, cleanup=True),
    _spec("get_version", NO_PARSE, (0, 0, 0), needs_init=False),
    _spec("get_soc_name", NO_PARSE, None, needs_init=False),
    _spec("get_recent_err_msg", NO_PARSE, None, needs_init=False),
    _spec("get_cann_version", "I", (dict.fromkeys(_CANN_VERSION_KEYS, ""),)),
    _spec("create_data_buffer", "kk", None, bare_default=0, needs_init=False),
    _spec("destroy_data_buffer", "k", needs_init=False, cleanup=True),
    _spec("get_data_buffer_addr", "k", None, bare_default=0, needs_init=False),
    _spec("get_data_buffer_size", "k", None, bare_default=0, needs_init=False),
    _spec("get_data_buffer_size_v2", "k", None, bare_default=0, needs_init=False),
    _spec("update_data_buffer", "kkk", needs_init=False),
    _spec("rt.set_device", "i"),
    _spec("rt.reset_device", "i", cleanup=True, locked=False),
    _spec("rt.reset_device_force", "i", cleanup=True),
    _spec("rt.get_device", NO_PARSE, (0,)),
    _spec("rt.get_device_count", NO_PARSE, (0,)),
    _spec("rt.get_run_mode", NO_PARSE, (0,), needs_init=False),
    _spec("rt.synchronize_device", NO_PARSE, locked=False),
    _spec("rt.synchronize_device_with_timeout", "i", locked=False),
    _spec("rt.create_context", "i", (0,)),
    _spec("rt.destroy_context", "k", cleanup=True),
    _spec("rt.set_context", "k", cleanup=True),
    _spec("rt.get_context", NO_PARSE, (0,), cleanup=True),
    _spec("rt.create_stream", NO_PARSE, (0,)),
    _spec("rt.create_stream_with_config", "ii", (0,)),
    _spec("rt.destroy_stream", "k", cleanup=True, locked=False),
    _spec("rt.destroy_stream_force", "k", cleanup=True, locked=False),
    _spec("rt.synchronize_stream", "k", locked=False),
    _spec("rt.synchronize_stream_with_timeout", "ki", locked=False),
    _spec("rt.stream_query", "k", (0,)),
    _spec("rt.create_event", NO_PARSE, (0,)),
    _spec("rt.create_event_with_flag", "I", (0,)),
    _spec("rt.create_event_ex_with_flag", "I", (0,)),
    _spec("rt.destroy_event", "k", cleanup=True),
    _spec("rt.record_event", "kk"),
    _spec("rt.reset_event", "kk"),
    _spec("rt.synchronize_event", "k", locked=False),
    _spec("rt.synchronize_event_with_timeout", "ki", locked=False),
    _spec("rt.query_event", "k", (0,)),
    _spec("rt.query_event_status", "k", (0,)),
    _spec("rt.query_event_wait_status", "k", (0,)),
    _spec("rt.event_elapsed_time", "kk", (0.0,)),
    _spec("rt.stream_wait_event", "kk"),
    _spec("rt.malloc", "ki", (0,)),
    _spec("rt.malloc_align32", "ki", (0,)),
    _spec("rt.malloc_cached", "ki", (0,)),
    _spec("rt.malloc_host", "k", (0,)),
    _spec("rt.free", "k", cleanup=True),
    _spec("rt.free_host", "k", cleanup=True),
    _spec("rt.memset", "kkik"),
    _spec("rt.memset_async", "kkikk"),
    _spec("rt.memcpy", "kkkki"),
    _spec("rt.memcpy_async", "kkkkik", locked=False),
    _spec("rt.get_mem_info", "i", (0, 0)),
    _spec("media.dvpp_malloc", "k", (0,)),
    _spec("media.dvpp_free", "k", cleanup=True),
    _spec("util.numpy_to_ptr", "O", None, needs_init=False, util=True, locked=False),
    _spec("util.numpy_contiguous_to_ptr", "O", None, needs_init=False, util=True, locked=False),
    _spec("util.ptr_to_numpy", "kOi", None, needs_init=False, util=True, locked=False),
    _spec("util.bytes_to_ptr", "O", None, needs_init=False, util=True, locked=False),
    _spec("util.ptr_to_bytes", "kk", None, needs_init=False, util=True, locked=False),
    # ---------------------------------------------------------------- functions the official
    # samples call (docs/simulator.md, Coverage). Formats from pyACL's source: py_init_acl.cpp,
    # util/thread.cpp, rt/rt_synchronize.cpp. The runtime has no init check on these (a
    # context or a subscription is what they need), so none is gated on acl.init.
    _spec("app_log", "is", None, needs_init=False, util=True, locked=False),
    _spec("data_type_size", "i", None, bare_default=0, needs_init=False, util=True),
    _spec("util.start_thread", "OO", (0,), needs_init=False, util=True, locked=False),
    _spec("util.stop_thread", "K", None, needs_init=False, util=True, locked=False),
    _spec("rt.subscribe_report", "Kk", needs_init=False),
    _spec("rt.unsubscribe_report", "Kk", needs_init=False, cleanup=True),
    _spec("rt.launch_callback", "OOik", needs_init=False),
    _spec("rt.process_report", "i", needs_init=False, locked=False),
    _spec("rt.set_op_wait_timeout", "I", needs_init=False),
    _spec("rt.set_op_execute_time_out", "I", needs_init=False),
    # ---------------------------------------------------------------- models (_model.py)
    # Formats and return shapes from pyACL mdl/mdl_wrap.cpp.
    _spec("mdl.load_from_file", "s", (0,)),
    _spec("mdl.load_from_mem", "kk", (0,)),
    _spec("mdl.load_from_file_with_mem", "skkkk", (0,)),
    _spec("mdl.load_from_mem_with_mem", "kkkkkk", (0,)),
    _spec("mdl.query_size", "s", (0, 0)),
    _spec("mdl.query_size_from_mem", "kk", (0, 0)),
    _spec("mdl.unload", "I", cleanup=True),
    _spec("mdl.create_desc", NO_PARSE, None, bare_default=0, needs_init=False),
    _spec("mdl.destroy_desc", "k", needs_init=False, cleanup=True),
    _spec("mdl.get_desc", "kI"),
    _spec("mdl.get_num_inputs", "k", None, bare_default=0, needs_init=False),
    _spec("mdl.get_num_outputs", "k", None, bare_default=0, needs_init=False),
    _spec("mdl.get_input_size_by_index", "kk", None, bare_default=0, needs_init=False),
    _spec("mdl.get_output_size_by_index", "kk", None, bare_default=0, needs_init=False),
    _spec("mdl.get_input_dims", "kk", ({},), needs_init=False),
    _spec("mdl.get_output_dims", "kk", ({},), needs_init=False),
    _spec("mdl.get_cur_output_dims", "kk", ({},), needs_init=False),
    _spec("mdl.get_input_data_type", "kk", None, bare_default=-1, needs_init=False),
    _spec("mdl.get_output_data_type", "kk", None, bare_default=-1, needs_init=False),
    _spec("mdl.get_input_format", "kk", None, bare_default=-1, needs_init=False),
    _spec("mdl.get_output_format", "kk", None, bare_default=-1, needs_init=False),
    _spec("mdl.get_input_name_by_index", "kk", None, needs_init=False),
    _spec("mdl.get_output_name_by_index", "kk", None, needs_init=False),
    _spec("mdl.get_input_index_by_name", "ks", (0,), needs_init=False),
    _spec("mdl.get_output_index_by_name", "ks", (0,), needs_init=False),
    _spec("mdl.get_dynamic_batch", "k", ({},), needs_init=False),
    _spec("mdl.get_dynamic_hw", "kk", ({},), needs_init=False),
    _spec("mdl.create_dataset", NO_PARSE, None, bare_default=0, needs_init=False),
    _spec("mdl.destroy_dataset", "k", needs_init=False, cleanup=True),
    _spec("mdl.add_dataset_buffer", "kk", (0,), needs_init=False),
    _spec("mdl.get_dataset_num_buffers", "k", None, bare_default=0, needs_init=False),
    _spec("mdl.get_dataset_buffer", "kk", None, bare_default=0, needs_init=False),
    _spec("mdl.set_dynamic_batch_size", "IkkK"),
    _spec("mdl.set_dynamic_hw_size", "IkkKK"),
    _spec("mdl.execute", "Ikk", locked=False),
    _spec("mdl.execute_async", "Ikkk"),
    # ------------------------------------------- descriptor create/destroy pairs (_media.py)
    *(
        spec
        for pair in DESCRIPTOR_PAIRS
        for spec in (
            _spec(pair.create, pair.create_fmt, None, bare_default=0, needs_init=False),
            _spec(
                pair.destroy,
                "k",
                None if pair.destroy_returns_none else (),
                needs_init=False,
                cleanup=True,
            ),
        )
    ),
)

#: Wrappers that let CPython's own argument-count TypeError through (util/thread.cpp does not
#: replace it with "args parse failed").
_CPYTHON_COUNT_ERROR = frozenset({"util.start_thread"})


#: Integer format letters: (C range or None when masked, bits when masked, needs a real int).
#: CPython's getargs.c: ``b h i l L`` call ``__index__`` and range-check (OverflowError);
#: ``B H I`` call ``__index__`` and mask without overflow checking; ``k K`` accept only
#: ``int`` objects (``PyLong_Check``; numpy integers raise TypeError) and mask.
_INT_LETTERS: dict[str, tuple[Optional[tuple[int, int]], int, bool]] = {
    "b": ((0, 255), 0, False),
    "h": ((-(1 << 15), (1 << 15) - 1), 0, False),
    "i": ((_INT_MIN, _INT_MAX), 0, False),
    "l": ((-(1 << 63), (1 << 63) - 1), 0, False),
    "L": ((-(1 << 63), (1 << 63) - 1), 0, False),
    "B": (None, 8, False),
    "H": (None, 16, False),
    "I": (None, 32, False),
    "k": (None, 64, True),
    "K": (None, 64, True),
}


def _parse_int(letter: str, value: Any) -> int:
    """One integer argument as ``PyArg_ParseTuple`` converts it; TypeError/OverflowError."""
    bounds, bits, exact = _INT_LETTERS[letter]
    if exact:
        if not isinstance(value, int):
            raise TypeError(f"an int is required, not {type(value).__name__}")
        number = int(value)
    else:
        if isinstance(value, float):
            raise TypeError("integer argument expected, got float")
        number = operator.index(value)
    if bounds is not None:
        low, high = bounds
        if not low <= number <= high:
            raise OverflowError(f"{number} is out of range {low}..{high}")
        return number
    return number & ((1 << bits) - 1)


def _parse(full: str, fmt: Optional[str], args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Check *args* against *fmt* like ``PyArg_ParseTuple``; TypeError like pyacl on failure.

    pyacl wraps every parse in ``CHECK_NULL(..., "acl.<fn> args parse failed")``, which sets a
    TypeError with that text whatever CPython raised (wrong type, OverflowError, ...). With
    :data:`NO_PARSE` nothing is parsed: the arguments are dropped unread.
    """
    if fmt is NO_PARSE:
        return ()
    required = fmt.split("|")[0]
    letters = fmt.replace("|", "")
    if not len(required) <= len(args) <= len(letters):
        raise TypeError(f"{full} args parse failed")
    out: list[Any] = []
    for letter, value in zip(letters, args):
        if letter in _INT_LETTERS:
            try:
                out.append(_parse_int(letter, value))
            except (TypeError, OverflowError, ValueError):
                raise TypeError(f"{full} args parse failed") from None
        elif letter == "s":
            if not isinstance(value, str) or "\0" in value:
                raise TypeError(f"{full} args parse failed")
            out.append(value)
        else:
            out.append(value)
    return tuple(out)


def _make(sim: Simulator, spec: ApiSpec) -> Callable[..., Any]:
    full = "acl." + spec.name

    def function(*args: Any, **kwargs: Any) -> Any:
        if kwargs:
            raise TypeError(f"{full}() takes no keyword arguments")
        if spec.name in _CPYTHON_COUNT_ERROR and len(args) != len(spec.fmt or ""):
            count = len(spec.fmt or "")
            raise TypeError(f"function takes exactly {count} arguments ({len(args)} given)")
        return sim.dispatch(spec, _parse(full, spec.fmt, args))

    short = spec.name.rsplit(".", 1)[-1]
    function.__name__ = short
    function.__qualname__ = short
    function.__doc__ = f"Simulated {full} (see ascend_safe.sim)."
    return function


# ------------------------------------------------------------------ acl.util behaviour


def _numpy() -> Any:
    import numpy

    return numpy


def _host_only(ptr: int, api: str) -> None:
    if ptr == 0 or is_device_address(ptr):
        raise ValueError(f"acl.util.{api}: 0x{ptr:x} is not host memory the host can read")


def _readable(sim: Simulator, ptr: int, size: int, api: str) -> int:
    """Real address the host reads for ``[ptr, ptr+size)``.

    In RC mode (run_mode 0) host and device memory are one, so a device pointer is readable
    (pyACL's util/bytes_convert.cpp only wraps the address); in host mode it is not.
    """
    if ptr != 0 and is_device_address(ptr) and sim.config.run_mode == 0:
        with sim.lock:
            alloc = sim.dev_map.find(ptr)
            if alloc is not None and not alloc.freed and ptr - alloc.ptr + size <= alloc.extent:
                return alloc.real + (ptr - alloc.ptr)
        raise ValueError(f"acl.util.{api}: 0x{ptr:x}+{size} is not inside live device memory")
    _host_only(ptr, api)
    return ptr


def _numpy_to_ptr(array: Any) -> int:
    np = _numpy()
    if not isinstance(array, np.ndarray):
        raise ValueError("acl.util.numpy_to_ptr expects a numpy.ndarray")
    warnings.warn(
        "acl.util.numpy_to_ptr will be deprecated, use acl.util.bytes_to_ptr",
        DeprecationWarning,
        stacklevel=3,
    )
    if not array.flags["C_CONTIGUOUS"]:
        warnings.warn("numpy_to_ptr: array is not contiguous", DeprecationWarning, stacklevel=3)
    return int(array.ctypes.data)


def _numpy_contiguous_to_ptr(array: Any) -> tuple[int, Any]:
    np = _numpy()
    if not isinstance(array, np.ndarray):
        raise ValueError("acl.util.numpy_contiguous_to_ptr expects a numpy.ndarray")
    contiguous = np.ascontiguousarray(array)
    return int(contiguous.ctypes.data), contiguous


_NPY_TYPES = {
    0: "bool",
    1: "int8",
    2: "uint8",
    3: "int16",
    4: "uint16",
    5: "int32",
    6: "uint32",
    7: "int64",
    8: "uint64",
    9: "longlong",
    10: "ulonglong",
    11: "float32",
    12: "float64",
    23: "float16",
}


def _ptr_to_numpy(sim: Simulator, ptr: int, shape: Any, npy_type: int) -> Any:
    np = _numpy()
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ValueError("acl.util.ptr_to_numpy: shape must be a tuple of non-negative ints")
    if npy_type not in _NPY_TYPES:
        raise ValueError(f"acl.util.ptr_to_numpy: unsupported npy type {npy_type}")
    dtype = np.dtype(_NPY_TYPES[npy_type])
    count = 1
    for n in shape:
        count *= n
    real = _readable(sim, ptr, count * dtype.itemsize, "ptr_to_numpy")
    raw = (ctypes.c_char * (count * dtype.itemsize)).from_address(real)
    return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)


def _bytes_to_ptr(data: Any) -> int:
    if not isinstance(data, bytes):
        raise ValueError("acl.util.bytes_to_ptr expects a bytes object")
    address = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value
    return int(address or 0)


_UTIL: dict[str, Callable[..., Any]] = {
    "api_numpy_to_ptr": _numpy_to_ptr,
    "api_numpy_contiguous_to_ptr": _numpy_contiguous_to_ptr,
    "api_bytes_to_ptr": _bytes_to_ptr,
}


def build_modules(sim: Simulator) -> dict[str, types.ModuleType]:
    """Fresh ``acl`` module tree (with rt, media, util, mdl) bound to *sim*."""
    for impl, fn in _UTIL.items():
        setattr(sim, impl, fn)

    def ptr_to_bytes(ptr: int, size: int) -> bytes:
        if ptr == 0:
            # util/bytes_convert.cpp: PyBytes_FromStringAndSize(NULL, size) is a new bytes
            # object of *size* unset bytes, not an error
            sim.violate("foreign_handle", f"ptr_to_bytes of NULL ({size} bytes of nothing)")
            return bytes(size)
        return ctypes.string_at(_readable(sim, ptr, size, "ptr_to_bytes"), size)

    def ptr_to_numpy(ptr: int, shape: Any, npy_type: int) -> Any:
        return _ptr_to_numpy(sim, ptr, shape, npy_type)

    sim.api_ptr_to_bytes = ptr_to_bytes  # type: ignore[attr-defined]
    sim.api_ptr_to_numpy = ptr_to_numpy  # type: ignore[attr-defined]
    root = types.ModuleType("acl", "Simulated pyacl (ascend_safe.sim); exports no constants.")
    root.__path__ = []
    root.__ascend_safe_sim__ = True  # type: ignore[attr-defined]
    modules = {"acl": root}
    for sub in ("rt", "media", "util", "mdl", "op"):
        module = types.ModuleType(f"acl.{sub}", f"Simulated pyacl acl.{sub}.")
        setattr(root, sub, module)
        modules[f"acl.{sub}"] = module
    for spec in SPECS:
        parts = spec.name.split(".")
        target = modules["acl" if len(parts) == 1 else f"acl.{parts[0]}"]
        setattr(target, parts[-1], _make(sim, spec))
    return modules

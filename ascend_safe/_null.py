"""The null backend, for benchmarks only: a pyacl module whose every call succeeds at once.

``ASCEND_SAFE_BACKEND=null`` selects it. Each function returns pyacl's shape for that API
(``ret`` alone, outputs then ``ret``, or a bare value), taken from the simulator's table of
pyacl functions that :mod:`ascend_safe._backend` passes in, so the two cannot drift apart.
Creates and allocations return fresh unique handles; nothing is validated, tracked or copied.
Timing the library on it measures the library's own cost, independent of any runtime.

It is not a simulator: device memory is a number with no bytes behind it, a copy moves
nothing, and no misuse is detected. Never use it to run or test a program.
"""

from __future__ import annotations

import ctypes
import itertools
import types
from collections.abc import Iterable, Iterator
from typing import Any, Callable, Protocol

__all__ = ["build"]

#: Where fresh handles start, and their spacing (pointer-like: aligned, never 0).
_FIRST_HANDLE = 0x7E00_0000_0000
_HANDLE_STEP = 0x1000

#: Outputs that are answers, not handles, where the table's failure default would mislead a
#: caller: one device, events complete, a named chip (the product table's default limit).
_ANSWERS: dict[str, Any] = {
    "rt.get_device_count": (1,),
    "rt.query_event_status": (1,),
    "get_soc_name": "null",
    "get_recent_err_msg": "",
}
#: Words in a function name that make its integer outputs new handles.
_MAKES_HANDLES = ("create", "malloc", "get_context", "load_from", "_to_ptr")


class _Spec(Protocol):
    """What the null backend reads from one entry of the simulator's table."""

    @property
    def name(self) -> str: ...
    @property
    def outs(self) -> tuple[Any, ...] | None: ...
    @property
    def bare_default(self) -> Any: ...


def build(specs: Iterable[_Spec]) -> types.ModuleType:
    """A fresh ``acl`` module tree (``rt``, ``media``, ``util``, ``mdl``, ``op``) of null
    functions, one per entry of *specs*."""
    handles = itertools.count(_FIRST_HANDLE, _HANDLE_STEP)
    #: pinned host memory is real: the library writes staging buffers with ctypes.memmove
    pinned: dict[int, Any] = {}
    root = types.ModuleType("acl", "Null pyacl (ascend_safe._null): for benchmarks only.")
    root.__path__ = []
    modules = {"acl": root}
    for sub in ("rt", "media", "util", "mdl", "op"):
        module = types.ModuleType(f"acl.{sub}", f"Null pyacl acl.{sub}.")
        setattr(root, sub, module)
        modules[sub] = module
    for spec in specs:
        parts = spec.name.split(".")
        target = root if len(parts) == 1 else modules[parts[0]]
        fn = _function(spec, handles, pinned)
        fn.__name__ = fn.__qualname__ = parts[-1]
        setattr(target, parts[-1], fn)
    return root


def _function(spec: _Spec, handles: Iterator[int], pinned: dict[int, Any]) -> Callable[..., Any]:
    name = spec.name
    fresh = handles.__next__
    if name == "rt.malloc_host":

        def malloc_host(size: int) -> tuple[int, int]:
            block = (ctypes.c_char * max(int(size), 1))()
            ptr = ctypes.addressof(block)
            pinned[ptr] = block
            return ptr, 0

        return malloc_host
    if name == "rt.free_host":

        def free_host(ptr: int) -> int:
            pinned.pop(ptr, None)
            return 0

        return free_host
    if name == "util.ptr_to_bytes":
        return lambda ptr, size: bytes(size)
    answer = _ANSWERS.get(name)
    makes_handles = any(word in name for word in _MAKES_HANDLES)
    if spec.outs is None:  # a bare value
        if answer is not None:
            value = answer
            return lambda *args: value
        if makes_handles:
            return lambda *args: fresh()
        default = spec.bare_default
        return lambda *args: default
    if not spec.outs:  # ret alone
        return lambda *args: 0
    outs = answer if answer is not None else spec.outs
    if makes_handles and len(outs) == 1:
        return lambda *args: (fresh(), 0)
    result = (*outs, 0)
    return lambda *args: result

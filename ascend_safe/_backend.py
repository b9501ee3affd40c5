"""The backend boundary: the one module that calls pyacl.

It picks real pyacl or the built-in simulator (``ASCEND_SAFE_BACKEND`` = ``auto`` | ``acl`` |
``sim``; ``null``, for benchmarks only, is :mod:`ascend_safe._null`), knows pyacl's three
return shapes, and turns a non-zero ``ret`` into an :class:`~ascend_safe.errors.AclError`.
Nothing else in the library imports ``acl``.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import tempfile
import threading
import types
import warnings
from typing import Any, Callable

from . import _null, _process
from .errors import (
    BackendFallbackWarning,
    BackendUnavailableError,
    ForkSafetyError,
    make_acl_error,
)

__all__ = [
    "acl",
    "backend_name",
    "call",
    "exit_hooks",
    "recent_error_message",
    "simulated_slot_dir",
]

_log = logging.getLogger("ascend_safe")

#: APIs that return a bare value instead of ``ret`` (no ``aclError``); a zero/None means failure
#: only where listed in :data:`_VALUE_FAILS_ON_ZERO`.
_VALUE_APIS = frozenset(
    {
        "create_data_buffer",
        "get_data_buffer_addr",
        "get_data_buffer_size",
        "get_data_buffer_size_v2",
        "get_soc_name",
        "get_recent_err_msg",
        "mdl.create_desc",
        "mdl.create_dataset",
        "mdl.get_dataset_num_buffers",
        "mdl.get_dataset_buffer",
        "util.numpy_to_ptr",
        "util.numpy_contiguous_to_ptr",
        "util.ptr_to_numpy",
        "util.bytes_to_ptr",
        "util.ptr_to_bytes",
    }
)
_VALUE_FAILS_ON_ZERO = frozenset({"create_data_buffer", "mdl.create_desc", "mdl.create_dataset"})
#: pyacl reports no code when a bare-value create fails; the library reports this one.
VALUE_FAILURE_CODE = 500000


_lock = threading.Lock()
_module: types.ModuleType | None = None
_name: str | None = None
ENV_BACKEND = _process.variable("ASCEND_SAFE_BACKEND", "the backend: auto, acl or sim")
_functions: dict[str, Callable[..., Any]] = {}
#: Callbacks run once at interpreter exit, in registration order, before pyacl's own.
exit_hooks: list[Callable[[], None]] = []


def _select() -> tuple[types.ModuleType, str]:
    choice = os.environ.get(ENV_BACKEND, "auto").strip().lower() or "auto"
    if choice not in ("auto", "acl", "sim", "null"):
        raise ValueError(
            f"ASCEND_SAFE_BACKEND={choice!r} is not valid: use 'auto', 'acl' or 'sim' "
            "('null' is for benchmarks only)"
        )
    if choice == "null":
        from .sim._api import SPECS  # the table of pyacl's functions, not the simulator

        return _null.build(SPECS), "null"
    if choice == "sim":
        from . import sim

        return sim.acl_module(), "sim"
    try:
        import acl as real  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        if choice == "acl":
            raise BackendUnavailableError(
                "ASCEND_SAFE_BACKEND=acl but pyacl cannot be imported "
                f"({exc}); install CANN and source its set_env.sh, or use ASCEND_SAFE_BACKEND=sim"
            ) from exc
        from . import sim

        # Decided once: child processes (worker pools) inherit the choice and stay silent.
        os.environ["ASCEND_SAFE_BACKEND"] = "sim"
        warnings.warn(
            f"pyacl (import acl) is not available ({exc}): ascend_safe uses its simulator. "
            "Set ASCEND_SAFE_BACKEND=sim to choose it explicitly, or install CANN and source "
            "its set_env.sh for the real device",
            BackendFallbackWarning,
            stacklevel=_caller_level(),
        )
        return sim.acl_module(), "sim"
    module: types.ModuleType = real
    return module, ("sim" if getattr(module, "__ascend_safe_sim__", False) else "acl")


def _caller_level() -> int:
    """``stacklevel`` for a warning raised here that points at the first caller outside the
    package."""
    level, frame = 2, sys._getframe(2)  # _select's caller
    while frame is not None and frame.f_globals.get("__name__", "").startswith("ascend_safe"):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def acl() -> types.ModuleType:
    """The pyacl module in use, loaded on first need."""
    module = _module
    if module is None:
        module = _load()
    return module


def _load() -> types.ModuleType:
    global _module, _name
    with _lock:
        if _module is None:
            module, name = _select()
            _name = name
            _module = module
            # Registered after pyacl is imported, so it runs before pyacl's own exit handlers.
            atexit.register(_run_exit_hooks)
        return _module


def backend_name() -> str:
    """``"acl"`` (real pyacl), ``"sim"`` (the built-in simulator) or ``"null"`` (calls that do
    nothing, for benchmarks only); loads the backend."""
    acl()
    assert _name is not None
    return _name


def simulated_slot_dir() -> str | None:
    """On the simulator, the library's slot directory inside the simulated machine's state
    directory (never the real one); None on real pyacl."""
    name = backend_name()
    if name == "null":  # never the real slots: the null backend holds no device
        return os.path.join(tempfile.gettempdir(), f"ascend_safe-null-slots-{os.getuid()}")
    if name != "sim":
        return None
    from . import sim  # already imported: the simulator is the backend

    return os.path.join(sim.state_dir(), "ascend_safe-slots")


def simulated_process_limit() -> int | None:
    """On the simulator, the per-device process limit of the simulated machine (not of the
    host the simulator runs on); None on real pyacl and the null backend."""
    if backend_name() != "sim":
        return None
    from . import sim  # already imported: the simulator is the backend

    return sim.process_limit()


def _run_exit_hooks() -> None:
    for hook in exit_hooks:
        try:
            hook()
        except Exception as exc:  # exit must go on; say what went wrong, once, without traceback
            _log.warning("ascend_safe exit teardown: %s", exc)


def function(api: str) -> Callable[..., Any]:
    """The pyacl function named *api* (``"rt.malloc"``, ``"init"``), cached."""
    fn = _functions.get(api)
    if fn is None:
        target: Any = acl()
        for part in api.split("."):
            target = getattr(target, part)
        fn = _functions[api] = target
    return fn


def has(api: str) -> bool:
    """Whether the pyacl in use offers *api* (newer calls are missing from older CANN)."""
    try:
        function(api)
    except AttributeError:
        return False
    return True


def recent_error_message() -> str | None:
    """Fetch (and clear) pyacl's error text for this thread, if any; never raises."""
    try:
        text = function("get_recent_err_msg")()
    except Exception:
        return None
    return text if isinstance(text, str) and text else None


def _usable(api: str) -> Callable[..., Any]:
    """*api*'s function, refusing in a forked child of a process that used pyacl."""
    state = _process.state
    if state.forked_after_use:
        raise ForkSafetyError(_process.FORK_ADVICE)
    state.acl_used = True
    return _functions.get(api) or function(api)


def call(api: str, *args: Any, resource: object = None) -> Any:
    """Call pyacl's *api* and return its outputs, raising an ``AclError`` on failure.

    ``ret`` alone gives ``None``; ``(out, ret)`` gives ``out``; ``(a, b, ret)`` gives ``(a, b)``.
    *resource* names what the call was about, for the error message.
    """
    state = _process.state
    if state.forked_after_use:
        raise ForkSafetyError(_process.FORK_ADVICE)
    state.acl_used = True
    result = (_functions.get(api) or function(api))(*args)
    if type(result) is int:
        if result:
            raise _error(result, api, resource)
        return None
    if type(result) is tuple:
        ret = result[-1]
        if ret:
            raise _error(ret, api, resource)
        return result[0] if len(result) == 2 else result[:-1]
    raise TypeError(f"acl.{api} returned {result!r}; use call_value() for bare-value APIs")


def call_value(api: str, *args: Any, resource: object = None) -> Any:
    """Call a bare-value API (no ``ret``); a ``0`` from a create call raises."""
    result = _usable(api)(*args)
    if api in _VALUE_FAILS_ON_ZERO and not result:
        raise _error(VALUE_FAILURE_CODE, api, resource)
    return result


def _error(code: int, api: str, resource: object) -> Exception:
    return make_acl_error(
        code,
        "acl." + api,
        recent_message=recent_error_message(),
        resource=None if resource is None else repr(resource),
    )

"""A strict, in-process simulator of pyacl (CANN's ``import acl``).

Unmodified pyacl programs run on it (``install()`` puts it in ``sys.modules["acl"]``), real bytes
move, streams run asynchronously, and misuse is recorded as :class:`Violation` records. It only
uses the standard library (numpy is imported lazily by ``acl.util`` numpy helpers) and never
imports the rest of ``ascend_safe``. Full documentation: ``docs/simulator.md``.

Layout, split by domain like pyACL's own source: ``_core`` (handles, dispatch, violations,
faults), ``_stream`` (streams and events), ``_context``, ``_memory`` (over ``_alloc``'s address
ranges), ``_buffer`` (data buffers), ``_model`` (models, descriptions, datasets; the model file
format is ``_model_file``), ``_media`` (descriptor create/destroy pairs), ``_process``
(process-creation hook, hibernation), ``_slots`` (the machine's shared state:
slots and the memory ledger), ``_callback`` (report threads, host callbacks), ``_applog``
(``acl.app_log``) and ``_runtime`` (init, devices, teardown), which composes them into
:class:`Simulator`; ``_api`` builds the ``acl`` module tree; ``_signals`` defers Python signal
handlers during calls.

The source decides: behaviour follows pyACL's C source (``hicann/runtime``: ``python/pyACL/`` for
argument formats and return shapes, ``src/acl/aclrt_impl/`` and ``src/runtime/api/impl/`` for
checks and error codes). Where the documentation states a restriction the source does not
enforce (acl.init first, 64-byte aligned and pinned memcpy_async memory, staying inside the
requested size), the call succeeds as on the runtime and a ``documented_restriction`` violation
is recorded; the ``strict`` option returns the documented error instead. Signals arriving while
the main thread is inside a call run their Python handlers when the call returns, as with C.

Module tree: ``acl`` (init, finalize, finalize_reference, get_version, get_soc_name,
get_recent_err_msg, get_cann_version, data buffers, data_type_size, app_log, tensor
descriptions), ``acl.rt`` (device, context, stream, event, memory, report threads and host
callbacks, op timeouts), ``acl.media`` (dvpp_malloc, dvpp_free, descriptor pairs), ``acl.util``
(numpy/bytes pointer helpers, start_thread, stop_thread), ``acl.mdl`` (models, datasets, AIPP),
``acl.op`` (attributes). No constants are exported, as in pyacl. Arguments are positional only
and parsed per pyACL's format string with CPython's rules (``i``/``I`` accept any ``__index__``
object, ``k``/``K`` only ``int``); a failure raises ``TypeError("acl.<sub>.<fn> args parse
failed")``.

Options (``configure(**options)``; the environment variable ``ASCEND_SAFE_SIM_CONFIG``, a JSON
object of options, then ``ASCEND_SAFE_SIM_<OPTION>``, read at import and at ``reset()``;
``configure()`` writes its options to the environment so child processes inherit them; unknown
option -> TypeError, bad value -> ValueError):

- ``device_count`` (2), ``memory_per_device`` (1 GiB budget per device, shared by every process
  of the simulated machine; only allocated bytes are backed), ``soc_name`` ("Ascend910B4"),
  ``run_mode`` (1 = ACL_HOST, 0 = ACL_DEVICE/RC), ``vm`` (False).
- ``state_dir`` (``$TMPDIR/ascend_safe_sim-<uid>``): the simulated machine. Processes using the
  same directory share its process slots and device memory (see ``_slots``).
- ``max_procs_per_device`` (None: 63 for Ascend910B*/Ascend910_93*, else 64; 32 if ``vm``),
  enforced across real processes with ``flock``-ed slot files in ``state_dir``. A full device
  makes ``set_device`` return 207012.
- ``rc_malloc_blocks`` (True), ``rc_malloc_timeout`` (10.0 s): in RC mode a malloc that does not
  fit blocks until memory is freed (in any process); on timeout it returns 207001 and records
  ``rc_malloc_hang``.
- ``call_latency`` (0.0 s slept in every call), ``async_delay`` (0.0 s per queued stream task).
- ``lose_device_on_hibernate`` (True): see :func:`hibernate`.
- ``record_file`` (None): violations are also appended to this file as JSON lines, so a parent
  sees those of its children.
- ``model_cost_per_mb`` (0.002 s): time a model execution takes per MiB it reads and writes.
- ``strict`` (False): documented restrictions return their documented error instead of
  being recorded as ``documented_restriction`` violations.

Every behaviour and error code, with what the source does and why the simulator differs where
it does, is listed in ``docs/simulator.md``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import types
from collections.abc import Iterator, Sequence
from typing import Any, Optional

from . import _config, _model_file, _slots
from ._api import SPECS, build_modules
from ._core import Violation
from ._runtime import Simulator
from ._signals import DEFERRAL

__all__ = [
    "Violation",
    "acl_module",
    "call_counts",
    "clear_faults",
    "clear_violations",
    "configure",
    "hibernate",
    "hold_streams",
    "initialized",
    "inject_fault",
    "install",
    "live_handles",
    "memory_usage",
    "model_bytes",
    "process_limit",
    "reset",
    "reset_call_counts",
    "state_dir",
    "uninstall",
    "violations",
    "write_model",
]

_SIM = Simulator()
_MODULES: dict[str, types.ModuleType] = build_modules(_SIM)
_FAULTABLE = frozenset(spec.name for spec in SPECS if not spec.util)
_ALL_APIS = frozenset(spec.name for spec in SPECS)

os.register_at_fork(after_in_child=lambda: _SIM.after_fork_in_child())


def acl_module() -> types.ModuleType:
    """The simulated ``acl`` module, without installing it in ``sys.modules``."""
    return _MODULES["acl"]


def install() -> types.ModuleType:
    """Make ``import acl`` (and its submodules) the simulator; idempotent.

    From the main thread this also wraps the Python signal handlers installed so far, so their
    signals are deferred while a simulated call runs (handlers installed later are wrapped by
    ``signal.signal``; otherwise the first call from the main thread does it).
    """
    DEFERRAL.install()
    sys.modules.update(_MODULES)
    return _MODULES["acl"]


def uninstall() -> None:
    """Remove the simulated modules from ``sys.modules`` (only if they are ours)."""
    for name, module in _MODULES.items():
        if sys.modules.get(name) is module:
            del sys.modules[name]


def configure(**options: Any) -> None:
    """Change simulator options (see the module docstring); all-or-nothing.

    The options are also written to the environment (``ASCEND_SAFE_SIM_CONFIG``), so processes
    started afterwards (workers, multiprocessing spawn and forkserver, Python subprocesses)
    use them too.
    """
    checked = _config.validate(options)
    with _SIM.lock:
        for name, value in checked.items():
            setattr(_SIM.config, name, value)
        _config.publish(checked)


def reset() -> None:
    """Tear down all simulator state, undo ``configure()`` (in the environment too) and
    re-read defaults and environment variables (tests)."""
    _config.restore_env()
    with _SIM.uninterruptible():
        _SIM.reset()


def state_dir() -> str:
    """The simulated machine's state directory (made, mode 0700, if missing).

    Every process using the same directory shares one machine: process slots, device memory
    budget. Raises ``OSError`` if the directory cannot be used.
    """
    path = _SIM.config.slot_dir()
    _slots.ensure_dir(path)
    return path


def process_limit() -> int:
    """Processes the simulated machine allows per device (``max_procs_per_device``, else the
    product's limit for ``soc_name`` and ``vm``), as ``set_device`` enforces it."""
    return _SIM.config.process_limit()


def memory_usage(device: int = 0) -> dict[int, int]:
    """Device memory bytes held on *device* by each live process (PID) of the simulated
    machine, this one included; processes holding none are left out."""
    if type(device) is not int or device < 0:
        raise ValueError(f"device must be an int >= 0, got {device!r}")
    with _SIM.lock:
        return _slots.machine(state_dir()).ledger(device).usage()


def _api_name(api: str) -> str:
    name = api[4:] if api.startswith("acl.") else api
    if name not in _ALL_APIS:
        raise ValueError(f"unknown pyacl api {api!r}")
    return name


def inject_fault(api: str, code: int, *, after: int = 0, times: int = 1) -> None:
    """Make *api* (``"rt.malloc"``) return *code* without side effect.

    The first *after* calls run normally; the next *times* calls fail.
    """
    name = _api_name(api)
    if name not in _FAULTABLE:
        raise ValueError(f"acl.{name} has no return code to fault")
    if type(code) is not int:
        raise ValueError(f"fault code must be an int, got {code!r}")
    if type(after) is not int or after < 0:
        raise ValueError(f"after must be an int >= 0, got {after!r}")
    if type(times) is not int or times < 1:
        raise ValueError(f"times must be an int >= 1, got {times!r}")
    _SIM.inject_fault(name, code, after, times)


def clear_faults() -> None:
    """Remove every injected fault."""
    with _SIM.lock:
        _SIM.faults.clear()


def call_counts() -> dict[str, int]:
    """How many times each api (``"rt.malloc"``) was called since the last reset."""
    with _SIM.lock:
        return dict(_SIM.call_counts)


def reset_call_counts() -> None:
    """Zero the call counters."""
    with _SIM.lock:
        _SIM.call_counts.clear()


def live_handles() -> dict[str, list[int]]:
    """What is still set, created or allocated in this process, by kind; ``{}`` means nothing."""
    return _SIM.live_handles()


def initialized() -> bool:
    """Whether the ``acl.init`` refcount is above zero."""
    return _SIM.init_count > 0


def violations() -> list[Violation]:
    """Recorded violations (including other processes' ones from ``record_file``)."""
    return _SIM.violations()


def clear_violations() -> None:
    """Forget recorded violations (and empty ``record_file``)."""
    _SIM.clear_violations()


def hibernate() -> None:
    """Simulate a system sleep and wake; set devices are flagged and (by default) lost."""
    _SIM.hibernate()


@contextlib.contextmanager
def hold_streams() -> Iterator[None]:
    """While held, stream workers start no task, so queued async work stays in flight."""
    _SIM.hold()
    try:
        yield
    finally:
        _SIM.unhold()


def model_bytes(
    *,
    inputs: Sequence[Sequence[Any]],
    outputs: Sequence[Sequence[Any]],
    ops: Optional[Sequence[dict[str, Any]]] = None,
    dynamic_batch: Optional[Sequence[int]] = None,
    dynamic_hw: Optional[Sequence[Sequence[int]]] = None,
) -> bytes:
    """The bytes of a simulated model (for ``acl.mdl.load_from_mem``); see :func:`write_model`."""
    return _model_file.encode(
        inputs=inputs, outputs=outputs, ops=ops, dynamic_batch=dynamic_batch, dynamic_hw=dynamic_hw
    )


def write_model(
    path: str | os.PathLike[str],
    *,
    inputs: Sequence[Sequence[Any]],
    outputs: Sequence[Sequence[Any]],
    ops: Optional[Sequence[dict[str, Any]]] = None,
    dynamic_batch: Optional[Sequence[int]] = None,
    dynamic_hw: Optional[Sequence[Sequence[int]]] = None,
) -> None:
    """Write a model file the simulator loads (``acl.mdl.load_from_file``); needs numpy.

    *inputs* and *outputs* are sequences of ``(name, dtype, shape)`` (optionally a fourth item,
    the format ``"NCHW"``, ``"NHWC"`` or ``"ND"``); a ``-1`` dim is dynamic. *ops* is the
    pipeline, a list of dicts such as ``{"op": "matmul", "weight": array}``,
    ``{"op": "mul", "value": 2.0}``, ``{"op": "add", "input": "b"}``, ``{"op": "relu"}``,
    ``{"op": "softmax", "axis": -1}``, ``{"op": "argmax"}``, ``{"op": "reshape", "shape": [..]}``,
    ``{"op": "output", "name": "..."}`` (see docs/simulator.md). ``ops=None`` with one input and
    one output of the same dtype and shape is the identity. *dynamic_batch* (batch sizes) or
    *dynamic_hw* (``[height, width]`` pairs) add the ``ascend_mbatch_shape_data`` input.
    Raises ValueError if the simulator would refuse the model.
    """
    data = model_bytes(
        inputs=inputs, outputs=outputs, ops=ops, dynamic_batch=dynamic_batch, dynamic_hw=dynamic_hw
    )
    with open(path, "wb") as handle:
        handle.write(data)


def _state_for_tests() -> Optional[Simulator]:
    """The simulator instance (internal; for white-box tests)."""
    return _SIM

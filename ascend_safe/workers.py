"""Worker processes that are safe by construction: spawn-based, one device session each.

``@worker(device=0)`` makes a function safe to run in worker processes: it refuses to run in a
forked child of a pyacl process, opens one device session per process (lazily, reused across
calls), releases what a call left open (and reports it), tears down at process exit, and asks the
kernel to kill the worker when its parent dies (``PR_SET_PDEATHSIG``), so orphans never hold a
device. :func:`worker_pool` and :func:`worker_mp_pool` build spawn-based pools whose workers are
spread over devices.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import functools
import logging
import multiprocessing
import multiprocessing.pool
import multiprocessing.util
import os
import signal
import sys
import threading
import warnings
import weakref
from collections import Counter
from collections.abc import Sequence
from typing import Any, Callable, TypeVar

from . import _backend, _lifetime, _process, _runtime
from .device import Device
from .errors import ForkSafetyError, ResourceLeakError

__all__ = [
    "LEAK_POLICIES",
    "close_worker_sessions",
    "current_device",
    "keep",
    "worker",
    "worker_mp_pool",
    "worker_pool",
]

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R", bound=_lifetime.Resource)
LEAK_POLICIES = ("warn", "raise", "ignore")
_PR_SET_PDEATHSIG = 1
_PARENT_DEATH_SIGNAL = signal.SIGUSR2

_log = logging.getLogger("ascend_safe")
_lock = threading.Lock()


class _Hooks:
    """Extension points filled in by modules above this one (:mod:`ascend_safe.suspend`)."""

    #: The context manager each worker call runs in (the gate of the suspend coordinator
    #: active in this process), or None for none.
    unit_gate: Callable[[], contextlib.AbstractContextManager[object] | None] | None = None
    #: For each new pool: ``(worker_fn, worker_arg, attach)``; each worker of the pool runs
    #: ``worker_fn(worker_arg)`` when it starts, and ``attach(pool)`` runs in this process.
    pool_link: Callable[[], tuple[Callable[[Any], None], Any, Callable[[object], None]]] | None
    pool_link = None


hooks = _Hooks()
_calls = threading.local()  # .stack: device sessions of the worker calls running in this thread


class _WorkerProcess:
    """What this process knows about being a worker."""

    #: Device picked for this process by a pool initializer (None outside pools).
    pool_device: int | None = None
    #: Open sessions, by device id.
    sessions: dict[int, Device] = {}
    prepared_pid = 0
    #: Resources kept across calls (see :func:`keep`).
    kept: weakref.WeakSet[_lifetime.Resource] = weakref.WeakSet()


_here = _WorkerProcess()


def keep(resource: R) -> R:
    """Keep *resource* open across worker calls: it is not a leak of the call that made it.

    For what a worker process loads once and reuses, such as a model behind a cached loader::

        @functools.cache
        def load(path: str) -> Model:
            return keep(Model(current_device(), path))

    It still closes with its device session (at process exit, or
    :func:`close_worker_sessions`). Returns *resource*.
    """
    if not isinstance(resource, _lifetime.Resource):
        raise TypeError(f"keep() takes a resource object, not {type(resource).__name__}")
    _here.kept.add(resource)
    return resource


def current_device() -> Device:
    """The device session of the running worker call (or of this pool worker process)."""
    stack = getattr(_calls, "stack", None)
    if stack:
        dev: Device = stack[-1]
        return dev
    if _here.pool_device is not None:
        return _session(_here.pool_device)
    raise RuntimeError(
        "current_device() is only available inside an @ascend_safe.worker function or in a "
        "worker of ascend_safe.worker_pool()"
    )


def worker(device: int | None = None, *, leaks: str = "warn") -> Callable[[F], F]:
    """Decorate a function to run in worker processes with a device session.

    *device*: the device to open (None: the one the pool assigned to this worker, else 0).
    *leaks*: what to do with resources a call leaves open, after releasing them: ``"warn"``
    (``ResourceWarning`` and a log line), ``"raise"`` (:class:`ResourceLeakError`), ``"ignore"``.
    """
    if leaks not in LEAK_POLICIES:
        raise ValueError(f"leaks must be one of {', '.join(LEAK_POLICIES)}, not {leaks!r}")
    if device is not None and (isinstance(device, bool) or not isinstance(device, int)):
        raise TypeError(f"device must be an int or None, not {type(device).__name__}")

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            _prepare_process()
            gate = None if hooks.unit_gate is None else hooks.unit_gate()
            if gate is None:
                return _run_call(fn, device, leaks, args, kwargs)
            with gate:  # the session opens inside: a suspend may have closed it
                return _run_call(fn, device, leaks, args, kwargs)

        run.__ascend_safe_worker__ = True  # type: ignore[attr-defined]
        return run  # type: ignore[return-value]

    return decorate


def _run_call(
    fn: Callable[..., Any], device: int | None, leaks: str, args: Any, kwargs: Any
) -> Any:
    dev = _session(_pick_device(device))
    stack = getattr(_calls, "stack", None)
    if stack is None:
        stack = _calls.stack = []
    stack.append(dev)
    failed = False
    with _lifetime.tracking() as tracker:
        try:
            return fn(*args, **kwargs)
        except BaseException:
            failed = True
            raise
        finally:
            stack.pop()
            _release_leftovers(fn, tracker, leaks, failed)


def _pick_device(device: int | None) -> int:
    if device is not None:
        return device
    return 0 if _here.pool_device is None else _here.pool_device


def _session(device_id: int) -> Device:
    dev = _here.sessions.get(device_id)
    if dev is not None and not dev.closed:
        return dev
    with _lock:
        dev = _here.sessions.get(device_id)
        if dev is None or dev.closed:
            if close_worker_sessions not in _backend.exit_hooks:  # before the exit leak report
                _backend.exit_hooks.insert(0, close_worker_sessions)
            dev = _here.sessions[device_id] = Device(device_id)
    return dev


def close_worker_sessions() -> None:
    """Close the device sessions that worker calls opened in this process.

    Done at exit (they are not leaks, so not reported); call it to release the device earlier,
    e.g. after running worker functions in the main process.
    """
    for dev in list(_here.sessions.values()):
        try:
            dev.close()
        except Exception as exc:
            _log.warning("ascend_safe worker: closing %r at exit failed: %s", dev, exc)
    _here.sessions.clear()


def _release_leftovers(
    fn: Callable[..., Any], tracker: _lifetime.CallTracker, leaks: str, failed: bool
) -> None:
    """Release what this call left open; count what it let the garbage collector find open."""
    _lifetime.drain_deferred()  # objects the call dropped while open
    left = [
        r
        for r in tracker.still_open()
        if r not in _here.sessions.values() and r not in _here.kept
    ]
    if not left and not tracker.collected:
        return
    kinds = Counter(type(r).__name__ for r in left) + tracker.collected
    report = ", ".join(f"{n} {name}" for name, n in sorted(kinds.items()))
    for resource in reversed(left):
        try:
            resource.close()
        except Exception as exc:
            _log.warning("ascend_safe worker: releasing %r failed: %s", resource, exc)
    name = getattr(fn, "__qualname__", repr(fn))
    message = f"{name} left resources open; they were released: {report}"
    if leaks == "ignore":
        return
    if leaks == "raise" and not failed:
        raise ResourceLeakError(message)
    _log.warning("ascend_safe worker: %s", message)
    warnings.warn(message, ResourceWarning, stacklevel=3)


def _prepare_process() -> None:
    """Once per process: refuse forked children of pyacl users, tie the worker to its parent."""
    if _process.state.forked_after_use:
        raise ForkSafetyError(_process.FORK_ADVICE)
    if _here.prepared_pid == _process.state.pid:
        return
    _here.prepared_pid = _process.state.pid
    parent = multiprocessing.parent_process()
    if parent is not None:
        _die_with_parent(parent.pid)
        # multiprocessing children may end through os._exit: tear down in its exit hook too
        multiprocessing.util.Finalize(None, close_worker_sessions, exitpriority=101)
        multiprocessing.util.Finalize(None, _runtime.exit_teardown, exitpriority=100)


def _die_with_parent(parent_pid: int | None) -> None:
    """Have the kernel signal this process when its parent dies (``PR_SET_PDEATHSIG``, Linux).

    The kernel sends the signal when the parent *thread* that started this process exits, which
    also happens when a pool was first used from a short-lived thread while the parent process
    lives on. So the signal is a catchable one whose handler exits only if the parent process
    is really gone (this process was re-parented).
    """
    if not sys.platform.startswith("linux") or parent_pid is None:
        return
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be installed from the main thread

    def on_parent_death(signum: int, frame: object) -> None:
        if os.getppid() != parent_pid:
            os._exit(1)

    signal.signal(_PARENT_DEATH_SIGNAL, on_parent_death)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(_PARENT_DEATH_SIGNAL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:
        os._exit(1)  # the parent died before the request took effect


# -- pools ------------------------------------------------------------------------------------


def _pool_initializer(
    devices: tuple[int, ...], counter: Any, link: tuple[Callable[[Any], None], Any] | None = None
) -> None:
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    _here.pool_device = devices[index % len(devices)]
    _prepare_process()
    if link is not None:
        link[0](link[1])


def _pool_args(
    workers: int, devices: Sequence[int]
) -> tuple[Any, tuple[Any, ...], Callable[[object], None] | None]:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    chosen = tuple(devices)
    if not chosen or not all(isinstance(d, int) and d >= 0 for d in chosen):
        raise ValueError(f"devices must be a non-empty sequence of device ids, got {devices!r}")
    ctx = multiprocessing.get_context("spawn")
    if hooks.pool_link is None:
        return ctx, (chosen, ctx.Value("i", 0)), None
    worker_fn, worker_arg, attach = hooks.pool_link()
    return ctx, (chosen, ctx.Value("i", 0), (worker_fn, worker_arg)), attach


def worker_pool(
    workers: int, devices: Sequence[int] = (0,)
) -> concurrent.futures.ProcessPoolExecutor:
    """A spawn-based ``ProcessPoolExecutor`` whose workers each hold a session on one of
    *devices*, assigned round-robin, and die with this process."""
    ctx, initargs, attach = _pool_args(workers, devices)
    executor = concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_pool_initializer, initargs=initargs
    )
    if attach is not None:
        attach(executor)
    return executor


def worker_mp_pool(workers: int, devices: Sequence[int] = (0,)) -> multiprocessing.pool.Pool:
    """The same as :func:`worker_pool`, as a spawn-based ``multiprocessing.Pool``."""
    ctx, initargs, attach = _pool_args(workers, devices)
    pool: multiprocessing.pool.Pool = ctx.Pool(
        workers, initializer=_pool_initializer, initargs=initargs
    )
    if attach is not None:
        attach(pool)
    return pool

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
import dataclasses
import functools
import logging
import multiprocessing
import multiprocessing.pool
import multiprocessing.util
import os
import signal
import sys
import threading
import traceback
import warnings
import weakref
from collections import Counter
from collections.abc import Sequence
from typing import Any, Callable, TypeVar

from typing_extensions import ParamSpec

from . import _backend, _lifetime, _process, _runtime, _scope, _validate, admission
from .device import Device
from .errors import ForkSafetyError, ResourceLeakError, ResourceLeakWarning

__all__ = [
    "LEAK_POLICIES",
    "WorkerLeak",
    "WorkerPool",
    "WorkerPoolStats",
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
_reports = threading.local()  # .stack: leak lists of the pool calls running in this thread


class _WorkerProcess:
    """What this process knows about being a worker."""

    #: Device picked for this process by a pool initializer (None outside pools).
    pool_device: int | None = None
    #: Open sessions, by device id.
    sessions: dict[int, Device] = {}
    #: Options of the sessions a pool's workers open (see :func:`worker_pool`).
    slot_timeout: float | None = 0.0
    oom_policy: tuple[str | None, float | None] | None = None
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
    """The device session this code runs with.

    The innermost one open in this thread: a ``with Device(...)`` block, or the session of the
    running ``@worker`` call; else, in a worker of :func:`worker_pool`, that worker's session.
    Raises ``RuntimeError`` when there is none.
    """
    dev: Device | None = _scope.innermost()
    if dev is not None:
        return dev
    if _here.pool_device is not None:
        return _session(_here.pool_device)
    raise RuntimeError(
        "current_device(): no device session here; call it inside a `with Device(...)` block, "
        "an @ascend_safe.worker function, or a worker of ascend_safe.worker_pool()"
    )


def worker(device: int | None = None, *, leaks: str = "warn") -> Callable[[F], F]:
    """Decorate a function to run in worker processes with a device session.

    *device*: the device to open (None: the one the pool assigned to this worker, else 0).
    *leaks*: what to do with resources a call leaves open, after releasing them: ``"warn"``
    (a :class:`ResourceLeakWarning`), ``"raise"`` (:class:`ResourceLeakError`), ``"ignore"``.
    In a :class:`WorkerPool`, the report goes to the parent process, which warns (and counts it
    in :attr:`WorkerPool.stats`); a raised error reaches it as the call's exception. Reports
    name the function, the worker's PID and device, and, with ``ASCEND_SAFE_TRACE=1``, where
    each resource was created.
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
    _scope.enter(dev)
    failed = False
    with _lifetime.tracking() as tracker:
        try:
            return fn(*args, **kwargs)
        except BaseException:
            failed = True
            raise
        finally:
            _scope.exit(dev)
            _release_leftovers(fn, dev.id, tracker, leaks, failed)


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
            dev = Device(device_id, slot_timeout=_here.slot_timeout)
            if _here.oom_policy is not None:
                policy, timeout = _here.oom_policy
                dev.set_oom_policy(policy, timeout=timeout)
            _here.sessions[device_id] = dev
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


@dataclasses.dataclass(frozen=True)
class WorkerLeak:
    """What one worker call left open (released after the call), as reported to the parent."""

    #: Qualified name of the ``@worker`` function.
    function: str
    #: PID of the worker process, and the device its session was on.
    pid: int
    device: int
    #: The function's leak policy (``"warn"`` or ``"raise"``).
    policy: str
    #: Resources left open (or dropped while open), by class name.
    counts: tuple[tuple[str, int], ...]
    #: ``"<repr> created at path:line in function"`` per resource left open, when traced
    #: (``ASCEND_SAFE_TRACE=1``); else the bare reprs.
    resources: tuple[str, ...]

    @property
    def total(self) -> int:
        """How many resources the call left open."""
        return sum(n for _, n in self.counts)

    def message(self) -> str:
        """The report in words, one line per resource."""
        summary = ", ".join(f"{n} {name}" for name, n in self.counts)
        lines = [
            f"{self.function} left resources open (worker PID {self.pid}, device "
            f"{self.device}); they were released: {summary}"
        ]
        lines += [f"  {text}" for text in self.resources]
        if not any(" created at " in text for text in self.resources):
            lines.append("  (set ASCEND_SAFE_TRACE=1 to record where each one was created)")
        return "\n".join(lines)


def _release_leftovers(
    fn: Callable[..., Any],
    device_id: int,
    tracker: _lifetime.CallTracker,
    leaks: str,
    failed: bool,
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
    described = tuple(
        repr(r) if r.created_at is None else f"{r!r} created at {r.created_at}" for r in left
    ) + tuple(f"{text} (dropped while open)" for text in tracker.collected_sites)
    for resource in reversed(left):
        try:
            resource.close()
        except Exception as exc:
            _log.warning("ascend_safe worker: releasing %r failed: %s", resource, exc)
    if leaks == "ignore":
        return
    report = WorkerLeak(
        function=getattr(fn, "__qualname__", repr(fn)),
        pid=os.getpid(),
        device=device_id,
        policy=leaks,
        counts=tuple(sorted(kinds.items())),
        resources=described,
    )
    collecting: list[list[WorkerLeak]] | None = getattr(_reports, "stack", None)
    if collecting:  # a pool call: the parent reports it
        collecting[-1].append(report)
    if leaks == "raise" and not failed:
        raise ResourceLeakError(report.message())
    if not collecting:
        warnings.warn(report.message(), ResourceLeakWarning, stacklevel=3)


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


@dataclasses.dataclass(frozen=True)
class _SessionOptions:
    """The :class:`Device` options of the sessions a pool's workers open."""

    slot_timeout: float | None = 0.0
    oom_policy: str | None = None
    oom_timeout: float | None = None

    @classmethod
    def checked(
        cls, slot_timeout: float | None, oom_policy: str | None, oom_timeout: float | None
    ) -> _SessionOptions:
        seconds = _validate.timeout(slot_timeout, "slot_timeout", maximum=None)
        if oom_policy is not None and oom_policy not in admission.OOM_POLICIES:
            raise ValueError(
                f"oom_policy must be one of {', '.join(map(repr, admission.OOM_POLICIES))} "
                f"or None, not {oom_policy!r}"
            )
        wait = _validate.timeout(oom_timeout, "oom_timeout", maximum=None)
        if oom_timeout is not None and oom_policy != "wait":
            raise ValueError("oom_timeout applies only with oom_policy='wait'")
        return cls(seconds, oom_policy, wait)


def _pool_initializer(
    devices: tuple[int, ...],
    counter: Any,
    options: _SessionOptions,
    link: tuple[Callable[[Any], None], Any] | None = None,
) -> None:
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    _here.pool_device = devices[index % len(devices)]
    _here.slot_timeout = options.slot_timeout
    if options.oom_policy is not None:
        _here.oom_policy = (options.oom_policy, options.oom_timeout)
    _prepare_process()
    if link is not None:
        link[0](link[1])


def _pool_args(
    workers: int, devices: Sequence[int], options: _SessionOptions
) -> tuple[Any, tuple[Any, ...], Callable[[object], None] | None]:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    chosen = tuple(devices)
    if not chosen or not all(isinstance(d, int) and d >= 0 for d in chosen):
        raise ValueError(f"devices must be a non-empty sequence of device ids, got {devices!r}")
    # Choose the backend here, once: the workers inherit the choice through the environment
    # (a fallback to the simulator is announced once, by this process, not by every worker).
    _backend.backend_name()
    ctx = multiprocessing.get_context("spawn")
    if hooks.pool_link is None:
        return ctx, (chosen, ctx.Value("i", 0), options), None
    worker_fn, worker_arg, attach = hooks.pool_link()
    return ctx, (chosen, ctx.Value("i", 0), options, (worker_fn, worker_arg)), attach


class _Outcome:
    """A pool call's result or exception, with the leaks its worker calls reported."""

    __slots__ = ("error", "leaks", "remote_traceback", "value")

    def __init__(
        self, value: Any, leaks: list[WorkerLeak], error: Exception | None, remote: str
    ) -> None:
        self.value = value
        self.leaks = leaks
        self.error = error
        self.remote_traceback = remote

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Outcome, (self.value, self.leaks, self.error, self.remote_traceback))


def _pool_call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Outcome:
    """In a worker: run one submitted call, collecting the leak reports of its worker calls."""
    stack: list[list[WorkerLeak]] | None = getattr(_reports, "stack", None)
    if stack is None:
        stack = _reports.stack = []
    leaks: list[WorkerLeak] = []
    stack.append(leaks)
    try:
        value = fn(*args, **kwargs)
    except Exception as exc:
        remote = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return _Outcome(None, leaks, exc, remote)
    finally:
        stack.pop()
    return _Outcome(value, leaks, None, "")


class _RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker process (set as its ``__cause__``)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f"\n\"\"\"\n{self.text}\"\"\""


@dataclasses.dataclass(frozen=True)
class WorkerPoolStats:
    """Counters of a :class:`WorkerPool` (a snapshot)."""

    #: Calls finished (for ``map``: chunks of ``chunksize`` items).
    calls: int = 0
    #: Of those, calls that raised (including leaks under ``leaks="raise"``).
    failures: int = 0
    #: Worker calls that left resources open (which were released).
    leaks: int = 0
    #: Resources those calls left open, in all.
    leaked_resources: int = 0


_T = TypeVar("_T")
_P = ParamSpec("_P")


class _PoolFuture(concurrent.futures.Future[_T]):
    """The future a :class:`WorkerPool` gives: settled once the parent has read the report."""

    def __init__(self, inner: concurrent.futures.Future[Any]) -> None:
        super().__init__()
        self._inner = inner

    def cancel(self) -> bool:
        return self._inner.cancel()  # the inner future's callback cancels this one

    def running(self) -> bool:
        return self._inner.running()


class WorkerPool(concurrent.futures.ProcessPoolExecutor):
    """A spawn-based ``ProcessPoolExecutor`` whose workers each hold a device session (see
    :func:`worker_pool`).

    What the ``@worker`` calls of a submitted call leave open is reported to this process: a
    :class:`ResourceLeakWarning` naming the function, the worker's PID and device, and where
    each resource was created (with ``ASCEND_SAFE_TRACE=1``), emitted before the call's future
    completes; under ``leaks="raise"`` the :class:`ResourceLeakError` is the call's exception.
    :attr:`stats` counts calls, failures and leaks.
    """

    def __init__(
        self, workers: int, devices: Sequence[int], options: _SessionOptions
    ) -> None:
        ctx, initargs, attach = _pool_args(workers, devices, options)
        super().__init__(
            max_workers=workers, mp_context=ctx, initializer=_pool_initializer, initargs=initargs
        )
        self._stats_lock = threading.Lock()
        self._stats = WorkerPoolStats()
        if attach is not None:
            attach(self)

    @property
    def stats(self) -> WorkerPoolStats:
        """Calls, failures and leaks so far."""
        with self._stats_lock:
            return self._stats

    def submit(
        self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs
    ) -> concurrent.futures.Future[_T]:
        inner = super().submit(_pool_call, fn, args, kwargs)
        outer: _PoolFuture[_T] = _PoolFuture(inner)
        inner.add_done_callback(functools.partial(self._settle, outer))
        return outer

    def _settle(self, outer: _PoolFuture[Any], inner: concurrent.futures.Future[Any]) -> None:
        """Runs when the worker answered: count, report the leaks, complete *outer*."""
        if inner.cancelled():
            concurrent.futures.Future.cancel(outer)
            outer.set_running_or_notify_cancel()
            return
        try:
            error = inner.exception()
            outcome: _Outcome | None = None
            if error is None:
                outcome = inner.result()
                error = outcome.error
                if error is not None:
                    error.__cause__ = _RemoteTraceback(outcome.remote_traceback)
            leaks = outcome.leaks if outcome is not None else []
            self._count(error is not None, leaks)
            if not isinstance(error, ResourceLeakError):  # else the error is the report
                for leak in leaks:
                    warnings.warn(leak.message(), ResourceLeakWarning, stacklevel=2)
        except Exception as exc:  # a warning filter turned the report into an error
            error = exc
        if error is not None:
            outer.set_exception(error)
        else:
            assert outcome is not None
            outer.set_result(outcome.value)

    def _count(self, failed: bool, leaks: list[WorkerLeak]) -> None:
        with self._stats_lock:
            s = self._stats
            self._stats = WorkerPoolStats(
                calls=s.calls + 1,
                failures=s.failures + failed,
                leaks=s.leaks + len(leaks),
                leaked_resources=s.leaked_resources + sum(leak.total for leak in leaks),
            )


def worker_pool(
    workers: int,
    devices: Sequence[int] = (0,),
    *,
    slot_timeout: float | None = 0.0,
    oom_policy: str | None = None,
    oom_timeout: float | None = None,
) -> WorkerPool:
    """A spawn-based process pool whose workers each hold a session on one of *devices*,
    assigned round-robin, and die with this process.

    The sessions are opened with *slot_timeout* (how long to wait for a process slot of the
    device, see :class:`Device`) and, if given, *oom_policy* / *oom_timeout* (see
    :func:`ascend_safe.set_oom_policy`). Leaks of worker calls are reported here, and counted
    in :attr:`WorkerPool.stats`.
    """
    options = _SessionOptions.checked(slot_timeout, oom_policy, oom_timeout)
    return WorkerPool(workers, devices, options)


def worker_mp_pool(
    workers: int,
    devices: Sequence[int] = (0,),
    *,
    slot_timeout: float | None = 0.0,
    oom_policy: str | None = None,
    oom_timeout: float | None = None,
) -> multiprocessing.pool.Pool:
    """The same sessions as :func:`worker_pool`, as a spawn-based ``multiprocessing.Pool``.

    Leaks are reported by each worker process (a :class:`ResourceLeakWarning` on its stderr),
    not gathered here.
    """
    options = _SessionOptions.checked(slot_timeout, oom_policy, oom_timeout)
    ctx, initargs, attach = _pool_args(workers, devices, options)
    pool: multiprocessing.pool.Pool = ctx.Pool(
        workers, initializer=_pool_initializer, initargs=initargs
    )
    if attach is not None:
        attach(pool)
    return pool

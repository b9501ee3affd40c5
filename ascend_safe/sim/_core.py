"""The simulator's core: handles, dispatch, violations, faults, per-thread state.

Each ``acl.*`` function (see ``_api``) parses its arguments like pyacl, then calls
:meth:`Core.dispatch`, which counts the call, applies forked-child and fault-injection rules,
checks ``acl.init`` and runs the matching ``api_*`` method of a domain module (``_runtime``,
``_context``, ``_stream``, ``_memory``, ``_buffer``, ``_process``), which raise :class:`Fail` for an
error code; ``dispatch`` turns that into pyacl's return shape. All state sits behind one ``RLock``.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import threading
import time
from typing import Any, Optional, TypeVar

from . import _config
from ._alloc import Alloc, RangeMap
from ._codes import (
    INVALID_PARAM,
    RT_CONTEXT_NULL,
    RT_DRV_INTERNAL_ERROR,
    RT_INVALID_DEVICEID,
    RT_INVALID_HANDLE,
    RT_NO_DEVICE,
    SUCCESS,
    UNINITIALIZE,
)
from ._objects import Context, DataBuffer, Device, Event, Stream
from ._signals import DEFERRAL

__all__ = ["NO_PARSE", "ApiSpec", "Core", "Fail", "Violation"]

#: The parse format of a wrapper that never calls ``PyArg_ParseTuple`` (its C signature leaves
#: ``args`` unused): any positional arguments are ignored. Distinct from ``""``, a parse of no
#: arguments, which refuses extra ones.
NO_PARSE: None = None

T = TypeVar("T")

_HANDLE_BASE = 0x5A5A_0000_0000
_HANDLE_STEP = 0x40


class Fail(Exception):
    """An ACL error: the call returns *code* and the thread's error message becomes *message*."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


@dataclasses.dataclass(frozen=True)
class Violation:
    """A misuse the simulator caught: its kind, the API (``"rt.free"``), details, and the PID."""

    kind: str
    api: str
    detail: str
    pid: int


@dataclasses.dataclass(frozen=True)
class ApiSpec:
    """How one pyacl function parses, returns and behaves.

    *fmt* is the ``PyArg_ParseTuple`` format, or :data:`NO_PARSE` when the wrapper parses
    nothing. *outs* gives the default outputs placed before ``ret`` on failure (``()`` for
    ``ret`` alone; a dict is copied for each failure); ``None`` marks a bare-value function,
    whose failure value is *bare_default*.
    """

    name: str
    impl: str
    fmt: Optional[str]
    outs: Optional[tuple[Any, ...]] = ()
    bare_default: Any = None
    needs_init: bool = True
    cleanup: bool = False
    locked: bool = True
    util: bool = False

    def success(self, out: Any) -> Any:
        """pyacl's return value for a successful call whose outputs are *out*."""
        if self.outs is None:
            return out
        if not self.outs:
            return SUCCESS
        return (*out, SUCCESS)

    def failure(self, code: int) -> Any:
        """pyacl's return value for a call failing with *code*."""
        if self.outs is None:
            return self.bare_default
        if not self.outs:
            return code
        return (*(dict(o) if isinstance(o, dict) else o for o in self.outs), code)


class _Fault:
    __slots__ = ("code", "skip", "times")

    def __init__(self, code: int, skip: int, times: int) -> None:
        self.code = code
        self.skip = skip
        self.times = times


class ThreadState(threading.local):
    context: Optional[Context] = None
    error: Optional[str] = None
    api: str = ""
    cleanup: bool = False


class _Uninterruptible:
    __slots__ = ("counted",)

    def __enter__(self) -> None:
        if not DEFERRAL.installed:
            DEFERRAL.install()
        self.counted = DEFERRAL.enter()

    def __exit__(self, *exc: object) -> None:
        if self.counted:
            DEFERRAL.leave()


class Core:
    """State shared by every domain, and the machinery every call goes through."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.pid = os.getpid()
        self.ever_initialized = False
        self.forked_from_user = False
        self.hook_installed = False
        self.call_counts: collections.Counter[str] = collections.Counter()
        self.next_handle = _HANDLE_BASE
        self._init_state()

    # ----------------------------------------------------------------- state and reset

    def _init_state(self) -> None:
        self.config = _config.from_env()
        self.mem_cond = threading.Condition(self.lock)
        self.generation = getattr(self, "generation", 0) + 1
        self.tls = ThreadState()
        self.init_count = 0
        self.devices: dict[int, Device] = {}
        self.contexts: dict[int, Context] = {}
        self.streams: dict[int, Stream] = {}
        self.all_streams: list[Stream] = []
        self.events: dict[int, Event] = {}
        self.buffers: dict[int, DataBuffer] = {}
        self.allocs: dict[int, Alloc] = {}
        self.dead: dict[int, str] = {}
        self.dev_map = RangeMap()
        self.host_map = RangeMap()
        self.quarantine: collections.deque[Alloc] = collections.deque()
        self.quarantine_bytes = 0
        self.violation_list: list[Violation] = []
        self.faults: dict[str, list[_Fault]] = {}
        self.pending_memory_tasks = 0
        self.holds = 0
        self.released = threading.Event()
        self.released.set()

    def after_fork_in_child(self) -> None:
        """Runs in a forked child: fresh locks and thread state; note the parent's pyacl use."""
        DEFERRAL.main_ident = threading.main_thread().ident
        DEFERRAL.depth = 0
        DEFERRAL.pending = {}
        self.lock = threading.RLock()
        self.mem_cond = threading.Condition(self.lock)
        self.tls = ThreadState()
        self.pid = os.getpid()
        if self.ever_initialized:
            self.forked_from_user = True

    def new_handle(self) -> int:
        self.next_handle += _HANDLE_STEP
        return self.next_handle

    # ----------------------------------------------------------------- violations

    def violate(self, kind: str, detail: str, api: Optional[str] = None) -> None:
        """Record a violation (and append it to the record file when one is configured)."""
        item = Violation(kind, api if api is not None else self.tls.api, detail, os.getpid())
        with self.lock:
            self.violation_list.append(item)
            path = self.config.record_file
        if path:
            line = json.dumps(dataclasses.asdict(item)) + "\n"
            try:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    os.write(fd, line.encode())
                finally:
                    os.close(fd)
            except OSError:
                pass

    def documented(self, rule: str, detail: str, code: int) -> None:
        """A restriction the docs state but the source does not enforce.

        The runtime accepts the call, so the simulator does too and records a
        ``documented_restriction`` violation naming *rule*; with the ``strict`` option the call
        fails with *code* (the error the documentation leads one to expect) instead.
        """
        if self.config.strict:
            raise Fail(code, f"{detail} ({rule}; strict mode)")
        self.violate("documented_restriction", f"{rule}: {detail}")

    def violations(self) -> list[Violation]:
        """In-memory violations plus those other processes wrote to the record file."""
        with self.lock:
            result = list(self.violation_list)
            path = self.config.record_file
        if not path:
            return result
        seen = set(result)
        try:
            with open(path, encoding="utf-8") as handle:
                lines = handle.readlines()
        except OSError:
            return result
        for line in lines:
            try:
                data = json.loads(line)
                item = Violation(
                    str(data["kind"]), str(data["api"]), str(data["detail"]), int(data["pid"])
                )
            except (ValueError, KeyError, TypeError):
                continue
            if item not in seen:
                seen.add(item)
                result.append(item)
        return result

    def clear_violations(self) -> None:
        """Forget recorded violations (and empty the record file)."""
        with self.lock:
            self.violation_list.clear()
            path = self.config.record_file
        self._truncate_record_file(path)

    @staticmethod
    def _truncate_record_file(path: Optional[str]) -> None:
        if path and os.path.exists(path):
            try:
                with open(path, "w", encoding="utf-8"):
                    pass
            except OSError:
                pass

    # ----------------------------------------------------------------- faults and dispatch

    def inject_fault(self, api: str, code: int, after: int, times: int) -> None:
        with self.lock:
            self.faults.setdefault(api, []).append(_Fault(code, after, times))

    def _take_fault(self, api: str) -> Optional[int]:
        faults = self.faults.get(api)
        if not faults:
            return None
        for fault in faults:
            if fault.skip > 0:
                fault.skip -= 1
                continue
            fault.times -= 1
            code = fault.code
            if fault.times <= 0:
                faults.remove(fault)
            return code
        return None

    def dispatch(self, spec: ApiSpec, args: tuple[Any, ...]) -> Any:
        """Run one simulated call with Python signal handlers deferred to its return.

        pyacl is C: a signal during a call runs its Python handler only after the call
        returned. Here the main thread's call depth is counted, and handlers (wrapped by
        ``_signals``) that fire meanwhile run when the outermost call returns.
        """
        if not DEFERRAL.installed:
            DEFERRAL.install()
        counted = DEFERRAL.enter()
        try:
            return self._dispatch(spec, args)
        finally:
            if counted:
                DEFERRAL.leave()

    def uninterruptible(self) -> _Uninterruptible:
        """Context manager deferring signal handlers (for non-API entry points like reset)."""
        return _Uninterruptible()

    def _dispatch(self, spec: ApiSpec, args: tuple[Any, ...]) -> Any:
        """Count, forked-child check, fault, init check, behaviour."""
        latency = self.config.call_latency
        if latency:
            time.sleep(latency)
        name = spec.name
        tls = self.tls
        tls.api = name
        tls.cleanup = spec.cleanup
        pid = os.getpid()
        if pid != self.pid:  # forked without at-fork hooks (e.g. clone)
            self.after_fork_in_child()
            tls = self.tls
            tls.api = name
            tls.cleanup = spec.cleanup
        with self.lock:
            self.call_counts[name] += 1
            fault = self._take_fault(name) if self.faults else None
        if self.forked_from_user and not spec.util:
            self.violate(
                "forked_child_call",
                f"acl.{name} called in a forked child of a process that called acl.init",
            )
            tls.error = (
                f"acl.{name}: pyacl cannot be used in a forked child of a process that "
                "already used it; start workers with the 'spawn' method"
            )
            return spec.failure(RT_DRV_INTERNAL_ERROR)
        if fault is not None:
            tls.error = f"acl.{name}: injected fault, error code {fault}"
            return spec.failure(fault)
        try:
            if spec.needs_init and self.init_count == 0:
                # No runtime entry point checks acl.init (src/acl/aclrt_impl/*.cpp: only the
                # dump functions return ACL_ERROR_UNINITIALIZE); the docs require it first.
                with self.lock:
                    self.documented(
                        "acl.init must be called before other pyacl calls",
                        f"acl.{name} called while acl.init has not been called (or after "
                        "acl.finalize)",
                        UNINITIALIZE,
                    )
            impl = getattr(self, spec.impl)
            if spec.locked:
                with self.lock:
                    out = impl(*args)
            else:
                out = impl(*args)
        except Fail as failure:
            tls.error = f"acl.{name}: {failure.message} (error code {failure.code})"
            return spec.failure(failure.code)
        return spec.success(out)

    # ----------------------------------------------------------------- helpers

    def _check_lost(self, device: int) -> None:
        state = self.devices.get(device)
        if state is not None and state.lost and not self.tls.cleanup:
            self.violate(
                "use_after_device_lost",
                f"device {device} was lost in a system sleep; reset it before further use",
            )
            raise Fail(RT_NO_DEVICE, f"device {device} is unavailable (lost across hibernation)")

    def _device(self, device_id: int) -> Device:
        if not 0 <= device_id < self.config.device_count:
            raise Fail(
                RT_INVALID_DEVICEID,
                f"device id {device_id} is out of range 0..{self.config.device_count - 1}",
            )
        state = self.devices.get(device_id)
        if state is None:
            state = self.devices[device_id] = Device(device_id)
        return state

    def _current(self) -> Context:
        ctx = self.tls.context
        if ctx is None or not ctx.alive:
            raise Fail(
                RT_CONTEXT_NULL,
                "this thread has no current context: call acl.rt.set_device or set_context",
            )
        self._check_lost(ctx.device)
        return ctx

    def _lookup(
        self,
        table: dict[int, T],
        handle: int,
        kind: str,
        *,
        destroy: bool = False,
        code: int = RT_INVALID_HANDLE,
    ) -> T:
        if handle == 0:
            raise Fail(INVALID_PARAM, f"{kind} handle is 0 (NULL)")
        obj = table.get(handle)
        if obj is not None:
            return obj
        if self.dead.get(handle) == kind:
            if destroy:
                self.violate("double_free", f"{kind} 0x{handle:x} was already destroyed")
                raise Fail(code, f"{kind} 0x{handle:x} was already destroyed")
            self.violate("stale_handle", f"{kind} 0x{handle:x} was destroyed")
            raise Fail(code, f"{kind} 0x{handle:x} was destroyed; it must not be used again")
        self.violate("foreign_handle", f"0x{handle:x} is not a {kind} the simulator created")
        raise Fail(code, f"0x{handle:x} is not a valid {kind} handle")

    def _drop_device_work(self, device: int) -> None:
        """The device is gone (lost in a sleep): its queued work will never run. Domains that
        queue work drop it (the driver discards a lost device's task queues)."""

    def hold(self) -> None:
        with self.lock:
            self.holds += 1
            self.released.clear()

    def unhold(self) -> None:
        with self.lock:
            self.holds = max(0, self.holds - 1)
            if self.holds == 0:
                self.released.set()

    # ----------------------------------------------------------------- introspection

    def live_handles(self) -> dict[str, list[int]]:
        with self.lock:
            kinds: dict[str, list[int]] = {
                "device": sorted(d.index for d in self.devices.values() if d.refcount > 0),
                "context": sorted(c.handle for c in self.contexts.values() if not c.default),
                "stream": sorted(self.streams),
                "event": sorted(self.events),
                "device_memory": [],
                "host_memory": [],
                "dvpp_memory": [],
                "data_buffer": sorted(self.buffers),
            }
            for alloc in self.allocs.values():
                kinds[alloc.kind].append(alloc.ptr)
        return {kind: sorted(items) for kind, items in kinds.items() if items}

"""Simulator state and the behaviour of every simulated pyacl call.

One :class:`Simulator` instance holds all state behind one ``RLock``. Each ``acl.*`` function
(see ``_api``) parses its arguments like pyacl, then calls :meth:`Simulator.dispatch`, which
counts the call, applies forked-child and fault-injection rules, checks ``acl.init`` and runs the
matching ``api_*`` method. Those methods raise :class:`Fail` for an error code; ``dispatch``
turns that into pyacl's return shape.
"""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import json
import os
import sys
import threading
import time
from typing import Any, Callable, Optional, TypeVar

from . import _config, _slots
from ._memory import (
    DEVICE_BASE,
    DVPP_OFFSET,
    GUARD,
    REGION,
    Alloc,
    RangeMap,
    is_device_address,
    round_size,
)

__all__ = ["ApiSpec", "Fail", "Simulator", "Violation"]

T = TypeVar("T")

#: Audit events that create a process (CANN forbids this while async memory work is in flight).
_PROCESS_EVENTS = frozenset(
    {"os.fork", "os.forkpty", "os.system", "os.posix_spawn", "os.spawn", "subprocess.Popen"}
)
_HANDLE_BASE = 0x5A5A_0000_0000
_HANDLE_STEP = 0x40
#: Host addresses below this are never valid memory (null page and friends).
_LOW_HOST = 0x10000
#: Freed malloc_host blocks stay allocated (quarantined) up to this many bytes, so a stale
#: pointer into one is recognised instead of aliasing new memory.
_QUARANTINE_BYTES = 64 << 20
_MEM_ATTR_MAX = 17
_MEMCPY_KIND_MAX = 7
_EVENT_SYNC = 0x1

# Error codes (pyacl-api.md section 13).
SUCCESS = 0
INVALID_PARAM = 100000
UNINITIALIZE = 100001
REPEAT_INITIALIZE = 100002
INVALID_FILE = 100003
PARSE_FILE = 100006
REPEAT_FINALIZE = 100037
RT_PARAM_INVALID = 107000
RT_INVALID_DEVICEID = 107001
RT_CONTEXT_NULL = 107002
RT_STREAM_CONTEXT = 107003
RT_INVALID_HANDLE = 107017
RT_FEATURE_NOT_SUPPORT = 207000
RT_MEMORY_ALLOCATION = 207001
RT_MEMORY_FREE = 207002
RT_NO_DEVICE = 207004
RT_OVER_LIMIT = 207012
RT_EVENT_NOT_COMPLETE = 507006
RT_STREAM_SYNC_TIMEOUT = 507046
RT_EVENT_SYNC_TIMEOUT = 507047
RT_DRV_INTERNAL_ERROR = 507899


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

    *outs* gives the default outputs placed before ``ret`` on failure (``()`` for ``ret``
    alone); ``None`` marks a bare-value function, whose failure value is *bare_default*.
    """

    name: str
    impl: str
    fmt: str
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
        return (*self.outs, code)


class _Record:
    """One recording of an event: complete when its stream reaches it."""

    __slots__ = ("done", "timestamp")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.timestamp: Optional[float] = None


class _Task:
    """Queued stream work: a callable run under the global lock, with what it references."""

    __slots__ = ("allocs", "finished", "is_memory", "record", "run", "wait_for")

    def __init__(
        self,
        run: Optional[Callable[[], None]],
        *,
        allocs: tuple[Alloc, ...] = (),
        is_memory: bool = False,
        record: Optional[_Record] = None,
        wait_for: Optional[_Record] = None,
    ) -> None:
        self.run = run
        self.allocs = allocs
        self.is_memory = is_memory
        self.record = record
        self.wait_for = wait_for
        self.finished = False


class _Stream:
    """A stream: FIFO tasks run in order by a daemon worker thread started on demand."""

    def __init__(self, handle: int, context: _Context, explicit: bool) -> None:
        self.handle = handle
        self.context = context
        self.device = context.device
        self.explicit = explicit
        self.cond = threading.Condition(threading.Lock())
        self.queue: collections.deque[_Task] = collections.deque()
        self.submitted = 0
        self.completed = 0
        self.closed = False
        self.worker: Optional[threading.Thread] = None


class _Context:
    """A context: its device, whether it is the device's default, its streams."""

    def __init__(self, handle: int, device: int, default: bool) -> None:
        self.handle = handle
        self.device = device
        self.default = default
        self.alive = True
        self.streams: dict[int, _Stream] = {}
        self.default_stream: Optional[_Stream] = None


class _Event:
    """An event: creation flags (None for create_event) and its latest recording."""

    def __init__(self, handle: int, device: int, flags: Optional[int]) -> None:
        self.handle = handle
        self.device = device
        self.flags = flags
        self.latest: Optional[_Record] = None

    @property
    def sync_capable(self) -> bool:
        """May be used with stream_wait_event / query_event_wait_status."""
        return self.flags is None or bool(self.flags & _EVENT_SYNC)


class _DataBuffer:
    __slots__ = ("handle", "ptr", "size")

    def __init__(self, handle: int, ptr: int, size: int) -> None:
        self.handle = handle
        self.ptr = ptr
        self.size = size


class _Device:
    """Per-device process state: set_device refcount, default context, slot, lost flag."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.refcount = 0
        self.default_context: Optional[_Context] = None
        self.slot_fd: Optional[int] = None
        self.lost = False
        self.used = 0
        self.next_normal = DEVICE_BASE + index * REGION
        self.next_dvpp = DEVICE_BASE + index * REGION + DVPP_OFFSET


class _Fault:
    __slots__ = ("code", "skip", "times")

    def __init__(self, code: int, skip: int, times: int) -> None:
        self.code = code
        self.skip = skip
        self.times = times


class _ThreadState(threading.local):
    context: Optional[_Context] = None
    error: Optional[str] = None
    api: str = ""
    cleanup: bool = False


class Simulator:
    """All simulator state and behaviour (one instance per process)."""

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
        self.tls = _ThreadState()
        self.init_count = 0
        self.devices: dict[int, _Device] = {}
        self.contexts: dict[int, _Context] = {}
        self.streams: dict[int, _Stream] = {}
        self.all_streams: list[_Stream] = []
        self.events: dict[int, _Event] = {}
        self.buffers: dict[int, _DataBuffer] = {}
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

    def reset(self) -> None:
        """Drop all state (stopping stream work, releasing slots) and re-read the environment."""
        with self.lock:
            for stream in list(self.all_streams):
                self._cancel_stream(stream)
            for device in self.devices.values():
                if device.slot_fd is not None:
                    _slots.release(device.slot_fd)
                    device.slot_fd = None
            self.released.set()
            self.mem_cond.notify_all()
            record_file = self.config.record_file
            self._init_state()
            self.call_counts.clear()
        self._truncate_record_file(record_file)
        self._truncate_record_file(self.config.record_file)

    def after_fork_in_child(self) -> None:
        """Runs in a forked child: fresh locks, inherited slot fds closed, parent use noted."""
        self.lock = threading.RLock()
        self.mem_cond = threading.Condition(self.lock)
        self.tls = _ThreadState()
        self.pid = os.getpid()
        if self.ever_initialized:
            self.forked_from_user = True
        fds = [d.slot_fd for d in self.devices.values() if d.slot_fd is not None]
        for device in self.devices.values():
            device.slot_fd = None
        _slots.close_inherited(fds)
        for stream in self.all_streams:
            stream.cond = threading.Condition(threading.Lock())
            stream.worker = None

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
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line.encode())
                finally:
                    os.close(fd)
            except OSError:
                pass

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
        """Run one simulated call: count, forked-child check, fault, init check, behaviour."""
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
                raise Fail(UNINITIALIZE, "acl.init has not been called (or acl.finalize was)")
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

    def _device(self, device_id: int) -> _Device:
        if not 0 <= device_id < self.config.device_count:
            raise Fail(
                RT_INVALID_DEVICEID,
                f"device id {device_id} is out of range 0..{self.config.device_count - 1}",
            )
        state = self.devices.get(device_id)
        if state is None:
            state = self.devices[device_id] = _Device(device_id)
        return state

    def _current(self) -> _Context:
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

    def _stream(self, handle: int) -> _Stream:
        """The stream for *handle*; 0 is the current context's default stream."""
        if handle == 0:
            stream = self._current().default_stream
            assert stream is not None
            return stream
        stream = self._lookup(self.streams, handle, "stream")
        self._check_lost(stream.device)
        return stream

    def _new_context(self, device: int, default: bool) -> _Context:
        ctx = _Context(self.new_handle(), device, default)
        ctx.default_stream = _Stream(self.new_handle(), ctx, explicit=False)
        self.all_streams.append(ctx.default_stream)
        self.contexts[ctx.handle] = ctx
        return ctx

    # ----------------------------------------------------------------- stream machinery

    def _submit(self, stream: _Stream, task: _Task) -> None:
        for alloc in task.allocs:
            alloc.pending += 1
        if task.is_memory:
            self.pending_memory_tasks += 1
        with stream.cond:
            stream.queue.append(task)
            stream.submitted += 1
            if stream.worker is None:
                worker = threading.Thread(
                    target=self._work,
                    args=(stream,),
                    name=f"acl-sim-stream-{stream.handle:x}",
                    daemon=True,
                )
                stream.worker = worker
                worker.start()
            else:
                stream.cond.notify_all()

    def _finish(self, task: _Task) -> None:
        """Account for a task that ran or was dropped (holding the global lock)."""
        if task.finished:
            return
        task.finished = True
        for alloc in task.allocs:
            alloc.pending -= 1
        if task.is_memory:
            self.pending_memory_tasks -= 1
        if task.record is not None:
            task.record.done.set()

    def _work(self, stream: _Stream) -> None:
        """Stream worker: run tasks in order; exit when idle or when the stream is closed."""
        try:
            while True:
                with stream.cond:
                    while not stream.queue and not stream.closed:
                        if not stream.cond.wait(timeout=1.0) and not stream.queue:
                            stream.worker = None
                            return
                    if stream.closed:
                        stream.worker = None
                        return
                    task = stream.queue[0]
                while not self.released.wait(0.05):
                    if stream.closed:
                        break
                delay = self.config.async_delay
                if delay:
                    time.sleep(delay)
                if task.wait_for is not None:
                    while not task.wait_for.done.wait(0.05):
                        if stream.closed:
                            break
                with self.lock:
                    if not stream.closed and not task.finished:
                        if task.run is not None:
                            try:
                                task.run()
                            except Exception:
                                pass
                        if task.record is not None:
                            task.record.timestamp = time.perf_counter()
                        self._finish(task)
                with stream.cond:
                    if stream.queue and stream.queue[0] is task:
                        stream.queue.popleft()
                        stream.completed += 1
                    stream.cond.notify_all()
        except BaseException:  # never a traceback from a daemon thread (e.g. at shutdown)
            return

    def _cancel_stream(self, stream: _Stream) -> None:
        """Drop a stream's queued work and wake its waiters (holding the global lock)."""
        stream.closed = True
        with stream.cond:
            tasks = list(stream.queue)
            stream.queue.clear()
            stream.completed = stream.submitted
            stream.cond.notify_all()
        for task in tasks:
            if task.record is not None and task.record.timestamp is None:
                task.record.timestamp = time.perf_counter()
            self._finish(task)
        if stream in self.all_streams:
            self.all_streams.remove(stream)

    @staticmethod
    def _wait_stream(stream: _Stream, target: int, timeout: Optional[float]) -> bool:
        """Wait (without the global lock) until *stream* completed *target* tasks."""
        with stream.cond:
            return stream.cond.wait_for(lambda: stream.completed >= target, timeout)

    @staticmethod
    def _timeout(ms: int) -> Optional[float]:
        if ms < -1:
            raise Fail(RT_PARAM_INVALID, f"timeout {ms} ms is invalid: use -1, 0 or > 0")
        return None if ms == -1 else ms / 1000.0

    def hold(self) -> None:
        with self.lock:
            self.holds += 1
            self.released.clear()

    def unhold(self) -> None:
        with self.lock:
            self.holds = max(0, self.holds - 1)
            if self.holds == 0:
                self.released.set()

    # ----------------------------------------------------------------- teardown

    def _destroy_stream_now(self, stream: _Stream) -> None:
        self._cancel_stream(stream)
        self.streams.pop(stream.handle, None)
        stream.context.streams.pop(stream.handle, None)
        if stream.explicit:
            self.dead[stream.handle] = "stream"

    def _free_alloc(self, alloc: Alloc) -> None:
        if alloc.pending:
            self.violate(
                "free_with_pending_work",
                f"{alloc.kind} 0x{alloc.ptr:x} freed while {alloc.pending} queued stream "
                "task(s) still use it; synchronize the stream first",
            )
            for stream in self.all_streams:
                with stream.cond:
                    for task in stream.queue:
                        if alloc in task.allocs:
                            task.run = None
        alloc.freed = True
        self.allocs.pop(alloc.ptr, None)
        if alloc.is_device:
            self.devices[alloc.device].used -= alloc.extent
            alloc.drop()
            self.mem_cond.notify_all()
        else:
            self.quarantine.append(alloc)
            self.quarantine_bytes += alloc.extent
            while self.quarantine_bytes > _QUARANTINE_BYTES and len(self.quarantine) > 1:
                old = self.quarantine.popleft()
                self.quarantine_bytes -= old.extent
                self.host_map.remove(old)
                old.drop()

    def _release_device(self, device: _Device, why: str, report: bool = True) -> None:
        """Free everything of *device* (reset to refcount 0); report leftovers as teardown_order."""
        d = device.index
        for stream in [s for s in self.all_streams if s.device == d]:
            self._cancel_stream(stream)
        contexts = [c for c in self.contexts.values() if c.device == d]
        explicit_ctx = [c for c in contexts if not c.default]
        explicit_streams = [s for s in self.streams.values() if s.device == d]
        events = [e for e in self.events.values() if e.device == d]
        memory = [a for a in self.allocs.values() if a.device == d]
        leftovers = []
        for label, items in (
            ("explicit context", explicit_ctx),
            ("explicit stream", explicit_streams),
            ("event", events),
            ("memory block", memory),
        ):
            if items:
                leftovers.append(f"{len(items)} {label}(s)")
        if leftovers and report:
            self.violate(
                "teardown_order",
                f"{why} of device {d} while {', '.join(leftovers)} were still live; destroy "
                "events, streams, memory and contexts first",
            )
        for stream in explicit_streams:
            self._destroy_stream_now(stream)
        for event in events:
            self.events.pop(event.handle, None)
            self.dead[event.handle] = "event"
        for alloc in memory:
            self._free_alloc(alloc)
        for ctx in contexts:
            self._drop_context(ctx)
        device.default_context = None
        device.refcount = 0
        device.lost = False
        if device.slot_fd is not None:
            _slots.release(device.slot_fd)
            device.slot_fd = None

    def _drop_context(self, ctx: _Context) -> None:
        for stream in list(ctx.streams.values()):
            self._destroy_stream_now(stream)
        if ctx.default_stream is not None:
            self._cancel_stream(ctx.default_stream)
        ctx.alive = False
        self.contexts.pop(ctx.handle, None)
        self.dead[ctx.handle] = "context"
        if self.tls.context is ctx:
            self.tls.context = None

    def _finalize_now(self) -> None:
        set_devices = [d.index for d in self.devices.values() if d.refcount > 0]
        live = self.live_handles()
        live.pop("device", None)
        if set_devices or live:
            parts = [f"devices {set_devices} still set"] if set_devices else []
            parts += [f"{len(v)} {k}" for k, v in live.items()]
            self.violate(
                "teardown_order",
                f"acl.finalize while {', '.join(parts)}; the simulator released them",
                api="finalize",
            )
        for device in self.devices.values():
            self._release_device(device, "finalize", report=False)
        for ctx in list(self.contexts.values()):
            self._drop_context(ctx)
        for alloc in list(self.allocs.values()):
            self._free_alloc(alloc)
        for buf in list(self.buffers.values()):
            self.buffers.pop(buf.handle)
            self.dead[buf.handle] = "data_buffer"
        self.init_count = 0

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

    def on_process_created(self, event: str) -> None:
        """Audit hook body: a process is being created; flag it if async memory work is queued."""
        if self.pending_memory_tasks > 0:
            self.violate(
                "process_created_during_async",
                f"{event} while {self.pending_memory_tasks} memcpy_async/memset_async task(s) "
                "were still in flight; synchronize streams before creating processes",
                api=event,
            )

    def hibernate(self) -> None:
        with self.lock:
            active = [d for d in self.devices.values() if d.refcount > 0]
            if not active:
                return
            self.violate(
                "hibernate_with_active_device",
                f"system sleep while devices {[d.index for d in active]} were set; stop device "
                "work and release devices before hibernation",
                api="hibernate",
            )
            if self.config.lose_device_on_hibernate:
                for device in active:
                    device.lost = True

    def _install_hook(self) -> None:
        if self.hook_installed:
            return
        self.hook_installed = True

        def hook(event: str, args: tuple[Any, ...]) -> None:
            if event not in _PROCESS_EVENTS:
                return
            if event == "os.posix_spawn" and sys._getframe(1).f_code.co_name == "_posix_spawn":
                return  # subprocess.Popen using posix_spawn: already seen as subprocess.Popen
            try:
                self.on_process_created(event)
            except Exception:
                pass

        sys.addaudithook(hook)
        self._watch_fork_exec()

    def _watch_fork_exec(self) -> None:
        """See process starts that raise no audit event (multiprocessing's spawn and
        forkserver launchers call ``_posixsubprocess.fork_exec`` directly)."""
        try:
            import _posixsubprocess
        except ImportError:  # not POSIX
            return
        original = _posixsubprocess.fork_exec
        audited_caller = "_execute_child"  # subprocess.Popen: already seen by the audit hook

        def fork_exec(*args: Any, **kwargs: Any) -> Any:
            if sys._getframe(1).f_code.co_name != audited_caller:
                try:
                    self.on_process_created("_posixsubprocess.fork_exec")
                except Exception:
                    pass
            return original(*args, **kwargs)

        _posixsubprocess.fork_exec = fork_exec

    # ================================================================= top level acl.*

    def api_init(self, config_path: Optional[str] = None) -> tuple[()]:
        if config_path:
            if not os.path.isfile(config_path):
                raise Fail(INVALID_FILE, f"config file {config_path!r} does not exist")
            try:
                with open(config_path, encoding="utf-8") as handle:
                    json.load(handle)
            except (OSError, ValueError) as exc:
                raise Fail(PARSE_FILE, f"config file {config_path!r} is not JSON: {exc}") from None
        self.init_count += 1
        self.ever_initialized = True
        self._install_hook()
        if self.init_count > 1:
            raise Fail(REPEAT_INITIALIZE, "acl.init was already called (refcount incremented)")
        return ()

    def api_finalize(self) -> tuple[()]:
        if self.init_count == 0:
            raise Fail(REPEAT_FINALIZE, "acl.finalize without a matching acl.init")
        self._finalize_now()
        return ()

    def api_finalize_reference(self) -> tuple[int]:
        if self.init_count == 0:
            raise Fail(REPEAT_FINALIZE, "acl.finalize_reference with init refcount 0")
        if self.init_count == 1:
            self._finalize_now()
        else:
            self.init_count -= 1
        return (self.init_count,)

    def api_get_version(self) -> tuple[int, int, int]:
        return (1, 17, 0)

    def api_get_soc_name(self) -> Optional[str]:
        return self.config.soc_name

    def api_get_recent_err_msg(self) -> Optional[str]:
        text = self.tls.error
        self.tls.error = None
        return text

    def api_get_cann_version(self, pkg: int) -> tuple[dict[str, Any]]:
        if not 0 <= pkg <= 7:
            raise Fail(INVALID_PARAM, f"package name {pkg} is out of range 0..7")
        return (
            {
                "version": "9.0.0",
                "major_version": 9,
                "minor_version": 0,
                "release_version": 0,
                "patch_version": 0,
                "reserved": 0,
            },
        )

    def api_create_data_buffer(self, ptr: int, size: int) -> int:
        buf = _DataBuffer(self.new_handle(), ptr, size)
        self.buffers[buf.handle] = buf
        return buf.handle

    def api_destroy_data_buffer(self, handle: int) -> tuple[()]:
        buf = self._lookup(self.buffers, handle, "data_buffer", destroy=True, code=INVALID_PARAM)
        del self.buffers[buf.handle]
        self.dead[buf.handle] = "data_buffer"
        return ()

    def _buffer_value(self, handle: int) -> Optional[_DataBuffer]:
        try:
            return self._lookup(self.buffers, handle, "data_buffer", code=INVALID_PARAM)
        except Fail as failure:
            self.tls.error = f"acl.{self.tls.api}: {failure.message}"
            return None

    def api_get_data_buffer_addr(self, handle: int) -> int:
        buf = self._buffer_value(handle)
        return 0 if buf is None else buf.ptr

    def api_get_data_buffer_size(self, handle: int) -> int:
        buf = self._buffer_value(handle)
        return 0 if buf is None else buf.size & 0xFFFFFFFF

    def api_get_data_buffer_size_v2(self, handle: int) -> int:
        buf = self._buffer_value(handle)
        return 0 if buf is None else buf.size

    def api_update_data_buffer(self, handle: int, ptr: int, size: int) -> tuple[()]:
        buf = self._lookup(self.buffers, handle, "data_buffer", code=INVALID_PARAM)
        buf.ptr = ptr
        buf.size = size
        return ()

    # ================================================================= acl.rt: device

    def api_set_device(self, device_id: int) -> tuple[()]:
        device = self._device(device_id)
        if device.lost:
            self.violate(
                "use_after_device_lost",
                f"set_device({device_id}) on a device lost in a system sleep; reset it first",
            )
            raise Fail(RT_NO_DEVICE, f"device {device_id} is unavailable (lost across sleep)")
        if device.refcount == 0:
            fd = _slots.acquire(self.config.slot_dir(), device_id, self.config.process_limit())
            if fd is None:
                raise Fail(
                    RT_OVER_LIMIT,
                    f"device {device_id} already has {self.config.process_limit()} processes "
                    "using it (per-device process limit)",
                )
            device.slot_fd = fd
            device.default_context = self._new_context(device_id, default=True)
        device.refcount += 1
        self.tls.context = device.default_context
        return ()

    def api_reset_device(self, device_id: int) -> tuple[()]:
        with self.lock:
            device = self._device(device_id)
            if device.refcount == 0:
                return ()
            device.refcount -= 1
            if device.refcount > 0:
                return ()
            waits = [
                (s, s.submitted) for s in self.all_streams if s.device == device_id and not s.closed
            ]
        for stream, target in waits:
            self._wait_stream(stream, target, None)
        with self.lock:
            if device.refcount == 0:
                self._release_device(device, "reset_device")
        return ()

    def api_reset_device_force(self, device_id: int) -> tuple[()]:
        device = self._device(device_id)
        self._release_device(device, "reset_device_force")
        return ()

    def api_get_device(self) -> tuple[int]:
        return (self._current().device,)

    def api_get_device_count(self) -> tuple[int]:
        return (self.config.device_count,)

    def api_get_run_mode(self) -> tuple[int]:
        return (self.config.run_mode,)

    def _sync_device(self, timeout: Optional[float]) -> tuple[()]:
        with self.lock:
            device = self._current().device
            waits = [(s, s.submitted) for s in self.all_streams if s.device == device]
        deadline = None if timeout is None else time.monotonic() + timeout
        for stream, target in waits:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._wait_stream(stream, target, left):
                raise Fail(RT_STREAM_SYNC_TIMEOUT, "device synchronization timed out")
        return ()

    def api_synchronize_device(self) -> tuple[()]:
        return self._sync_device(None)

    def api_synchronize_device_with_timeout(self, ms: int) -> tuple[()]:
        return self._sync_device(self._timeout(ms))

    # ================================================================= acl.rt: context

    def api_create_context(self, device_id: int) -> tuple[int]:
        self._device(device_id)
        self._check_lost(device_id)
        ctx = self._new_context(device_id, default=False)
        self.tls.context = ctx
        return (ctx.handle,)

    def api_destroy_context(self, handle: int) -> tuple[()]:
        ctx = self._lookup(self.contexts, handle, "context", destroy=True)
        if ctx.default:
            raise Fail(INVALID_PARAM, "the default context of a device cannot be destroyed")
        if ctx.streams:
            self.violate(
                "teardown_order",
                f"destroy_context 0x{handle:x} while {len(ctx.streams)} of its streams were "
                "still live; destroy streams first",
            )
        self._drop_context(ctx)
        return ()

    def api_set_context(self, handle: int) -> tuple[()]:
        ctx = self._lookup(self.contexts, handle, "context")
        self.tls.context = ctx
        return ()

    def api_get_context(self) -> tuple[int]:
        ctx = self.tls.context
        if ctx is None or not ctx.alive:
            raise Fail(RT_CONTEXT_NULL, "this thread has no current context")
        return (ctx.handle,)

    # ================================================================= acl.rt: stream

    def api_create_stream(self) -> tuple[int]:
        ctx = self._current()
        stream = _Stream(self.new_handle(), ctx, explicit=True)
        self.streams[stream.handle] = stream
        ctx.streams[stream.handle] = stream
        self.all_streams.append(stream)
        return (stream.handle,)

    def api_create_stream_with_config(self, priority: int, flag: int) -> tuple[int]:
        return self.api_create_stream()

    def _destroy_stream(self, handle: int, wait: bool) -> tuple[()]:
        with self.lock:
            stream = self._lookup(self.streams, handle, "stream", destroy=True)
            self._check_lost(stream.device)
            ctx = self.tls.context
            if ctx is not stream.context:
                raise Fail(
                    RT_STREAM_CONTEXT,
                    f"stream 0x{handle:x} does not belong to this thread's current context",
                )
            target = stream.submitted
        if wait:
            self._wait_stream(stream, target, None)
        with self.lock:
            if self.streams.get(handle) is stream:
                self._destroy_stream_now(stream)
        return ()

    def api_destroy_stream(self, handle: int) -> tuple[()]:
        return self._destroy_stream(handle, wait=True)

    def api_destroy_stream_force(self, handle: int) -> tuple[()]:
        return self._destroy_stream(handle, wait=False)

    def _sync_stream(self, handle: int, timeout: Optional[float]) -> tuple[()]:
        with self.lock:
            stream = self._stream(handle)
            target = stream.submitted
        if not self._wait_stream(stream, target, timeout):
            raise Fail(RT_STREAM_SYNC_TIMEOUT, f"stream 0x{stream.handle:x} did not drain in time")
        return ()

    def api_synchronize_stream(self, handle: int) -> tuple[()]:
        return self._sync_stream(handle, None)

    def api_synchronize_stream_with_timeout(self, handle: int, ms: int) -> tuple[()]:
        return self._sync_stream(handle, self._timeout(ms))

    def api_stream_query(self, handle: int) -> tuple[int]:
        stream = self._stream(handle)
        with stream.cond:
            return (0 if stream.completed >= stream.submitted else 1,)

    # ================================================================= acl.rt: event

    def _create_event(self, flags: Optional[int]) -> tuple[int]:
        ctx = self._current()
        event = _Event(self.new_handle(), ctx.device, flags)
        self.events[event.handle] = event
        return (event.handle,)

    def api_create_event(self) -> tuple[int]:
        return self._create_event(None)

    def api_create_event_with_flag(self, flag: int) -> tuple[int]:
        return self._create_event(flag)

    def api_create_event_ex_with_flag(self, flag: int) -> tuple[int]:
        return self._create_event(flag)

    def _event(self, handle: int, destroy: bool = False) -> _Event:
        event = self._lookup(self.events, handle, "event", destroy=destroy)
        self._check_lost(event.device)
        return event

    def api_destroy_event(self, handle: int) -> tuple[()]:
        event = self._event(handle, destroy=True)
        del self.events[event.handle]
        self.dead[event.handle] = "event"
        return ()

    def api_record_event(self, handle: int, stream_handle: int) -> tuple[()]:
        event = self._event(handle)
        stream = self._stream(stream_handle)
        record = _Record()
        event.latest = record
        self._submit(stream, _Task(None, record=record))
        return ()

    def api_reset_event(self, handle: int, stream_handle: int) -> tuple[()]:
        event = self._event(handle)
        if event.flags is None or not event.flags & _EVENT_SYNC:
            raise Fail(
                RT_PARAM_INVALID,
                "reset_event needs an event created with create_event_with_flag(ACL_EVENT_SYNC)",
            )
        stream = self._stream(stream_handle)
        target = event.latest

        def run() -> None:
            if event.latest is target:
                event.latest = None

        self._submit(stream, _Task(run))
        return ()

    def _sync_event(self, handle: int, timeout: Optional[float]) -> tuple[()]:
        with self.lock:
            record = self._event(handle).latest
        if record is not None and not record.done.wait(timeout):
            raise Fail(RT_EVENT_SYNC_TIMEOUT, f"event 0x{handle:x} did not complete in time")
        return ()

    def api_synchronize_event(self, handle: int) -> tuple[()]:
        return self._sync_event(handle, None)

    def api_synchronize_event_with_timeout(self, handle: int, ms: int) -> tuple[()]:
        return self._sync_event(handle, self._timeout(ms))

    def _event_done(self, handle: int) -> bool:
        record = self._event(handle).latest
        return record is None or record.done.is_set()

    def api_query_event(self, handle: int) -> tuple[int]:
        return (0 if self._event_done(handle) else 1,)

    def api_query_event_status(self, handle: int) -> tuple[int]:
        return (1 if self._event_done(handle) else 0,)

    def api_query_event_wait_status(self, handle: int) -> tuple[int]:
        if not self._event(handle).sync_capable:
            raise Fail(RT_PARAM_INVALID, "query_event_wait_status needs an ACL_EVENT_SYNC event")
        return (0 if self._event_done(handle) else 1,)

    def api_event_elapsed_time(self, start: int, end: int) -> tuple[float]:
        first = self._event(start).latest
        last = self._event(end).latest
        for name, record in (("start", first), ("end", last)):
            if record is None or not record.done.is_set() or record.timestamp is None:
                raise Fail(
                    RT_EVENT_NOT_COMPLETE,
                    f"{name} event is not recorded or not complete; synchronize it first",
                )
        assert first is not None and last is not None
        assert first.timestamp is not None and last.timestamp is not None
        return ((last.timestamp - first.timestamp) * 1000.0,)

    def api_stream_wait_event(self, stream_handle: int, handle: int) -> tuple[()]:
        with self.lock:
            stream = self._stream(stream_handle)
            event = self._event(handle)
            if not event.sync_capable:
                raise Fail(RT_PARAM_INVALID, "stream_wait_event needs an ACL_EVENT_SYNC event")
            if event.latest is not None:
                self._submit(stream, _Task(None, wait_for=event.latest))
        return ()

    # ================================================================= acl.rt / media: memory

    def _allocate(self, kind: str, size: int, plus32: bool) -> tuple[int]:
        if size == 0:
            raise Fail(INVALID_PARAM, "size must be > 0")
        ctx = self._current()
        device = self._device(ctx.device)
        extent = round_size(size, plus32)
        budget = self.config.memory_per_device
        if device.used + extent > budget:
            if self.config.run_mode == 0 and self.config.rc_malloc_blocks:
                generation = self.generation
                ok = self.mem_cond.wait_for(
                    lambda: self.generation != generation or device.used + extent <= budget,
                    self.config.rc_malloc_timeout,
                )
                if not ok:
                    self.violate(
                        "rc_malloc_hang",
                        f"{kind} of {size} bytes blocked {self.config.rc_malloc_timeout}s for "
                        f"device memory (RC mode hangs until memory is freed)",
                    )
                if not ok or self.generation != generation:
                    raise Fail(RT_MEMORY_ALLOCATION, f"out of device memory for {size} bytes")
            else:
                raise Fail(
                    RT_MEMORY_ALLOCATION,
                    f"out of device memory: {size} bytes requested, "
                    f"{budget - device.used} of {budget} free on device {ctx.device}",
                )
        if kind == "dvpp_memory":
            ptr = (device.next_dvpp + 127) // 128 * 128
            device.next_dvpp = ptr + extent + GUARD
        else:
            ptr = (device.next_normal + 63) // 64 * 64
            device.next_normal = ptr + extent + GUARD
        alloc = Alloc(kind, ptr, size, extent, ctx.device)
        try:
            alloc.back(extent)
        except MemoryError:
            raise Fail(RT_MEMORY_ALLOCATION, f"host cannot back {size} bytes") from None
        device.used += extent
        self.allocs[ptr] = alloc
        self.dev_map.add(alloc)
        return (ptr,)

    def api_malloc(self, size: int, policy: int) -> tuple[int]:
        return self._allocate("device_memory", size, True)

    def api_malloc_align32(self, size: int, policy: int) -> tuple[int]:
        return self._allocate("device_memory", size, False)

    def api_malloc_cached(self, size: int, policy: int) -> tuple[int]:
        return self._allocate("device_memory", size, True)

    def api_dvpp_malloc(self, size: int) -> tuple[int]:
        return self._allocate("dvpp_memory", size, True)

    def api_malloc_host(self, size: int) -> tuple[int]:
        if size == 0:
            raise Fail(INVALID_PARAM, "size must be > 0")
        ctx = self._current()
        if size > self.config.memory_per_device:
            raise Fail(RT_MEMORY_ALLOCATION, f"cannot allocate {size} bytes of host memory")
        extent = round_size(size)
        alloc = Alloc("host_memory", 0, size, extent, ctx.device)
        try:
            alloc.back(extent, align=64)
        except MemoryError:
            raise Fail(RT_MEMORY_ALLOCATION, f"cannot back {size} bytes of host memory") from None
        alloc.ptr = alloc.real
        self.allocs[alloc.ptr] = alloc
        self.host_map.add(alloc)
        return (alloc.ptr,)

    def _free(self, ptr: int, kinds: tuple[str, ...], how: str) -> tuple[()]:
        if ptr == 0:
            raise Fail(INVALID_PARAM, "pointer is 0 (NULL)")
        alloc = self.allocs.get(ptr)
        if alloc is not None and alloc.kind in kinds:
            self._free_alloc(alloc)
            return ()
        found = self.dev_map.find(ptr) if is_device_address(ptr) else self.host_map.find(ptr)
        if alloc is None and found is not None and found.ptr == ptr and found.freed:
            self.violate("double_free", f"{found.kind} 0x{ptr:x} was already freed")
            raise Fail(RT_MEMORY_FREE, f"0x{ptr:x} was already freed")
        if alloc is not None:
            detail = f"0x{ptr:x} is {alloc.kind}; {how} only frees {' or '.join(kinds)}"
        else:
            detail = f"0x{ptr:x} is not the start of memory the simulator allocated"
        self.violate("foreign_handle", detail)
        raise Fail(RT_MEMORY_FREE, detail)

    def api_free(self, ptr: int) -> tuple[()]:
        return self._free(ptr, ("device_memory",), "rt.free")

    def api_free_host(self, ptr: int) -> tuple[()]:
        return self._free(ptr, ("host_memory",), "rt.free_host")

    def api_dvpp_free(self, ptr: int) -> tuple[()]:
        return self._free(ptr, ("dvpp_memory",), "media.dvpp_free")

    def _resolve(self, ptr: int, count: int, role: str) -> tuple[int, Optional[Alloc]]:
        """Real address of ``[ptr, ptr+count)`` and the allocation holding it (None: raw host)."""
        if is_device_address(ptr):
            alloc = self.dev_map.find(ptr)
            if alloc is None:
                self.violate(
                    "foreign_handle", f"{role} 0x{ptr:x} is not inside any device allocation"
                )
                raise Fail(RT_PARAM_INVALID, f"{role} 0x{ptr:x} is not allocated device memory")
        else:
            alloc = self.host_map.find(ptr)
            if alloc is None:
                if ptr < _LOW_HOST:
                    self.violate("foreign_handle", f"{role} 0x{ptr:x} is not a valid address")
                    raise Fail(RT_PARAM_INVALID, f"{role} 0x{ptr:x} is not a valid address")
                return ptr, None
        if alloc.freed:
            self.violate("stale_handle", f"{role} 0x{ptr:x} points into freed {alloc.kind}")
            raise Fail(RT_PARAM_INVALID, f"{role} 0x{ptr:x} points into freed memory")
        self._check_lost(alloc.device)
        offset = ptr - alloc.ptr
        if offset + count > alloc.size:
            raise Fail(
                RT_PARAM_INVALID,
                f"{role} range 0x{ptr:x}+{count} overruns the {alloc.size}-byte allocation "
                f"at 0x{alloc.ptr:x}",
            )
        return alloc.real + offset, alloc

    def _check_memset(self, ptr: int, max_count: int, count: int) -> tuple[int, Optional[Alloc]]:
        if ptr == 0:
            raise Fail(INVALID_PARAM, "pointer is 0 (NULL)")
        if count > max_count:
            raise Fail(INVALID_PARAM, f"count {count} exceeds max_count {max_count}")
        self._current()
        return self._resolve(ptr, count, "dst")

    def api_memset(self, ptr: int, max_count: int, value: int, count: int) -> tuple[()]:
        real, _ = self._check_memset(ptr, max_count, count)
        if count:
            ctypes.memset(real, value & 0xFF, count)
        return ()

    def api_memset_async(
        self, ptr: int, max_count: int, value: int, count: int, stream_handle: int
    ) -> tuple[()]:
        real, alloc = self._check_memset(ptr, max_count, count)
        stream = self._stream(stream_handle)
        if count == 0:
            return ()
        byte = value & 0xFF

        def run() -> None:
            ctypes.memset(real, byte, count)

        allocs = (alloc,) if alloc is not None else ()
        self._submit(stream, _Task(run, allocs=allocs, is_memory=True))
        return ()

    def _check_copy(
        self, dst: int, dest_max: int, src: int, count: int, kind: int
    ) -> tuple[int, Optional[Alloc], int, Optional[Alloc]]:
        if dst == 0 or src == 0:
            raise Fail(INVALID_PARAM, "dst and src must not be 0 (NULL)")
        if count > dest_max:
            raise Fail(INVALID_PARAM, f"count {count} exceeds dest_max {dest_max}")
        if not 0 <= kind <= _MEMCPY_KIND_MAX:
            raise Fail(INVALID_PARAM, f"memcpy kind {kind} is out of range 0..7")
        self._current()
        real_dst, dst_alloc = self._resolve(dst, count, "dst")
        real_src, src_alloc = self._resolve(src, count, "src")
        return real_dst, dst_alloc, real_src, src_alloc

    def api_memcpy(self, dst: int, dest_max: int, src: int, count: int, kind: int) -> tuple[()]:
        if count == 0:
            return ()
        real_dst, _, real_src, _ = self._check_copy(dst, dest_max, src, count, kind)
        ctypes.memmove(real_dst, real_src, count)
        return ()

    def api_memcpy_async(
        self, dst: int, dest_max: int, src: int, count: int, kind: int, stream_handle: int
    ) -> tuple[()]:
        if count == 0:
            return ()
        if dst % 64 or src % 64:
            raise Fail(INVALID_PARAM, "memcpy_async needs 64-byte aligned dst and src")
        real_dst, dst_alloc, real_src, src_alloc = self._check_copy(dst, dest_max, src, count, kind)
        stream = self._stream(stream_handle)
        on_device = any(a is not None and a.is_device for a in (dst_alloc, src_alloc))
        if not on_device and self.config.run_mode == 1:
            raise Fail(
                RT_FEATURE_NOT_SUPPORT, "host-to-host memcpy_async is not supported in host mode"
            )

        def run() -> None:
            ctypes.memmove(real_dst, real_src, count)

        allocs = tuple(a for a in (dst_alloc, src_alloc) if a is not None)
        self._submit(stream, _Task(run, allocs=allocs, is_memory=True))
        return ()

    def api_get_mem_info(self, attr: int) -> tuple[int, int]:
        if not 0 <= attr <= _MEM_ATTR_MAX:
            raise Fail(INVALID_PARAM, f"memory attribute {attr} is out of range 0..17")
        ctx = self._current()
        device = self._device(ctx.device)
        total = self.config.memory_per_device
        return (max(0, total - device.used), total)

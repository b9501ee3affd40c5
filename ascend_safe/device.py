"""Device sessions (``acl.rt.set_device`` when opened, ``acl.rt.reset_device`` at close) and
explicit contexts; both create streams, events and memory through the same factory methods."""

from __future__ import annotations

import functools
import re
import threading
import time
from typing import Any

from typing_extensions import Self

from . import _backend, _process, _runtime, _scope, _validate, admission, slots
from ._interrupts import POLL, interruption_point
from ._lifetime import call_all
from ._staging import StagingPool
from .constants import EventFlag, MallocPolicy, MemAttr, StreamFlag
from .context import ContextOwner
from .errors import ProcessLimitError, SlotWaitTimeoutError
from .event import Event
from .memory import UNINITIALIZED, DeviceMemory, DvppMemory, Fill, HostMemory, StagingMemory
from .stream import DefaultStream, Stream, StreamQuota, device_marks

__all__ = ["Context", "ContextFactories", "Device"]


class _SlotTable:
    """The process slot this process holds per device, shared by its sessions on it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: dict[int, tuple[slots.DeviceSlot, int]] = {}

    def take(self, device_id: int, timeout: float | None, soc: str | None) -> None:
        with self.lock:
            entry = self.held.get(device_id)
            if entry is not None:
                self.held[device_id] = (entry[0], entry[1] + 1)
                return
        limit = slots.process_limit(soc)
        slot = _acquire_slot(device_id, limit, timeout)  # may wait: not under the lock
        with self.lock:
            entry = self.held.get(device_id)
            if entry is not None:  # another thread of this process got one meanwhile
                self.held[device_id] = (entry[0], entry[1] + 1)
                slot.release()
            else:
                self.held[device_id] = (slot, 1)

    def give(self, device_id: int) -> None:
        with self.lock:
            entry = self.held.get(device_id)
            if entry is None:
                return
            if entry[1] > 1:
                self.held[device_id] = (entry[0], entry[1] - 1)
                return
            del self.held[device_id]
        entry[0].release()

    def forget(self) -> None:
        """In a forked child: the slots are the parent's (the slots module closed the fds)."""
        self.lock = threading.Lock()
        self.held = {}


def _acquire_slot(device_id: int, limit: int, timeout: float | None) -> slots.DeviceSlot:
    """:func:`slots.acquire`, waiting in slices so that an interrupt (deferred while a device
    session is built) can end a long wait."""
    start = time.monotonic()
    while True:
        left = None if timeout is None else max(0.0, start + timeout - time.monotonic())
        last = left is not None and left <= POLL
        try:
            return slots.acquire(device_id, limit, timeout=left if last else POLL)
        except ProcessLimitError as exc:
            if not last:
                interruption_point()
                continue
            if not timeout:
                raise
            # the message gives the time of the last slice: give the whole wait instead
            waited = f"after waiting {time.monotonic() - start:.2f} s"
            message = re.sub(r"after waiting [0-9.]+ s", waited, exc.message)
            raise SlotWaitTimeoutError(exc.device, exc.limit, exc.holders, message) from None


_slot_table = _SlotTable()
_process.on_fork_child(_slot_table.forget)


class ContextFactories(ContextOwner):
    """The factory methods a :class:`Device` and a :class:`Context` share: each creates the
    resource in that context (a device's default one, or the explicit context). The classes
    can be used directly too (``Stream(ctx)`` is ``ctx.stream()``)."""

    __slots__ = ()

    def stream(self, *, priority: int | None = None, flags: StreamFlag | int = 0) -> Stream:
        """A new stream in this context (see :class:`Stream` for *priority* and *flags*)."""
        return Stream(self, priority=priority, flags=flags)

    def event(
        self, *, flags: EventFlag | int | None = None, enable_timing: bool | None = None
    ) -> Event:
        """A new event in this context (see :class:`Event` for *flags* and *enable_timing*)."""
        return Event(self, flags=flags, enable_timing=enable_timing)

    def malloc(
        self, size: int, *, fill: Fill = 0, policy: MallocPolicy | int = MallocPolicy.HUGE_FIRST
    ) -> DeviceMemory:
        """Zero-filled (or *fill*-filled) device memory."""
        return DeviceMemory(self, size, fill=fill, policy=policy)

    def malloc_host(self, size: int, *, fill: Fill = 0) -> HostMemory:
        """Zero-filled page-locked host memory."""
        return HostMemory(self, size, fill=fill)

    def dvpp_malloc(self, size: int, *, fill: Fill = 0) -> DvppMemory:
        """Zero-filled DVPP (media) memory."""
        return DvppMemory(self, size, fill=fill)

    def host_from_numpy(self, array: Any) -> HostMemory:
        """Page-locked host memory holding a copy of *array* (see :meth:`Memory.from_numpy`)."""
        return HostMemory.from_numpy(self, array)

    def device_from_numpy(self, array: Any) -> DeviceMemory:
        """Device memory holding a copy of *array* (see :meth:`Memory.from_numpy`)."""
        return DeviceMemory.from_numpy(self, array)


class Device(ContextFactories):
    """A session on one NPU: initialises pyacl if needed, binds the device, owns its children.

    Opening the first session on a device in this process takes one of the device's process
    slots (see :mod:`ascend_safe.slots`); a full device raises :class:`ProcessLimitError` at once,
    or after waiting up to *slot_timeout* seconds (``None`` or ``math.inf``: wait as long as it
    takes).

    Streams are capped per device (:class:`StreamLimitError` past the cap, instead of the
    runtime's 207008): *max_streams*, else ``ASCEND_SAFE_MAX_STREAMS``, else the product's
    limit less a reserve for the runtime's own streams (see :func:`stream.product_stream_limit`).

    Closing the session closes everything created on it (data buffers, events, memory, streams,
    contexts, in that order, newest first within a kind) and then resets the device.
    """

    kind = "device"
    teardown_rank = 5
    __slots__ = ("_default_stream", "_id", "_lost", "_max_streams", "_staging", "_stream_quota")

    def __init__(
        self,
        device_id: int = 0,
        *,
        slot_timeout: float | None = 0.0,
        max_streams: int | None = None,
    ) -> None:
        device_id = _validate.index(device_id, "device id", minimum=0)
        slot_timeout = _validate.timeout(slot_timeout, "slot_timeout", maximum=None)
        if max_streams is not None:
            max_streams = _validate.index(max_streams, "max_streams", minimum=1)
        super().__init__(None)
        self._id = device_id
        #: Set once pyacl reports the device gone: cleanup then skips waiting for its work.
        self._lost = False
        self._max_streams = max_streams
        self._staging = StagingPool(self._new_staging)
        self._construct(lambda: self._create(slot_timeout))
        self._default_stream = DefaultStream(self)

    def _new_staging(self, nbytes: int) -> StagingMemory:
        return StagingMemory(self, nbytes, fill=UNINITIALIZED)

    def _create(self, slot_timeout: float | None) -> int:
        device_id = self._id
        _runtime.ensure_initialized()
        count = _backend.call("rt.get_device_count", resource=self)
        if device_id >= count:
            raise ValueError(
                f"device {device_id} does not exist: this machine has {count} device(s), "
                f"ids 0..{count - 1}"
            )
        name = _backend.call_value("get_soc_name")
        soc = name if isinstance(name, str) else None
        self._stream_quota = StreamQuota(device_id, self._max_streams, soc)
        _slot_table.take(device_id, slot_timeout, soc)
        try:
            _backend.call("rt.set_device", device_id, resource=self)
            try:
                self._ctx = _backend.call("rt.get_context", resource=self)
            except BaseException:
                _backend.call("rt.reset_device", device_id, resource=self)
                raise
        except BaseException:
            _slot_table.give(device_id)
            raise
        self._became_current()
        return device_id

    def __enter__(self) -> Self:
        super().__enter__()
        _scope.enter(self)  # the thread's current session (current_device()) inside the block
        return self

    def __exit__(self, *exc_info: object) -> None:
        _scope.exit(self)
        super().__exit__(*exc_info)

    @property
    def id(self) -> int:
        """The device id (readable even after close)."""
        return self._id

    @property
    def device(self) -> Device:
        return self

    @property
    def max_streams(self) -> int:
        """The cap on streams this process may hold open on the device (see the class doc)."""
        self._checked_handle()
        return self._stream_quota.limit

    @property
    def default_stream(self) -> DefaultStream:
        """The default stream of this device's default context, as an explicit object."""
        self._checked_handle()
        return self._default_stream

    def synchronize(self) -> None:
        """Wait for all work queued on this device (``acl.rt.synchronize_device``).

        Only the work submitted before the call is known complete afterwards: what other
        threads queue meanwhile stays pending until its own synchronize.
        """
        with self._using():
            marks = device_marks(self)
            self.make_current()
            _backend.call("rt.synchronize_device", resource=self)
            call_all([functools.partial(stream._retire, seq) for stream, seq in marks])

    def set_oom_policy(self, policy: str | None, *, timeout: float | None = None) -> None:
        """The OOM policy of allocations on this session (see :func:`ascend_safe.set_oom_policy`;
        ``None`` falls back to the process-wide one)."""
        admission.set_oom_policy(policy, timeout=timeout, device=self)

    def mem_info(self, attr: MemAttr = MemAttr.HBM_MEM) -> tuple[int, int]:
        """``(free, total)`` bytes of *attr* memory on this device."""
        kind = _validate.member(attr, MemAttr, "memory attribute")
        with self._using():
            self.make_current()
            free, total = _backend.call("rt.get_mem_info", kind, resource=self)
        return int(free), int(total)

    # -- factories (the classes can be used directly too) -------------------------------------

    def context(self) -> Context:
        """A new explicit context on this device."""
        return Context(self)

    def _release(self, handle: Any) -> None:
        default_stream = getattr(self, "_default_stream", None)  # None if still being built
        if default_stream is not None:
            default_stream._close_with_device()
        _backend.call("rt.reset_device", handle, resource=self)
        self._forget_current()
        _slot_table.give(self._id)

    def _describe(self) -> str:
        return f" id={self._id}"


class Context(ContextFactories):
    """An explicit context on a device (``acl.rt.create_context``), destroyed at close."""

    kind = "context"
    teardown_rank = 4
    __slots__ = ("_device",)

    def __init__(self, device: Device) -> None:
        if not isinstance(device, ContextOwner) or device.device is not device:
            raise TypeError(f"Context() takes a Device, not {type(device).__name__}")
        super().__init__(device)
        self._device = device
        self._construct(self._create)

    def _create(self) -> int:
        ctx: int = _backend.call("rt.create_context", self._device.id, resource=self)
        self._ctx = ctx
        self._became_current()
        return ctx

    @property
    def device(self) -> Device:
        return self._device

    def _release(self, handle: Any) -> None:
        _backend.call("rt.destroy_context", handle, resource=self)
        self._forget_current()

    def _describe(self) -> str:
        return f" device={self._device.id}"

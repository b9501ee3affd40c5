"""The simulator's records of pyacl things: devices, contexts, streams, events, data buffers.

Plain state only; the behaviour that changes them lives in the domain modules.
"""

from __future__ import annotations

import collections
import threading
from typing import Callable, Optional

from ._alloc import DEVICE_BASE, DVPP_OFFSET, REGION, Alloc
from ._slots import DeviceLedger

__all__ = [
    "EVENT_DEFAULT",
    "EVENT_SYNC",
    "EVENT_WAIT_FLAGS",
    "Context",
    "DataBuffer",
    "Device",
    "Event",
    "Record",
    "Stream",
    "Task",
]

#: aclrtEventFlag ACL_EVENT_SYNC (= RT_EVENT_DDSYNC_NS): events usable for cross-stream waits.
EVENT_SYNC = 0x1
#: RT_EVENT_DEFAULT (DDSYNC | TIME_LINE | STREAM_MARK), the flags of a create_event event
#: (``pkg_inc/runtime/runtime/event.h``).
EVENT_DEFAULT = 0x4 | 0x8 | 0x2
#: Flags giving an event a wait task: DDSYNC_NS, DDSYNC, EXTERNAL, IPC.
EVENT_WAIT_FLAGS = 0x1 | 0x4 | 0x20 | 0x40


class Record:
    """One recording of an event: complete when its stream reaches it."""

    __slots__ = ("done", "timestamp")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.timestamp: Optional[float] = None


class Task:
    """Queued stream work: a callable run under the global lock, with what it references."""

    __slots__ = ("allocs", "finished", "is_memory", "record", "run", "wait_for")

    def __init__(
        self,
        run: Optional[Callable[[], None]],
        *,
        allocs: tuple[Alloc, ...] = (),
        is_memory: bool = False,
        record: Optional[Record] = None,
        wait_for: Optional[Record] = None,
    ) -> None:
        self.run = run
        self.allocs = allocs
        self.is_memory = is_memory
        self.record = record
        self.wait_for = wait_for
        self.finished = False


class Stream:
    """A stream: FIFO tasks run in order by a daemon worker thread started on demand."""

    def __init__(self, handle: int, context: Context, explicit: bool) -> None:
        self.handle = handle
        self.context = context
        self.device = context.device
        self.explicit = explicit
        self.cond = threading.Condition(threading.Lock())
        self.queue: collections.deque[Task] = collections.deque()
        self.submitted = 0
        self.completed = 0
        self.closed = False
        self.worker: Optional[threading.Thread] = None


class Context:
    """A context: its device, whether it is the device's default, its streams."""

    def __init__(self, handle: int, device: int, default: bool) -> None:
        self.handle = handle
        self.device = device
        self.default = default
        self.alive = True
        self.streams: dict[int, Stream] = {}
        self.default_stream: Optional[Stream] = None


class Event:
    """An event: runtime flags (``RT_EVENT_*``), whether it is an ``_ex`` event, latest record."""

    def __init__(self, handle: int, device: int, flags: int, ex: bool = False) -> None:
        self.handle = handle
        self.device = device
        self.flags = flags
        self.ex = ex
        self.latest: Optional[Record] = None

    @property
    def without_wait_task(self) -> bool:
        """No flag that gives the event a wait task (runtime ``Event::IsEventWithoutWaitTask``)."""
        return not self.flags & EVENT_WAIT_FLAGS


class DataBuffer:
    __slots__ = ("handle", "ptr", "size")

    def __init__(self, handle: int, ptr: int, size: int) -> None:
        self.handle = handle
        self.ptr = ptr
        self.size = size


class Device:
    """Per-device process state: set_device refcount, default context, slot, lost flag."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.refcount = 0
        self.default_context: Optional[Context] = None
        self.slot_fd: Optional[int] = None
        self.lost = False
        self.used = 0  # bytes this process holds on the device (the ledger has every process's)
        self.ledger: Optional[DeviceLedger] = None
        self.next_normal = DEVICE_BASE + index * REGION
        self.next_dvpp = DEVICE_BASE + index * REGION + DVPP_OFFSET

"""Streams, and the bookkeeping of async work in flight on them.

Each stream keeps a list of pending submissions (what an async copy must keep alive, and what
to do once it is known complete). A synchronize, or an event synchronize covering a submission,
retires it. The set of streams with work in flight is what the fork guard and memory frees
consult, so it is kept exact and cheap.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from . import _backend, _lifetime, _validate
from ._lifetime import call_all
from .constants import StreamFlag, StreamStatus
from .context import ContextOwner, InContext
from .errors import make_acl_error

if TYPE_CHECKING:
    from .device import Device
    from .event import Event

__all__ = ["DefaultStream", "Stream", "busy_streams", "retire_device"]


#: serial -> stream, for every stream with submissions not yet known complete.
_busy: dict[int, Stream] = {}
#: ACL_ERROR_RT_STREAM_SYNC_TIMEOUT, raised when a zero-timeout poll finds work queued.
_STREAM_SYNC_TIMEOUT = 507046


class _Submission(NamedTuple):
    seq: int
    keepalive: tuple[object, ...]
    on_retire: Callable[[], None] | None


class Stream(InContext):
    """A pyacl stream (``acl.rt.create_stream``): an ordered queue of device work."""

    kind = "stream"
    teardown_rank = 3
    __slots__ = ("_lock", "_pending", "_seq")

    def __init__(
        self,
        owner: ContextOwner,
        *,
        priority: int | None = None,
        flags: StreamFlag | int = 0,
    ) -> None:
        mask = _validate.flags(flags, StreamFlag, "stream flags")
        if priority is not None:
            priority = _validate.index(priority, "stream priority", minimum=0)
            if priority > 7:
                raise ValueError(f"stream priority must be 0 (highest) to 7, got {priority}")
        super().__init__(owner)
        self._init_queue()
        self._construct(lambda: self._create(priority, mask))

    def _create(self, priority: int | None, mask: int) -> int:
        self._owner.make_current()
        if priority is None and not mask:
            handle: int = _backend.call("rt.create_stream", resource=self)
        else:
            handle = _backend.call(
                "rt.create_stream_with_config", priority or 0, mask, resource=self
            )
        return handle

    def _init_queue(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[_Submission] = []
        self._seq = 0

    @property
    def busy(self) -> bool:
        """True while submitted async work is not yet known complete."""
        return bool(self._pending)

    # -- submitting work ----------------------------------------------------------------------

    def _submit(
        self,
        api: str,
        *args: Any,
        keepalive: tuple[object, ...] = (),
        on_retire: Callable[[], None] | None = None,
    ) -> int:
        """Queue async *api* (the stream handle is appended); returns the submission number."""
        handle = self._use()
        with self._lock:
            _backend.call(api, *args, handle, resource=self)
            self._seq += 1
            seq = self._seq
            if keepalive or on_retire is not None:
                self._track(_Submission(seq, keepalive, on_retire))
            return seq

    def _track(self, submission: _Submission) -> None:
        """Remember *submission* until it is known complete (call under the stream lock)."""
        if not self._pending:
            _busy[self._serial] = self
        self._pending.append(submission)

    def _retire(self, through: int | None = None) -> None:
        """Forget submissions up to *through* (all if None): they are known complete."""
        with self._lock:
            pending = self._pending
            if not pending:
                return
            if through is None or through >= pending[-1].seq:
                done, self._pending = pending, []
                _busy.pop(self._serial, None)
            else:
                cut = 0
                while cut < len(pending) and pending[cut].seq <= through:
                    cut += 1
                done, self._pending = pending[:cut], pending[cut:]
        call_all([item.on_retire for item in done if item.on_retire is not None])

    # -- waiting ------------------------------------------------------------------------------

    def synchronize(self, timeout: float | None = None) -> None:
        """Block until all work queued so far is done; *timeout* in seconds.

        ``None`` or ``math.inf`` wait forever; a finite timeout is 0 (poll) up to about 24.8
        days (pyacl takes milliseconds as a C ``int``). Errors of async work surface here. On
        timeout, ``AclError`` 507046 is raised.
        """
        seconds = _validate.timeout(timeout, "timeout")
        self._drain(self._checked_handle(), seconds)

    def _drain(self, handle: int, timeout: float | None) -> None:
        """Wait for the work queued so far, then retire it."""
        self._owner.make_current()
        through = self._seq
        ms = _validate.timeout_ms(timeout)
        if ms is None:
            _backend.call("rt.synchronize_stream", handle, resource=self)
        elif ms > 0:
            _backend.call("rt.synchronize_stream_with_timeout", handle, ms, resource=self)
        else:
            # A timeout of 0 ms is invalid for the runtime (107000, api_error.cc): poll instead.
            status = _backend.call("rt.stream_query", handle, resource=self)
            if status != StreamStatus.COMPLETE:
                raise make_acl_error(
                    _STREAM_SYNC_TIMEOUT,
                    "acl.rt.synchronize_stream_with_timeout",
                    "timeout 0: the stream still has work queued",
                    repr(self),
                )
        self._retire(through)

    def _drain_if_busy(self) -> None:
        """Drain if work is pending: before memory it may use is touched or freed (the wait is
        bounded during exit teardown)."""
        if self._pending and not self.closed:
            self._drain(self._checked_handle(), _lifetime.flags.close_timeout)

    def query(self) -> bool:
        """True if all queued work is complete (never blocks)."""
        handle = self._use()
        through = self._seq
        status = _backend.call("rt.stream_query", handle, resource=self)
        if status != StreamStatus.COMPLETE:
            return False
        self._retire(through)
        return True

    def wait(self, event: Event) -> None:
        """Make later work on this stream wait until *event* (as last recorded) completes."""
        from .event import Event

        if not isinstance(event, Event):
            raise TypeError(f"Stream.wait() takes an Event, not {type(event).__name__}")
        _validate.same_device(self, event, "wait for an event")
        event_handle = event._checked_handle()
        handle = self._use()
        with self._lock:
            _backend.call("rt.stream_wait_event", handle, event_handle, resource=self)
            source, through = event._recorded_on, event._recorded_seq
            if source is not None and source is not self:
                # once this stream is known past the wait, so is the source up to the event
                self._seq += 1
                self._track(_Submission(self._seq, (), functools.partial(source._retire, through)))

    def _release(self, handle: Any) -> None:
        self._drain(handle, _lifetime.flags.close_timeout)
        _backend.call("rt.destroy_stream", handle, resource=self)

class DefaultStream(Stream):
    """The default stream of a device's default context: explicit, and never closed by hand.

    pyacl names it with handle ``0``; this object stands for it so that no API ever takes
    ``None`` or ``0`` to mean "default". ``close()`` does nothing: it lives as long as its
    device session.
    """

    kind = "default stream"
    tracked = False
    __slots__ = ()

    def __init__(self, device: Device) -> None:
        InContext.__init__(self, device)
        self._init_queue()
        self._construct(lambda: 0)

    def close(self) -> None:
        """Does nothing: the default stream closes with its device."""

    def __del__(self) -> None:
        """Nothing to release: pyacl owns the default stream, the device session closes it."""

    def _close_with_device(self) -> None:
        if not self.closed:
            Stream.close(self)

    def _release(self, handle: Any) -> None:
        if self._pending:
            self._drain(handle, _lifetime.flags.close_timeout)


def busy_streams() -> list[Stream]:
    """Streams with async work in flight (in this process)."""
    return list(_busy.values())


def retire_device(device: Device) -> None:
    """After a device-wide synchronize: every stream of *device* is drained."""
    for stream in busy_streams():
        if stream.device is device or stream.device.id == device.id:
            stream._retire()

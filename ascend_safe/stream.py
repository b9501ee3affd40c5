"""Streams, and the bookkeeping of async work in flight on them.

Each stream keeps a list of pending submissions (what an async copy must keep alive, and what
to do once it is known complete). A synchronize, or an event synchronize covering a submission,
retires it. The set of streams with work in flight is what the fork guard and memory frees
consult, so it is kept exact and cheap; it holds streams weakly, so a stream the program drops
is released (and warned about) like any other dropped object.

Retiring runs the submissions' completion steps (host deliveries of async downloads): whichever
thread retires a submission runs them, and a synchronize in another thread returns only once
every delivery it covers has run. The stream lock is reentrant, as a finalizer run by the
garbage collector while it is held may use the same stream.
"""

from __future__ import annotations

import functools
import itertools
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from . import _backend, _lifetime, _validate
from ._interrupts import POLL, critical, interruption_point
from .constants import StreamFlag, StreamStatus
from .context import ContextOwner, InContext
from .errors import AclError, ResourceClosedError, make_acl_error

if TYPE_CHECKING:
    from .device import Device
    from .event import Event

__all__ = ["DefaultStream", "Stream", "busy_streams", "device_marks"]

#: pyacl's code for a device that is gone (lost across a system sleep, or removed): the work
#: queued on it is gone too.
DEVICE_LOST = 207004

#: serial -> weak reference, for every stream with submissions not yet known complete.
_busy: dict[int, weakref.ref[Stream]] = {}
_batches = itertools.count(1)
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
    __slots__ = ("_delivered", "_delivering", "_lock", "_pending", "_seq")

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
        self._lock = threading.RLock()
        self._delivered = threading.Condition(self._lock)
        self._pending: list[_Submission] = []
        self._seq = 0
        #: batch -> (first submission number, thread) of completion steps running now
        self._delivering: dict[int, tuple[int, int]] = {}

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
        with self._using():
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
            _busy[self._serial] = weakref.ref(self)
        self._pending.append(submission)

    def _retire(self, through: int | None = None, *, deliver: bool = True) -> None:
        """Submissions up to *through* (all if None) are known complete: run their completion
        steps (or, with *deliver* False, drop them: the work is gone), and return once those
        that other threads took over have run too."""
        if not self._pending and not self._delivering:
            return
        me = threading.get_ident()
        with critical:  # what is taken from the list runs: an interrupt waits for it
            with self._lock:
                pending = self._pending
                limit = self._seq if through is None else through
                cut = 0
                while cut < len(pending) and pending[cut].seq <= limit:
                    cut += 1
                batch = 0
                steps: list[Callable[[], object]] = []
                if cut:
                    done = pending[:cut]
                    if deliver:
                        steps = [s.on_retire for s in done if s.on_retire is not None]
                    if steps:  # listed before leaving the pending list: the early return above
                        batch = next(_batches)  # reads both without the lock
                        self._delivering[batch] = (done[0].seq, me)
                    self._pending = pending[cut:]
                    if not self._pending:
                        _busy.pop(self._serial, None)
            if batch:
                try:
                    _run_every(steps)
                finally:
                    with self._lock:
                        del self._delivering[batch]
                        self._delivered.notify_all()
        if self._delivering:
            with self._lock:
                while any(
                    first <= limit and thread != me
                    for first, thread in self._delivering.values()
                ):
                    self._delivered.wait(POLL)
                    interruption_point()

    # -- waiting ------------------------------------------------------------------------------

    def synchronize(self, timeout: float | None = None) -> None:
        """Block until all work queued so far is done; *timeout* in seconds.

        ``None`` or ``math.inf`` wait forever; a finite timeout is 0 (poll) up to about 24.8
        days (pyacl takes milliseconds as a C ``int``). Errors of async work surface here. On
        timeout, ``AclError`` 507046 is raised.
        """
        seconds = _validate.timeout(timeout, "timeout")
        with self._using() as handle:
            self._drain(handle, seconds)

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

    def _drain_for_cleanup(self, handle: int) -> None:
        """Drain before a release; on a lost device the work is gone: drop it instead (the
        wait is bounded during exit teardown)."""
        device = self._owner.device
        if not self._pending:
            return
        if device._lost:
            self._retire(deliver=False)
            return
        try:
            self._drain(handle, _lifetime.flags.close_timeout)
        except AclError as exc:
            if exc.code != DEVICE_LOST:
                raise
            device._lost = True
            self._retire(deliver=False)

    def _drain_if_busy(self) -> None:
        """Drain if work is pending: before memory it may use is touched or freed. If another
        thread is closing the stream, wait for that close (which drains it)."""
        if not self._pending:
            return
        try:
            use = self._using()
            handle = use.__enter__()
        except ResourceClosedError:
            self._await_closed()
            return
        try:
            self._drain_for_cleanup(handle)
        finally:
            use.__exit__(None, None, None)

    def query(self) -> bool:
        """True if all queued work is complete (never blocks)."""
        with self._using():
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
        with _lifetime.using(event, self):
            event_handle = event._checked_handle()
            handle = self._use()
            with self._lock:
                _backend.call("rt.stream_wait_event", handle, event_handle, resource=self)
                source, through = event._recorded_on, event._recorded_seq
                if source is not None and source is not self:
                    # once this stream is known past the wait, so is the source up to the event
                    self._seq += 1
                    self._track(
                        _Submission(self._seq, (), functools.partial(source._retire, through))
                    )

    def _release(self, handle: Any) -> None:
        # pyacl's destroy waits for the queue itself; the drain runs the completion steps
        self._drain_for_cleanup(handle)
        self._owner.make_current()
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
        self._drain_for_cleanup(handle)


def _run_every(steps: list[Callable[[], object]]) -> None:
    """Run every step even if one fails (each is a delivery someone waits for), then raise
    the first error, an interrupt included."""
    first: BaseException | None = None
    for step in steps:
        try:
            step()
        except BaseException as exc:
            if first is None:
                first = exc
    if first is not None:
        try:
            raise first
        finally:
            first = None


def busy_streams() -> list[Stream]:
    """Streams with async work in flight (in this process)."""
    return [s for s in (ref() for ref in list(_busy.values())) if s is not None]


def device_marks(device: Device) -> list[tuple[Stream, int]]:
    """Before a device-wide synchronize: each busy stream of *device* with the number of its
    last submission so far (what the synchronize may retire, and no more)."""
    return [
        (stream, stream._seq)
        for stream in busy_streams()
        if stream.device is device or stream.device.id == device.id
    ]

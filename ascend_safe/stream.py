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
import os
import threading
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from . import _backend, _inflight, _lifetime, _process, _validate
from ._interrupts import POLL, critical, interruption_point, run_all
from .constants import StreamFlag, StreamStatus
from .context import ContextOwner, InContext, this_thread
from .errors import AclError, ResourceClosedError, StreamLimitError, make_acl_error

if TYPE_CHECKING:
    from .device import Device

__all__ = [
    "ENV_MAX_STREAMS",
    "DefaultStream",
    "Marker",
    "Stream",
    "StreamQuota",
    "device_marks",
    "product_stream_limit",
]

#: pyacl's code for a device that is gone (lost across a system sleep, or removed): the work
#: queued on it is gone too.
DEVICE_LOST = 207004

_busy = _inflight.busy
_batches = itertools.count(1)
#: ACL_ERROR_RT_STREAM_SYNC_TIMEOUT, raised when a zero-timeout poll finds work queued.
_STREAM_SYNC_TIMEOUT = 507046


#: Environment variable capping the streams per device (a positive integer).
ENV_MAX_STREAMS = _process.variable("ASCEND_SAFE_MAX_STREAMS", "streams allowed per device")
#: Streams left to the runtime below the product limit by default: default streams of
#: contexts and the streams models and the runtime create on their own count against it too.
STREAM_RESERVE = 64
#: The runtime's stream limit per device, default streams included, by SoC name prefix
#: (CANN's aclrtCreateStream limits); unknown products get the smallest.
_STREAM_LIMITS = (
    (("ascend910b", "ascend910_93", "ascend950"), 1984),
    (("ascend310p",), 1024),
    (("ascend310b",), 512),
    (("ascend910",), 2024),
)
_SMALLEST_STREAM_LIMIT = 512


def product_stream_limit(soc_name: str | None) -> int:
    """The runtime's limit on streams per device for SoC *soc_name*."""
    name = (soc_name or "").strip().lower()
    for prefixes, limit in _STREAM_LIMITS:
        if name.startswith(prefixes):
            return limit
    return _SMALLEST_STREAM_LIMIT


_quota_lock = threading.Lock()
#: device id -> streams this process has open on it (through any session or context)
_open_streams: dict[int, int] = {}


def _forget_streams_in_child() -> None:
    global _quota_lock
    _quota_lock = threading.Lock()
    _open_streams.clear()  # the parent's streams are not this process's


_process.on_fork_child(_forget_streams_in_child)


class StreamQuota:
    """The cap on streams one device session lets this process hold on its device."""

    __slots__ = ("device_id", "limit", "source")

    def __init__(self, device_id: int, max_streams: int | None, soc_name: str | None) -> None:
        hardware = product_stream_limit(soc_name)
        product = f"{soc_name or 'an unknown product'} (limit {hardware})"
        if max_streams is not None:
            source = "max_streams="
        else:
            raw = os.environ.get(ENV_MAX_STREAMS, "").strip()
            if raw:
                try:
                    max_streams = int(raw)
                except ValueError:
                    max_streams = 0
                if max_streams <= 0:
                    raise ValueError(f"{ENV_MAX_STREAMS} must be a positive integer, got {raw!r}")
                source = ENV_MAX_STREAMS
            else:
                max_streams = hardware - STREAM_RESERVE
                source = f"the default: {product} less {STREAM_RESERVE} for the runtime"
        if max_streams > hardware:
            raise ValueError(
                f"{source} {max_streams} exceeds the {hardware} streams {product} allows per "
                f"device, default streams included; use at most {hardware}"
            )
        self.device_id = device_id
        self.limit = max_streams
        self.source = source

    def open_streams(self) -> int:
        """Streams this process holds on the device now."""
        return _open_streams.get(self.device_id, 0)

    def take(self, stream: object) -> None:
        """Count one more stream, or raise :class:`StreamLimitError` at the cap."""
        device = self.device_id
        with _quota_lock:
            count = _open_streams.get(device, 0)
            if count < self.limit:
                _open_streams[device] = count + 1
                return
        raise StreamLimitError(
            device,
            self.limit,
            count,
            f"cannot create {stream!r}: device {device} already has {count} open streams in "
            f"this process, the cap ({self.source}: {self.limit}); close streams that are no "
            f"longer needed, or raise the cap with Device(..., max_streams=N) or "
            f"{ENV_MAX_STREAMS}",
        )

    def give(self, stream: object) -> None:
        """One stream fewer."""
        device = self.device_id
        with _quota_lock:
            count = _open_streams.get(device, 0)
            if count > 1:
                _open_streams[device] = count - 1
            else:
                _open_streams.pop(device, None)


class _Submission(NamedTuple):
    seq: int
    keepalive: tuple[object, ...]
    on_retire: Callable[[], None] | None


_COMPLETE = int(StreamStatus.COMPLETE)
_enter = critical.__enter__
_exit = critical.__exit__
_get_ident = threading.get_ident


class Marker(InContext):
    """What a stream knows of an event (the base of :class:`~ascend_safe.Event`): the stream
    it was last recorded on, and the submission number that recording had there."""

    __slots__ = ("_recorded_on", "_recorded_seq")

    _recorded_on: Stream | None
    _recorded_seq: int


class Stream(InContext):
    """A pyacl stream (``acl.rt.create_stream``): an ordered queue of device work.

    ``with Stream(dev) as s:`` *closes* the stream when the block ends (after draining its
    work), like every resource; it does not make the stream "current" as in CuPy or PyTorch.
    There is no current stream: every asynchronous operation takes its stream explicitly, and
    leaving the stream out of a copy makes it synchronous.
    """

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
        mask = 0 if flags.__class__ is int and flags == 0 else (
            _validate.flags(flags, StreamFlag, "stream flags")
        )
        if priority is not None:
            priority = _validate.index(priority, "stream priority", minimum=0)
            if priority > 7:
                raise ValueError(f"stream priority must be 0 (highest) to 7, got {priority}")
        InContext.__init__(self, owner)
        self._init_queue()
        self._construct(self._create if priority is None and not mask else (
            functools.partial(self._create_with_config, priority or 0, mask)
        ))

    def _create(self) -> int:
        self._owner.make_current()
        self._owner.device._stream_quota.take(self)
        try:
            handle: int = _backend.call("rt.create_stream", resource=self)
        except BaseException:
            self._give_quota()
            raise
        return handle

    def _create_with_config(self, priority: int, mask: int) -> int:
        self._owner.make_current()
        self._owner.device._stream_quota.take(self)
        try:
            handle: int = _backend.call(
                "rt.create_stream_with_config", priority, mask, resource=self
            )
        except BaseException:
            self._give_quota()
            raise
        return handle

    def _give_quota(self) -> None:
        self._owner.device._stream_quota.give(self)

    def _init_queue(self) -> None:
        self._lock = threading.RLock()
        #: made when a synchronize first waits for another thread's deliveries
        self._delivered: threading.Condition | None = None
        #: submissions not yet known complete, oldest first (None: none so far)
        self._pending: list[_Submission] | None = None
        self._seq = 0
        #: batch -> (first submission number, thread) of completion steps running now
        self._delivering: dict[int, tuple[int, int]] | None = None

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
        _enter()
        try:
            handle = self._begin_use()
            try:
                owner = self._owner
                if this_thread.current != owner._serial:
                    owner.make_current()
                with self._lock:
                    _backend.call(api, *args, handle, resource=self)
                    seq = self._seq = self._seq + 1
                    if keepalive or on_retire is not None:
                        self._track(_Submission(seq, keepalive, on_retire))
                    return seq
            finally:
                self._end_use()
        finally:
            _exit()

    def _track(self, submission: _Submission) -> None:
        """Remember *submission* until it is known complete (call under the stream lock)."""
        pending = self._pending
        if pending:
            pending.append(submission)
            return
        self._pending = [submission]
        _busy[self._serial] = self._ref

    def _retire(self, through: int | None = None, *, deliver: bool = True) -> None:
        """Submissions up to *through* (all if None) are known complete: run their completion
        steps (or, with *deliver* False, drop them: the work is gone), and return once those
        that other threads took over have run too."""
        if not self._pending and not self._delivering:
            return
        me = _get_ident()
        with critical:  # what is taken from the list runs: an interrupt waits for it
            with self._lock:
                pending = self._pending or []
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
                        if self._delivering is None:
                            self._delivering = {}
                        self._delivering[batch] = (done[0].seq, me)
                    rest = pending[cut:]
                    self._pending = rest or None
                    if not rest:
                        _busy.pop(self._serial, None)
            if batch:
                try:
                    run_all(steps)
                finally:
                    with self._lock:
                        assert self._delivering is not None
                        del self._delivering[batch]
                        if self._delivered is not None:  # someone waits
                            self._delivered.notify_all()
        if self._delivering:
            with self._lock:
                while any(
                    first <= limit and thread != me
                    for first, thread in list((self._delivering or {}).values())
                ):
                    if self._delivered is None:
                        self._delivered = threading.Condition(self._lock)
                    self._delivered.wait(POLL)
                    interruption_point()

    # -- waiting ------------------------------------------------------------------------------

    def synchronize(self, timeout: float | None = None) -> None:
        """Block until all work queued so far is done; *timeout* in seconds.

        ``None`` or ``math.inf`` wait forever; a finite timeout is 0 (poll) up to about 24.8
        days (pyacl takes milliseconds as a C ``int``). Errors of async work surface here. On
        timeout, ``AclError`` 507046 is raised.
        """
        if timeout is not None:
            timeout = _validate.timeout(timeout, "timeout")
        _enter()
        try:
            handle = self._begin_use()
            try:
                if timeout is None:  # the common case, flat
                    owner = self._owner
                    if this_thread.current != owner._serial:
                        owner.make_current()
                    through = self._seq
                    _backend.call("rt.synchronize_stream", handle, resource=self)
                    if self._pending or self._delivering:
                        self._retire(through)
                else:
                    self._drain(handle, timeout)
            finally:
                self._end_use()
        finally:
            _exit()

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
            if status != _COMPLETE:
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
        if not self._pending:
            return
        device = self._owner.device
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
        with self._using() as handle:
            self._owner.make_current()
            through = self._seq
            status = _backend.call("rt.stream_query", handle, resource=self)
            if status != _COMPLETE:
                return False
            self._retire(through)
            return True

    def wait(self, event: Marker) -> None:
        """Make later work on this stream wait until *event* (as last recorded) completes."""
        if not isinstance(event, Marker):
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
        self._give_quota()


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


def device_marks(device: Device) -> list[tuple[Stream, int]]:
    """Before a device-wide synchronize: each busy stream of *device* with the number of its
    last submission so far (what the synchronize may retire, and no more)."""
    marks = []
    for stream in _inflight.busy_streams():
        if isinstance(stream, Stream) and (
            stream.device is device or stream.device.id == device.id
        ):
            marks.append((stream, stream._seq))
    return marks

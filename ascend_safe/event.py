"""Events: markers recorded on a stream, to wait for, query and time work."""

from __future__ import annotations

import functools
from typing import Any

from . import _backend, _lifetime, _validate
from ._interrupts import critical
from .constants import EventFlag, EventRecordedStatus, EventStatus
from .context import ContextOwner, this_thread
from .errors import AclError, EventNotCompleteError
from .stream import Marker, Stream

__all__ = ["Event"]

_OMITTED: Any = object()
_EVENT_NOT_COMPLETE = 507006  # ACL_ERROR_RT_EVENT_NOT_COMPLETE
_RECORDED_COMPLETE = int(EventRecordedStatus.COMPLETE)
_COMPLETE = int(EventStatus.COMPLETE)
_enter = critical.__enter__
_exit = critical.__exit__


class Event(Marker):
    """A pyacl event (``acl.rt.create_event``, or ``create_event_with_flag`` given *flags*).

    *enable_timing* is the GPU-world spelling of :attr:`EventFlag.TIME_LINE`: ``True`` adds
    that flag to *flags* (without *flags*, the plain event already has it: pyACL creates it with
    ``RT_EVENT_DEFAULT``, which includes the timeline); ``False`` is accepted only with *flags*
    that leave ``TIME_LINE`` out, since pyACL has no plain event without timing.
    """

    kind = "event"
    teardown_rank = 1
    __slots__ = ()

    def __init__(
        self,
        owner: ContextOwner,
        *,
        flags: EventFlag | int | None = None,
        enable_timing: bool | None = None,
    ) -> None:
        if enable_timing is not None:
            flags = _timing_flags(flags, enable_timing)
        if flags is None:
            create: Any = self._create
        else:
            mask = _validate.flags(flags, EventFlag, "event flags")
            create = functools.partial(self._create_with_flag, mask)
        Marker.__init__(self, owner)
        self._recorded_on = None
        self._recorded_seq = 0
        self._construct(create)

    def _create(self) -> int:
        self._owner.make_current()
        handle: int = _backend.call("rt.create_event", resource=self)
        return handle

    def _create_with_flag(self, mask: int) -> int:
        self._owner.make_current()
        handle: int = _backend.call("rt.create_event_with_flag", mask, resource=self)
        return handle

    def record(self, stream: Stream = _OMITTED) -> None:
        """Capture the work queued so far on *stream* (omitted: the device's default stream)."""
        if stream.__class__ is not Stream:  # the common case skips the checks below
            self._checked_handle()
            if stream is _OMITTED:
                stream = self._owner.device.default_stream
            elif not isinstance(stream, Stream):
                raise TypeError(
                    f"Event.record() takes a Stream, not {type(stream).__name__}; omit the "
                    "argument to record on the device's default stream"
                )
        _enter()  # one critical section, a use of both (what stream._submit does, flat)
        try:
            handle = self._begin_use()
            try:
                owner = stream._owner
                if owner is not self._owner:
                    _validate.same_device(self, stream, "record an event")
                stream_handle = stream._begin_use()
                try:
                    if this_thread.current != owner._serial:
                        owner.make_current()
                    with stream._lock:
                        _backend.call("rt.record_event", handle, stream_handle, resource=stream)
                        seq = stream._seq = stream._seq + 1
                finally:
                    stream._end_use()
                self._recorded_seq = seq
                self._recorded_on = stream
            finally:
                self._end_use()
        finally:
            _exit()

    def synchronize(self) -> None:
        """Block until the recorded work is done."""
        _enter()
        try:
            handle = self._begin_use()
            try:
                owner = self._owner
                if this_thread.current != owner._serial:
                    owner.make_current()
                _backend.call("rt.synchronize_event", handle, resource=self)
                stream = self._recorded_on
                if stream is not None and (stream._pending or stream._delivering):
                    stream._retire(self._recorded_seq)
            finally:
                self._end_use()
        finally:
            _exit()

    def query(self) -> bool:
        """True if the recorded work is done (an event never recorded counts as done)."""
        with self._using() as handle:
            self._owner.make_current()
            if _backend.has("rt.query_event_status"):
                status = _backend.call("rt.query_event_status", handle, resource=self)
                done = bool(status == _RECORDED_COMPLETE)
            else:
                status = _backend.call("rt.query_event", handle, resource=self)
                done = bool(status == _COMPLETE)
            if done:
                self._retire_covered()
        return done

    def _retire_covered(self) -> None:
        """The recorded work is done: the stream can let go of what it kept for it."""
        stream = self._recorded_on
        if stream is not None:  # even if another thread is closing it: its drain may not
            stream._retire(self._recorded_seq)  # have delivered yet, and this one must wait

    def elapsed_time(self, end: Event) -> float:
        """Milliseconds from this event to *end*; both recorded, and *end* complete."""
        if not isinstance(end, Event):
            raise TypeError(f"elapsed_time() takes an Event, not {type(end).__name__}")
        with _lifetime.using(self, end):
            start_handle = self._checked_handle()
            end_handle = end._checked_handle()
            for ev in (self, end):
                if ev._recorded_on is None:
                    raise ValueError(f"{ev!r} was never recorded; record both events first")
            self._owner.make_current()
            try:
                ms = _backend.call(
                    "rt.event_elapsed_time", start_handle, end_handle, resource=self
                )
            except AclError as exc:
                if exc.code != _EVENT_NOT_COMPLETE:
                    raise
                raise self._not_complete(end) from exc
        return float(ms)

    def _not_complete(self, end: Event) -> EventNotCompleteError:
        """pyacl's 507006: say which of the two events has not completed."""
        pending = []
        for role, ev in (("start", self), ("end", end)):
            try:
                if not ev.query():
                    pending.append(f"the {role} event {ev!r}")
            except Exception:
                pending.append(f"the {role} event {ev!r}")
        if not pending:  # completed meanwhile: pyacl found the end event incomplete
            pending.append(f"the end event {end!r}")
        verb = "have" if len(pending) > 1 else "has"
        return EventNotCompleteError(
            f"elapsed_time: {' and '.join(pending)} {verb} not completed; call synchronize() "
            "on it (or on its stream) before asking for the time between events"
        )

    def _release(self, handle: Any) -> None:
        self._owner.make_current()
        _backend.call("rt.destroy_event", handle, resource=self)
        self._recorded_on = None


def _timing_flags(flags: EventFlag | int | None, enable_timing: object) -> EventFlag | int | None:
    """*flags* with *enable_timing* (``True``/``False``) folded in as ``EventFlag.TIME_LINE``."""
    if not isinstance(enable_timing, bool):
        raise TypeError(f"enable_timing must be True or False, not {enable_timing!r}")
    if flags is None:
        if enable_timing:
            return None  # create_event's RT_EVENT_DEFAULT includes TIME_LINE
        raise ValueError(
            "enable_timing=False needs explicit flags: pyACL's plain event (create_event) always "
            "has the timeline; pass flags=EventFlag.SYNC (or other flags without TIME_LINE) for "
            "an event without timing, or leave enable_timing out"
        )
    mask = _validate.flags(flags, EventFlag, "event flags")
    if enable_timing:
        return mask | EventFlag.TIME_LINE
    if mask & EventFlag.TIME_LINE:
        raise ValueError(
            f"enable_timing=False contradicts flags=0x{mask:x}, which include "
            "EventFlag.TIME_LINE (0x8); drop one of the two"
        )
    return mask

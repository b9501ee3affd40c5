"""Events: markers recorded on a stream, to wait for, query and time work."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _backend, _lifetime, _validate
from .constants import EventFlag, EventRecordedStatus, EventStatus
from .context import ContextOwner, InContext
from .errors import AclError, EventNotCompleteError
from .stream import Stream

if TYPE_CHECKING:
    pass

__all__ = ["Event"]

_OMITTED: Any = object()
_EVENT_NOT_COMPLETE = 507006  # ACL_ERROR_RT_EVENT_NOT_COMPLETE


class Event(InContext):
    """A pyacl event (``acl.rt.create_event``, or ``create_event_with_flag`` given *flags*)."""

    kind = "event"
    teardown_rank = 1
    __slots__ = ("_recorded_on", "_recorded_seq")

    def __init__(self, owner: ContextOwner, *, flags: EventFlag | int | None = None) -> None:
        mask = None if flags is None else _validate.flags(flags, EventFlag, "event flags")
        super().__init__(owner)
        self._recorded_on: Stream | None = None
        self._recorded_seq = 0
        self._construct(lambda: self._create(mask))

    def _create(self, mask: int | None) -> int:
        self._owner.make_current()
        if mask is None:
            handle: int = _backend.call("rt.create_event", resource=self)
        else:
            handle = _backend.call("rt.create_event_with_flag", mask, resource=self)
        return handle

    def record(self, stream: Stream = _OMITTED) -> None:
        """Capture the work queued so far on *stream* (omitted: the device's default stream)."""
        self._checked_handle()
        if stream is _OMITTED:
            stream = self._owner.device.default_stream
        elif not isinstance(stream, Stream):
            raise TypeError(
                f"Event.record() takes a Stream, not {type(stream).__name__}; omit the argument "
                "to record on the device's default stream"
            )
        _validate.same_device(self, stream, "record an event")
        with self._using() as handle:
            self._recorded_seq = stream._submit("rt.record_event", handle)
            self._recorded_on = stream

    def synchronize(self) -> None:
        """Block until the recorded work is done."""
        with self._using():
            handle = self._use()
            _backend.call("rt.synchronize_event", handle, resource=self)
            self._retire_covered()

    def query(self) -> bool:
        """True if the recorded work is done (an event never recorded counts as done)."""
        with self._using():
            handle = self._use()
            if _backend.has("rt.query_event_status"):
                status = _backend.call("rt.query_event_status", handle, resource=self)
                done = bool(status == EventRecordedStatus.COMPLETE)
            else:
                status = _backend.call("rt.query_event", handle, resource=self)
                done = bool(status == EventStatus.COMPLETE)
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


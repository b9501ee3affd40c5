"""Streams and events: tasks run in order by one worker thread per stream.

pyACL: ``rt/rt_stream.cpp``, ``rt/rt_synchronize.cpp``.
"""

from __future__ import annotations

import struct
import threading
import time
from typing import Optional

from ._codes import (
    RT_EVENT_NOT_COMPLETE,
    RT_EVENT_SYNC_TIMEOUT,
    RT_FEATURE_NOT_SUPPORT,
    RT_INTERNAL_ERROR,
    RT_PARAM_INVALID,
    RT_STREAM_CONTEXT,
    RT_STREAM_SYNC_TIMEOUT,
)
from ._core import Core, Fail
from ._objects import EVENT_DEFAULT, Event, Record, Stream, Task

__all__ = ["StreamDomain"]

#: Event flags (runtime event.h): RT_EVENT_EXTERNAL and RT_EVENT_IPC.
_EVENT_EXTERNAL = 0x20
_EVENT_IPC = 0x40


class StreamDomain(Core):
    """Streams and events: tasks run in order by one worker thread per stream."""

    def after_fork_in_child(self) -> None:
        """Streams inherited from the parent get fresh locks and no worker thread."""
        super().after_fork_in_child()
        for stream in self.all_streams:
            stream.cond = threading.Condition(threading.Lock())
            stream.worker = None

    def _drop_device_work(self, device: int) -> None:
        super()._drop_device_work(device)
        for stream in [s for s in self.all_streams if s.device == device]:
            self._cancel_stream(stream)

    def _stream(self, handle: int) -> Stream:
        """The stream for *handle*; 0 is the current context's default stream."""
        if handle == 0:
            stream = self._current().default_stream
            assert stream is not None
            return stream
        stream = self._lookup(self.streams, handle, "stream")
        self._check_lost(stream.device)
        return stream

    def _check_stream_context(self, stream: Stream, handle: int) -> None:
        """107003 when an explicit *stream* is not in the thread's current context.

        api_impl.cc (memcpy_async, memset_async, record_event, reset_event, stream_wait_event,
        destroy_stream) compares the stream's context with the current one; handle 0 means the
        current context's default stream and always matches.
        """
        ctx = self._current()
        if handle != 0 and stream.context is not ctx:
            raise Fail(
                RT_STREAM_CONTEXT,
                f"stream 0x{handle:x} belongs to context 0x{stream.context.handle:x}, not to "
                f"this thread's current context 0x{ctx.handle:x}; call set_context first",
            )

    def _stream_of_context(self, handle: int) -> Stream:
        """The stream for *handle*, which must belong to the current context (else 107003)."""
        stream = self._stream(handle)
        self._check_stream_context(stream, handle)
        return stream

    # ----------------------------------------------------------------- stream machinery

    def _submit(self, stream: Stream, task: Task) -> None:
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

    def _finish(self, task: Task) -> None:
        """Account for a task that ran or was dropped (holding the global lock)."""
        if task.finished:
            return
        task.finished = True
        for alloc in task.allocs:
            alloc.pending -= 1
            if alloc.freed and alloc.pending == 0 and alloc.is_device:
                alloc.drop()  # freed while this task was queued: its bytes can go now
        if task.is_memory:
            self.pending_memory_tasks -= 1
        if task.record is not None:
            task.record.done.set()

    def _work(self, stream: Stream) -> None:
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
            # Python signal handlers never run here (CPython runs them in the main thread
            # only), so KeyboardInterrupt cannot land inside a worker's critical sections.
            return

    def _cancel_stream(self, stream: Stream) -> None:
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
    def _wait_stream(stream: Stream, target: int, timeout: Optional[float]) -> bool:
        """Wait (without the global lock) until *stream* completed *target* tasks."""
        with stream.cond:
            return stream.cond.wait_for(lambda: stream.completed >= target, timeout)

    @staticmethod
    def _timeout(ms: int) -> Optional[float]:
        # api_error.cc StreamSynchronize / EventSynchronize / DeviceSynchronize:
        # (timeout < -1) || (timeout == 0) -> RT_ERROR_INVALID_VALUE (107000)
        if ms < -1 or ms == 0:
            raise Fail(
                RT_PARAM_INVALID, f"timeout {ms} ms is invalid: use -1 (wait forever) or > 0"
            )
        return None if ms == -1 else ms / 1000.0

    def _destroy_stream_now(self, stream: Stream) -> None:
        self._cancel_stream(stream)
        self.streams.pop(stream.handle, None)
        stream.context.streams.pop(stream.handle, None)
        if stream.explicit:
            self.dead[stream.handle] = "stream"

    # ================================================================= acl.rt: stream

    def api_create_stream(self) -> tuple[int]:
        ctx = self._current()
        stream = Stream(self.new_handle(), ctx, explicit=True)
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
            ctx = self._current()  # api_impl.cc StreamDestroy: no context -> 107002
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

    def _create_event(self, flags: int, ex: bool = False) -> tuple[int]:
        ctx = self._current()
        event = Event(self.new_handle(), ctx.device, flags, ex)
        self.events[event.handle] = event
        return (event.handle,)

    def api_create_event(self) -> tuple[int]:
        # rtEventCreate: rtEventCreateWithFlag(RT_EVENT_DEFAULT) (api_c_event.cc)
        return self._create_event(EVENT_DEFAULT)

    @staticmethod
    def _check_flags(flag: int, max_flag: int, solely: tuple[int, ...]) -> None:
        # api_error.cc EventCreate / EventCreateEx
        if not flag & max_flag or flag > max_flag:
            raise Fail(
                RT_PARAM_INVALID,
                f"event flag 0x{flag:x} is invalid: an OR of ACL_EVENT_SYNC (0x1), "
                f"CAPTURE_STREAM_PROGRESS (0x2), 0x4 and TIME_LINE (0x8) (max 0x{max_flag:x})",
            )
        for alone in solely:
            if flag & alone and flag & ~alone:
                raise Fail(
                    RT_PARAM_INVALID,
                    f"event flag 0x{alone:x} cannot be combined with other flags (0x{flag:x})",
                )

    def api_create_event_with_flag(self, flag: int) -> tuple[int]:
        self._check_flags(flag, 0x3F, (0x10, 0x20))
        return self._create_event(flag)

    def api_create_event_ex_with_flag(self, flag: int) -> tuple[int]:
        self._check_flags(flag, 0x4F, (0x10, 0x20, 0x40))
        return self._create_event(flag, ex=True)

    def _event(self, handle: int, destroy: bool = False) -> Event:
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
        stream = self._stream_of_context(stream_handle)
        record = Record()
        event.latest = record
        self._submit(stream, Task(None, record=record))
        return ()

    def api_reset_event(self, handle: int, stream_handle: int) -> tuple[()]:
        event = self._event(handle)
        # api_error.cc EventReset: no wait task -> 207000; api_impl.cc: an _ex event -> 207000
        if event.without_wait_task or event.ex:
            raise Fail(
                RT_FEATURE_NOT_SUPPORT,
                f"reset_event is not supported for event 0x{handle:x} (flags 0x{event.flags:x}"
                f"{', created by create_event_ex_with_flag' if event.ex else ''})",
            )
        if event.flags == EVENT_DEFAULT:
            self.documented(
                "events from create_event must not be passed to reset_event",
                f"reset_event of create_event event 0x{handle:x}; create it with "
                "create_event_with_flag(ACL_EVENT_SYNC)",
                RT_PARAM_INVALID,
            )
        stream = self._stream_of_context(stream_handle)
        target = event.latest

        def run() -> None:
            if event.latest is target:
                event.latest = None

        self._submit(stream, Task(run))
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

    def _not_for_ex(self, handle: int, api: str) -> None:
        # api_error.cc EventQuery / EventQueryWaitStatus: IsNewMode() -> 207000
        if self._event(handle).ex:
            raise Fail(
                RT_FEATURE_NOT_SUPPORT,
                f"{api} is not supported for events from create_event_ex_with_flag",
            )

    def api_query_event(self, handle: int) -> tuple[int]:
        self._not_for_ex(handle, "query_event")
        return (0 if self._event_done(handle) else 1,)

    def api_query_event_status(self, handle: int) -> tuple[int]:
        return (1 if self._event_done(handle) else 0,)

    def api_query_event_wait_status(self, handle: int) -> tuple[int]:
        self._not_for_ex(handle, "query_event_wait_status")
        return (0 if self._event_done(handle) else 1,)

    def api_event_elapsed_time(self, start: int, end: int) -> tuple[float]:
        start_event, end_event = self._event(start), self._event(end)
        # api_error.cc EventElapsedTime: an EXTERNAL (0x20) or IPC (0x40) event -> 207000,
        # before the records are looked at. No flag is required otherwise (no TIME_LINE check:
        # event.cc Event::ElapsedTime reads the timestamps of any recorded event).
        for name, event in (("start", start_event), ("end", end_event)):
            if event.flags in (_EVENT_EXTERNAL, _EVENT_IPC):
                raise Fail(
                    RT_FEATURE_NOT_SUPPORT,
                    f"{name} event has flag 0x{event.flags:x} (EXTERNAL or IPC), which does "
                    "not support elapsed time",
                )
        first = start_event.latest
        last = end_event.latest
        for name, record in (("start", first), ("end", last)):
            if record is None:
                raise Fail(
                    RT_INTERNAL_ERROR,
                    f"{name} event was never recorded; record both events on a stream first",
                )
        for name, record in (("start", first), ("end", last)):
            if not record.done.is_set() or record.timestamp is None:  # type: ignore[union-attr]
                raise Fail(
                    RT_EVENT_NOT_COMPLETE,
                    f"{name} event is not complete; synchronize it first",
                )
        assert first is not None and last is not None
        assert first.timestamp is not None and last.timestamp is not None
        elapsed = (last.timestamp - first.timestamp) * 1000.0
        # pyacl returns a C float (Py_BuildValue("f", ms), rt/rt_synchronize.cpp)
        return (struct.unpack("f", struct.pack("f", elapsed))[0],)

    def api_stream_wait_event(self, stream_handle: int, handle: int) -> tuple[()]:
        with self.lock:
            stream = self._stream_of_context(stream_handle)
            event = self._event(handle)
            if event.without_wait_task:  # api_error.cc StreamWaitEvent
                raise Fail(
                    RT_FEATURE_NOT_SUPPORT,
                    f"stream_wait_event is not supported for event 0x{handle:x} "
                    f"(flags 0x{event.flags:x}: no ACL_EVENT_SYNC)",
                )
            if event.latest is not None:
                self._submit(stream, Task(None, wait_for=event.latest))
        return ()

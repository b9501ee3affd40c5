"""Report threads and host callbacks: ``acl.util.start_thread``/``stop_thread`` and the
``subscribe_report``/``launch_callback``/``process_report``/``unsubscribe_report`` family.

pyACL: ``util/thread.cpp`` (a Python callable run in a native thread, joined by ``stop_thread``,
which raises ``RuntimeError`` for exceptions the callable raised) and ``rt/rt_synchronize.cpp``.
Runtime: ``src/acl/aclrt_c/runtime/callback.c`` (block type check), ``src/acl/aclrt_impl/
callback.cpp`` (``process_report`` timeout check), ``src/runtime/api/impl/api_impl.cc``
(``CallbackLaunch``, ``ProcessReport``), ``src/runtime/core/src/utils/subscribe.cc`` (one
report thread per stream, one device per thread) and ``src/runtime/core/src/stream/stream.cc``
(destroying a stream drops its subscription).

A thread id is the ``pthread_t`` of the thread, which is also what ``threading.get_ident()``
returns inside it; ``process_report`` serves the reports of the calling thread, as the runtime
does with ``pthread_self()``.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
import traceback
from typing import Any, Callable, Optional

from ._codes import (
    INVALID_PARAM,
    RT_REPORT_TIMEOUT,
    RT_STREAM_CONTEXT,
    RT_STREAM_NO_CB_REG,
    RT_STREAM_SUBSCRIBE,
    RT_THREAD_SUBSCRIBE,
)
from ._core import Fail
from ._objects import Record, Stream, Task
from ._stream import StreamDomain

__all__ = ["CallbackDomain"]

#: aclrtCallbackBlockType (include/external/acl/acl_rt.h).
CALLBACK_NO_BLOCK = 0
CALLBACK_BLOCK = 1

#: pthread_join's answers (errno values) for a thread that is not joinable / is the caller.
ESRCH = 3
EDEADLK = 35


class _UserThread:
    """A thread started by ``acl.util.start_thread``: not joined until ``stop_thread``."""

    __slots__ = ("errors", "thread", "tid")

    def __init__(self, thread: threading.Thread, errors: list[str]) -> None:
        self.thread = thread
        self.errors = errors
        self.tid = 0


class _Report:
    """A host callback the stream reached, waiting for its thread's ``process_report``."""

    __slots__ = ("done", "fn", "stream", "user_data")

    def __init__(self, fn: Callable[..., Any], user_data: Any, stream: int, block: bool) -> None:
        self.fn = fn
        self.user_data = user_data
        self.stream = stream
        self.done: Optional[Record] = Record() if block else None


class CallbackDomain(StreamDomain):
    """Report threads, their subscriptions to streams, and host callbacks queued on streams."""

    def _init_state(self) -> None:
        old: Optional[threading.Condition] = getattr(self, "report_cond", None)
        super()._init_state()
        self.report_cond = threading.Condition(self.lock)
        self.user_threads: dict[int, collections.deque[_UserThread]] = {}
        self.joined_threads: set[int] = set()
        self.op_wait_timeout = 0
        self.op_execute_timeout = 0
        #: stream handle -> subscribed thread id
        self.report_thread_of: dict[int, int] = {}
        #: thread id -> (device, handles of the streams it serves)
        self.report_streams_of: dict[int, tuple[int, set[int]]] = {}
        self.reports: dict[int, collections.deque[_Report]] = {}
        if old is not None:  # wake process_report callers of the dropped state
            try:
                with old:
                    old.notify_all()
            except RuntimeError:
                pass

    def after_fork_in_child(self) -> None:
        """A forked child has none of the parent's threads (or their subscriptions)."""
        super().after_fork_in_child()
        self.report_cond = threading.Condition(self.lock)
        self.user_threads = {}
        self.joined_threads = set()
        self.report_thread_of = {}
        self.report_streams_of = {}
        self.reports = {}

    def _cancel_stream(self, stream: Stream) -> None:
        """A destroyed stream is no longer subscribed (stream.cc, teardown)."""
        super()._cancel_stream(stream)
        self._unsubscribe(stream.handle)

    def live_handles(self) -> dict[str, list[int]]:
        kinds = super().live_handles()
        with self.lock:
            threads = sorted(tid for tid, entries in self.user_threads.items() for _ in entries)
        if threads:
            kinds["thread"] = threads
        return kinds

    # ================================================================= acl.util: threads

    def api_start_thread(self, fn: Any, args: Any) -> tuple[int]:
        if not callable(fn):
            raise TypeError("parameter must be callable")
        errors: list[str] = []

        def body() -> None:
            try:
                if args is None:
                    fn()
                else:
                    fn(args)
            except BaseException as exc:  # the native thread prints and keeps the error
                try:
                    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
                except Exception:
                    pass
                errors.append(f"exception={type(exc).__name__},msg=thread call failed")

        thread = threading.Thread(target=body, name="acl-util-thread", daemon=True)
        entry = _UserThread(thread, errors)
        with self.lock:
            thread.start()
            assert thread.ident is not None
            entry.tid = thread.ident
            self.user_threads.setdefault(entry.tid, collections.deque()).append(entry)
            self.joined_threads.discard(entry.tid)
        return (entry.tid,)  # pthread_create's result, 0, follows as ret

    def api_stop_thread(self, tid: int) -> int:
        with self.lock:
            entries = self.user_threads.get(tid)
            if not entries:
                if tid in self.joined_threads:
                    self.violate("double_free", f"thread 0x{tid:x} was already stopped")
                else:
                    self.violate(
                        "foreign_handle",
                        f"0x{tid:x} is not a thread acl.util.start_thread started",
                    )
                return ESRCH
            if tid == threading.get_ident():
                return EDEADLK
            entry = entries.popleft()
            if not entries:
                del self.user_threads[tid]
            self.joined_threads.add(tid)
        entry.thread.join()
        if entry.errors:
            raise RuntimeError("".join(error + ";" for error in entry.errors))
        return 0

    # ================================================================= acl.rt: reports

    def _subscribed_stream(self, handle: int) -> Stream:
        """The stream for subscribe/unsubscribe: 0 is the current context's default stream."""
        return self._stream(handle)

    def _unsubscribe(self, stream_handle: int) -> None:
        tid = self.report_thread_of.pop(stream_handle, None)
        if tid is None:
            return
        streams = self.report_streams_of[tid][1]
        streams.discard(stream_handle)
        if not streams:
            del self.report_streams_of[tid]
            self.report_cond.notify_all()

    def api_subscribe_report(self, tid: int, handle: int) -> tuple[()]:
        stream = self._subscribed_stream(handle)
        if stream.handle in self.report_thread_of:
            raise Fail(
                RT_STREAM_SUBSCRIBE,
                f"stream 0x{stream.handle:x} already has a report thread "
                f"(0x{self.report_thread_of[stream.handle]:x}); unsubscribe it first",
            )
        served = self.report_streams_of.get(tid)
        if served is not None and served[0] != stream.device:
            raise Fail(
                RT_THREAD_SUBSCRIBE,
                f"thread 0x{tid:x} already serves streams of device {served[0]}; "
                f"use another thread for device {stream.device}",
            )
        if served is None:
            served = self.report_streams_of[tid] = (stream.device, set())
        served[1].add(stream.handle)
        self.report_thread_of[stream.handle] = tid
        return ()

    def api_unsubscribe_report(self, tid: int, handle: int) -> tuple[()]:
        stream = self._subscribed_stream(handle)
        owner = self.report_thread_of.get(stream.handle)
        if owner is None:
            raise Fail(RT_STREAM_SUBSCRIBE, f"stream 0x{stream.handle:x} has no report thread")
        if owner != tid:
            raise Fail(
                RT_THREAD_SUBSCRIBE,
                f"stream 0x{stream.handle:x} is served by thread 0x{owner:x}, not 0x{tid:x}",
            )
        self._unsubscribe(stream.handle)
        return ()

    def api_launch_callback(
        self, fn: Any, user_data: Any, block_type: int, handle: int
    ) -> tuple[()]:
        if not callable(fn):
            raise TypeError("parameter must be callable")
        if block_type not in (CALLBACK_NO_BLOCK, CALLBACK_BLOCK):
            raise Fail(
                INVALID_PARAM,
                f"block type {block_type} is invalid: use 0 (ACL_CALLBACK_NO_BLOCK) or "
                "1 (ACL_CALLBACK_BLOCK)",
            )
        ctx = self._current()
        stream = self._stream(handle)
        if stream.context is not ctx:
            raise Fail(
                RT_STREAM_CONTEXT,
                f"stream 0x{stream.handle:x} does not belong to this thread's current context",
            )
        if stream.handle not in self.report_thread_of:
            raise Fail(
                RT_STREAM_NO_CB_REG,
                f"stream 0x{stream.handle:x} has no report thread: call "
                "acl.rt.subscribe_report(thread_id, stream) first",
            )
        report = _Report(fn, user_data, stream.handle, block_type == CALLBACK_BLOCK)
        generation = self.generation

        def post() -> None:
            if self.generation != generation:
                return
            tid = self.report_thread_of.get(report.stream)
            if tid is None:
                self.violate(
                    "callback_without_report_thread",
                    f"a host callback reached stream 0x{report.stream:x} after its report "
                    "thread was unsubscribed; the callback never runs. Synchronize the stream "
                    "before unsubscribe_report",
                    api="rt.launch_callback",
                )
                if report.done is not None:
                    report.done.done.set()
                return
            self.reports.setdefault(tid, collections.deque()).append(report)
            self.report_cond.notify_all()

        self._submit(stream, Task(post))
        if report.done is not None:  # later tasks wait until the callback has run
            self._submit(stream, Task(None, wait_for=report.done))
        return ()

    def api_process_report(self, timeout: int) -> tuple[()]:
        if timeout == 0 or timeout < -1:
            raise Fail(
                INVALID_PARAM,
                f"timeout {timeout} ms is invalid: use -1 (wait forever) or a value > 0",
            )
        tid = threading.get_ident()
        deadline = None if timeout == -1 else time.monotonic() + timeout / 1000.0
        with self.lock:
            generation = self.generation
            cond = self.report_cond
            while True:
                if self.generation != generation or tid not in self.report_streams_of:
                    raise Fail(
                        RT_THREAD_SUBSCRIBE,
                        f"thread 0x{tid:x} serves no stream: call "
                        "acl.rt.subscribe_report(thread_id, stream) first",
                    )
                queue = self.reports.get(tid)
                if queue:
                    batch = list(queue)
                    queue.clear()
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise Fail(RT_REPORT_TIMEOUT, f"no callback report within {timeout} ms")
                cond.wait(left)
        failure: Optional[BaseException] = None
        for report in batch:
            try:
                report.fn(report.user_data)
            except BaseException as exc:  # pyacl leaves it set: the call then fails
                if failure is None:
                    failure = exc
            finally:
                if report.done is not None:
                    report.done.done.set()
        if failure is not None:
            raise SystemError(
                "<built-in function process_report> returned a result with an exception set"
            ) from failure
        return ()

    # ================================================================= acl.rt: op timeouts
    # Also in pyACL's rt/rt_synchronize.cpp. They configure operator timeouts; the simulator
    # runs no operators, so the values are only kept.

    def api_set_op_wait_timeout(self, timeout: int) -> tuple[()]:
        self.op_wait_timeout = timeout
        return ()

    def api_set_op_execute_time_out(self, timeout: int) -> tuple[()]:
        self.op_execute_timeout = timeout
        return ()

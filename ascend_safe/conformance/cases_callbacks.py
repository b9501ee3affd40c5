"""Report threads and host callbacks (``acl.util.start_thread``/``stop_thread``,
``acl.rt.subscribe_report``/``launch_callback``/``process_report``/``unsubscribe_report``),
operator timeouts, ``acl.app_log`` and ``acl.data_type_size``.

pyACL: ``util/thread.cpp``, ``rt/rt_synchronize.cpp``, ``py_init_acl.cpp``. Runtime:
``src/acl/aclrt_c/runtime/callback.c``, ``src/acl/aclrt_impl/callback.cpp``,
``src/runtime/core/src/utils/subscribe.cc``.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from ._case import Probe, case, shape

THREAD = "python/pyACL util/thread.cpp: "
SYNC = "python/pyACL rt/rt_synchronize.cpp: "
CALLBACK = "src/acl/aclrt_impl/callback.cpp: "
SUBSCRIBE = "src/runtime/core/src/utils/subscribe.cc: "
ACL_CALLBACK_BLOCK = 1

# ---------------------------------------------------------------------------- threads


@case(
    "util.start_thread.shapes",
    "async",
    expect=["(int, ret=0)", "ret=0", [[7], []]],
    evidence=THREAD + "start_thread(fn, args) returns (pthread id 'K', pthread_create result); "
    "the thread calls fn(args), or fn() when args is None; stop_thread joins it (ret)",
)
def _thread_shapes(p: Probe) -> Any:
    util = p.acl.util
    calls: list[list[Any]] = []
    out: list[Any] = []
    for args in (7, None):
        started = util.start_thread(lambda *a: calls.append(list(a)), args)
        joined = [started[-1] != 0]
        p.defer(lambda t=started[0], j=joined: j[0] or util.stop_thread(t))
        stopped = util.stop_thread(started[0]) if started[-1] == 0 else started[-1]
        joined[0] = True
        if args is not None:
            out += [shape(started), shape(stopped)]
    out.append(calls)
    return out


@case(
    "util.stop_thread.callable_raised",
    "async",
    expect="RuntimeError",
    evidence=THREAD + "an exception raised by the thread's callable is kept and stop_thread "
    "raises RuntimeError('exception=<type>,msg=thread call failed;')",
)
def _thread_raised(p: Probe) -> Any:
    def fail() -> None:
        raise ValueError("raised on purpose by the conformance kit")

    tid = p.ok("util.start_thread", fail, None)
    try:
        result = p.acl.util.stop_thread(tid)
    except Exception as exc:
        return type(exc).__name__
    return f"returned {shape(result)}"


@case(
    "util.stop_thread.twice",
    "async",
    expect=[0, 3],
    isolated=True,
    evidence=THREAD + "stop_thread returns pthread_join's result: joining a joined thread is "
    "ESRCH (3) with glibc (undefined behaviour in POSIX, hence a child process)",
)
def _thread_twice(p: Probe) -> Any:
    tid = p.ok("util.start_thread", lambda: None, None)
    first = p.acl.util.stop_thread(tid)
    return [first, p.acl.util.stop_thread(tid)]


# ---------------------------------------------------------------------------- reports


def _report_thread(p: Probe) -> tuple[int, threading.Event]:
    """A thread serving reports with process_report(100) until the case ends (the samples'
    pattern: set the context, then loop); its id."""
    ctx = p.current_context()
    stop = threading.Event()

    def serve(context: int) -> None:
        p.acl.rt.set_context(context)
        while not stop.is_set():
            if p.acl.rt.process_report(100) not in (0, 507012):
                time.sleep(0.002)  # not subscribed (yet or any more)

    tid: int = p.ok("util.start_thread", serve, ctx)
    p.defer(p.acl.util.stop_thread, tid)
    p.defer(stop.set)
    return tid, stop


def _subscribe(p: Probe, tid: int, stream: int) -> Callable[[], int]:
    """Subscribe *tid* to *stream*; the unsubscribe call (run at the end if not before)."""
    p.ok("rt.subscribe_report", tid, stream)
    done = [False]

    def unsubscribe() -> int:
        if done[0]:
            return 0
        done[0] = True
        ret: int = p.acl.rt.unsubscribe_report(tid, stream)
        return ret

    p.defer(unsubscribe)
    return unsubscribe


@case(
    "rt.launch_callback.round_trip",
    "async",
    expect=[0, 0, 0, ["payload"], 0],
    evidence=SYNC + "subscribe_report, launch_callback, unsubscribe_report return ret; the "
    "report thread's process_report runs fn(user_data); a blocking callback finishes before "
    "the stream's later work",
)
def _round_trip(p: Probe) -> Any:
    rt = p.acl.rt
    stream = p.stream()
    tid, _ = _report_thread(p)
    seen: list[Any] = []
    subscribed = rt.subscribe_report(tid, stream)
    if subscribed != 0:
        return [subscribed]
    done = [False]
    p.defer(lambda: done[0] or rt.unsubscribe_report(tid, stream))
    launched = rt.launch_callback(seen.append, "payload", ACL_CALLBACK_BLOCK, stream)
    synced = rt.synchronize_stream(stream)
    unsubscribed = rt.unsubscribe_report(tid, stream)
    done[0] = True
    return [subscribed, launched, synced, seen, unsubscribed]


@case(
    "rt.launch_callback.no_report_thread",
    "error-codes",
    expect=107015,
    evidence="src/runtime/api/impl/api_impl.cc: CallbackLaunch on a stream no thread "
    "subscribed to -> ACL_ERROR_RT_STREAM_NO_CB_REG (107015)",
)
def _no_report_thread(p: Probe) -> Any:
    stream = p.stream()
    return p.acl.rt.launch_callback(lambda data: None, None, ACL_CALLBACK_BLOCK, stream)


@case(
    "rt.launch_callback.bad_block_type",
    "error-codes",
    expect=100000,
    evidence="src/acl/aclrt_c/runtime/callback.c: a block type other than "
    "ACL_CALLBACK_NO_BLOCK/ACL_CALLBACK_BLOCK -> ACL_ERROR_INVALID_PARAM",
)
def _bad_block(p: Probe) -> Any:
    stream = p.stream()
    tid, _ = _report_thread(p)
    _subscribe(p, tid, stream)
    return p.acl.rt.launch_callback(lambda data: None, None, 5, stream)


@case(
    "rt.process_report.invalid_timeout",
    "error-codes",
    expect=[100000, 100000],
    evidence=CALLBACK + "aclrtProcessReport: timeout 0 or below -1 -> ACL_ERROR_INVALID_PARAM",
)
def _report_timeout(p: Probe) -> Any:
    return [p.acl.rt.process_report(0), p.acl.rt.process_report(-2)]


@case(
    "rt.process_report.not_subscribed",
    "error-codes",
    expect=107012,
    evidence=SUBSCRIBE + "process_report in a thread that serves no stream -> "
    "ACL_ERROR_RT_THREAD_SUBSCRIBE (107012)",
)
def _report_unsubscribed(p: Probe) -> Any:
    return p.acl.rt.process_report(10)


@case(
    "rt.subscribe_report.errors",
    "error-codes",
    expect=[107011, 107012, 107011],
    evidence=SUBSCRIBE + "a second subscription of a stream -> ACL_ERROR_RT_STREAM_SUBSCRIBE "
    "(107011); unsubscribing another thread -> ACL_ERROR_RT_THREAD_SUBSCRIBE (107012); a stream "
    "with no subscription -> 107011",
)
def _subscribe_errors(p: Probe) -> Any:
    rt = p.acl.rt
    stream = p.stream()
    other = p.stream()
    tid, _ = _report_thread(p)
    _subscribe(p, tid, stream)
    return [
        rt.subscribe_report(tid, stream),
        rt.unsubscribe_report(tid + 1, stream),
        rt.unsubscribe_report(tid, other),
    ]


# ---------------------------------------------------------------------------- op timeouts


@case(
    "rt.set_op_timeouts.shapes",
    "return-shapes",
    expect=["ret=0", "ret=0"],
    evidence=SYNC + "set_op_wait_timeout and set_op_execute_time_out ('I', seconds; 0 is the "
    "default, no limit) return ret",
)
def _op_timeouts(p: Probe) -> Any:
    rt = p.acl.rt
    return [shape(rt.set_op_wait_timeout(0)), shape(rt.set_op_execute_time_out(0))]


# ---------------------------------------------------------------------------- app_log, sizes


@case(
    "app_log.shape",
    "return-shapes",
    expect=["None", "None", "None"],
    phase="bare",
    evidence="python/pyACL py_init_acl.cpp: app_log(level 'i', message 's') returns None, for "
    "every level (an unknown one is dropped by the log) and before acl.init",
)
def _app_log(p: Probe) -> Any:
    return [
        shape(p.acl.app_log(1, "ascend_safe conformance: app_log probe"), bare=True),
        shape(p.acl.app_log(0, "%s %d %n: no format expansion"), bare=True),
        shape(p.acl.app_log(9, "unknown level"), bare=True),
    ]


#: (aclDataType, size): include/external/acl/acl_base_rt.h values; sizes from
#: src/acl/aclrt_impl/data_buffer.cpp (aclDataTypeSizeImpl; unknown values take the default 8).
DATA_TYPE_SIZES = (
    (-1, 0),
    (0, 4),
    (1, 2),
    (2, 1),
    (3, 4),
    (4, 1),
    (5, 8),
    (6, 2),
    (7, 2),
    (8, 4),
    (9, 8),
    (10, 8),
    (11, 8),
    (12, 1),
    (13, 0),
    (17, 16),
    (27, 2),
)


@case(
    "data_type_size.values",
    "return-shapes",
    expect=[["int", size] for _, size in DATA_TYPE_SIZES],
    phase="bare",
    evidence="python/pyACL py_init_acl.cpp: data_type_size('i') returns the bare size ('k'); "
    "src/acl/aclrt_impl/data_buffer.cpp aclDataTypeSizeImpl: UNDEFINED and STRING 0, "
    "COMPLEX128 16, unknown values 8",
)
def _type_sizes(p: Probe) -> Any:
    out = []
    for dtype, _ in DATA_TYPE_SIZES:
        size = p.acl.data_type_size(dtype)
        out.append([shape(size, bare=True), size])
    return out

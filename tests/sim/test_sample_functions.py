"""Functions the official samples call beyond the core runtime: their return shapes, argument
parsing and error codes, as pyACL's source and the runtime's give them.

``acl.app_log``, ``acl.data_type_size``, ``acl.util.start_thread``/``stop_thread``,
``acl.rt.subscribe_report``/``unsubscribe_report``/``launch_callback``/``process_report``,
``acl.rt.set_op_wait_timeout``/``set_op_execute_time_out``.
"""

from __future__ import annotations

import logging
import threading
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest

from ascend_safe import sim

LOGGER = "ascend_safe.sim.app_log"


def kinds() -> list[str]:
    return [v.kind for v in sim.violations()]


# ================================================================= acl.app_log


def test_app_log_returns_none_and_maps_levels(
    acl: types.ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    for level in (0, 1, 2, 3):
        assert acl.app_log(level, f"level {level}") is None
    assert acl.app_log(4, "dropped") is None  # outside aclLogLevel: the runtime drops it
    assert acl.app_log(-1, "dropped") is None
    records = [r for r in caplog.records if r.name == LOGGER]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.DEBUG, "level 0"),
        (logging.INFO, "level 1"),
        (logging.WARNING, "level 2"),
        (logging.ERROR, "level 3"),
    ]
    assert not sim.initialized()  # no acl.init needed


def test_app_log_keeps_percent_signs_and_truncates(
    acl: types.ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    acl.app_log(3, "100% %s %d")
    acl.app_log(3, "x" * 5000)
    first, second = (r.getMessage() for r in caplog.records if r.name == LOGGER)
    assert first == "100% %s %d"
    assert second == "x" * 1023  # the runtime's 1024-byte record buffer


def test_app_log_prints_nothing_by_default(
    acl: types.ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    acl.app_log(3, "an error for the device log")
    out, err = capsys.readouterr()
    assert out == "" and err == ""


@pytest.mark.parametrize(
    "args",
    [
        (),
        (3,),
        ("3", "m"),
        (3, None),
        (3, b"m"),
        (3.0, "m"),
        (3, "m", 1),
        (3, "a\0b"),
        (3, "\ud800"),
        (1 << 31, "m"),
    ],
)
def test_app_log_parse_errors(acl: types.ModuleType, args: tuple[Any, ...]) -> None:
    with pytest.raises(TypeError, match=r"^acl\.app_log args parse failed$"):
        acl.app_log(*args)


# ================================================================= acl.data_type_size


@pytest.mark.parametrize(
    ("data_type", "size"),
    [(0, 4), (1, 2), (2, 1), (3, 4), (4, 1), (6, 2), (9, 8), (11, 8), (12, 1), (13, 0), (-1, 0),
     (17, 16), (27, 2), (29, 1), (33, 4), (40, 8), (99, 8)],
)
def test_data_type_size(acl: types.ModuleType, data_type: int, size: int) -> None:
    assert acl.data_type_size(data_type) == size


def test_data_type_size_parse_errors(acl: types.ModuleType) -> None:
    for args in ((), ("0",), (0.0,), (0, 1), (1 << 31,)):
        with pytest.raises(TypeError, match=r"^acl\.data_type_size args parse failed$"):
            acl.data_type_size(*args)


# ================================================================= acl.util threads


def test_start_thread_runs_callable_with_its_argument(acl: types.ModuleType) -> None:
    seen: list[Any] = []
    done = threading.Event()

    def entry(args: Any) -> None:
        seen.append((args, threading.get_ident()))
        done.set()

    payload = ["ctx", 50]
    tid, ret = acl.util.start_thread(entry, payload)
    assert ret == 0 and isinstance(tid, int) and tid > 0
    assert done.wait(5)
    assert seen == [(payload, tid)]  # the id is the thread's own pthread id
    assert seen[0][0] is payload
    assert sim.live_handles() == {"thread": [tid]}  # not joined yet
    assert acl.util.stop_thread(tid) == 0
    assert sim.live_handles() == {}
    assert sim.violations() == []


def test_start_thread_with_none_calls_without_arguments(acl: types.ModuleType) -> None:
    calls: list[int] = []
    tid, ret = acl.util.start_thread(lambda: calls.append(1), None)
    assert ret == 0
    assert acl.util.stop_thread(tid) == 0
    assert calls == [1]


def test_stop_thread_waits_for_the_thread(acl: types.ModuleType) -> None:
    release = threading.Event()
    finished: list[bool] = []

    def entry(_: Any) -> None:
        release.wait(5)
        finished.append(True)

    tid, _ = acl.util.start_thread(entry, [])
    threading.Timer(0.05, release.set).start()
    assert acl.util.stop_thread(tid) == 0
    assert finished == [True]


def test_stop_thread_reports_the_thread_exception(
    acl: types.ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    def entry(_: Any) -> None:
        raise ValueError("bad frame")

    tid, ret = acl.util.start_thread(entry, [])
    assert ret == 0
    with pytest.raises(RuntimeError) as info:
        acl.util.stop_thread(tid)
    assert str(info.value) == "exception=ValueError,msg=thread call failed;"
    assert "ValueError: bad frame" in capsys.readouterr().err  # printed like PyErr_Display
    assert sim.live_handles() == {}


def test_stop_thread_of_unknown_or_stopped_thread(acl: types.ModuleType) -> None:
    assert acl.util.stop_thread(12345) == 3  # ESRCH
    assert kinds() == ["foreign_handle"]
    tid, _ = acl.util.start_thread(lambda _: None, [])
    assert acl.util.stop_thread(tid) == 0
    assert acl.util.stop_thread(tid) == 3
    assert kinds() == ["foreign_handle", "double_free"]


def test_stop_thread_from_the_thread_itself(acl: types.ModuleType) -> None:
    answers: list[int] = []
    started = threading.Event()
    box: dict[str, int] = {}

    def entry(_: Any) -> None:
        started.wait(5)
        answers.append(acl.util.stop_thread(box["tid"]))

    box["tid"], _ = acl.util.start_thread(entry, [])
    started.set()
    for _ in range(500):
        if answers:
            break
        time.sleep(0.01)
    assert answers == [35]  # EDEADLK, and the thread can still be joined
    assert acl.util.stop_thread(box["tid"]) == 0


def test_thread_parse_errors(acl: types.ModuleType) -> None:
    with pytest.raises(TypeError, match=r"^parameter must be callable$"):
        acl.util.start_thread(42, [])
    for args in ((), (print,), (print, [], 1)):  # pyACL lets CPython's own message through
        expected = rf"^function takes exactly 2 arguments \({len(args)} given\)$"
        with pytest.raises(TypeError, match=expected):
            acl.util.start_thread(*args)
    for args in ((), ("1",), (1.0,), (None,), (1, 2)):
        with pytest.raises(TypeError, match=r"^acl\.util\.stop_thread args parse failed$"):
            acl.util.stop_thread(*args)
    assert sim.live_handles() == {}


def test_which_new_functions_can_be_faulted(acl: types.ModuleType) -> None:
    for api in ("util.start_thread", "util.stop_thread", "app_log", "data_type_size"):
        with pytest.raises(ValueError, match="has no return code to fault"):
            sim.inject_fault(api, 1)
    sim.inject_fault("rt.process_report", 507899)
    sim.inject_fault("rt.launch_callback", 107015)
    assert acl.rt.process_report(10) == 507899
    assert acl.rt.launch_callback(print, None, 1, 0) == 107015


# ================================================================= report threads and callbacks


class ReportThread:
    """A report thread serving *stream*: process_report(timeout) until stopped."""

    def __init__(self, acl: types.ModuleType, context: int, timeout: int = 20) -> None:
        self.acl = acl
        self.context = context
        self.timeout = timeout
        self.running = True
        self.codes: list[int] = []
        self.tid, ret = acl.util.start_thread(self._loop, None)
        assert ret == 0

    def _loop(self) -> None:
        self.acl.rt.set_context(self.context)
        while self.running:
            self.codes.append(self.acl.rt.process_report(self.timeout))

    def stop(self) -> None:
        self.running = False
        assert self.acl.util.stop_thread(self.tid) == 0


@pytest.fixture
def served(device: types.ModuleType) -> Iterator[tuple[types.ModuleType, int, ReportThread]]:
    acl = device
    context, _ = acl.rt.get_context()
    stream, ret = acl.rt.create_stream()
    assert ret == 0
    reporter = ReportThread(acl, context)
    assert acl.rt.subscribe_report(reporter.tid, stream) == 0
    yield acl, stream, reporter
    acl.rt.unsubscribe_report(reporter.tid, stream)
    reporter.stop()
    acl.rt.destroy_stream(stream)


def test_blocking_callback_runs_on_report_thread_before_later_work(
    served: tuple[types.ModuleType, int, ReportThread],
) -> None:
    acl, stream, reporter = served
    order: list[str] = []

    def callback(data: Any) -> None:
        time.sleep(0.05)
        order.append(f"callback {data} on {threading.get_ident() == reporter.tid}")

    event, _ = acl.rt.create_event()
    assert acl.rt.launch_callback(callback, "a", 1, stream) == 0
    assert acl.rt.record_event(event, stream) == 0
    assert acl.rt.synchronize_event(event) == 0
    order.append("event")
    assert order == ["callback a on True", "event"]
    assert acl.rt.destroy_event(event) == 0
    assert 0 in reporter.codes


def test_non_blocking_callback_does_not_hold_the_stream(
    served: tuple[types.ModuleType, int, ReportThread],
) -> None:
    acl, stream, _ = served
    gate = threading.Event()
    ran = threading.Event()

    def callback(_: Any) -> None:
        gate.wait(5)
        ran.set()

    assert acl.rt.launch_callback(callback, None, 0, stream) == 0
    assert acl.rt.synchronize_stream_with_timeout(stream, 2000) == 0  # done before the callback
    assert not ran.is_set()
    gate.set()
    assert ran.wait(5)


def test_blocked_stream_waits_for_process_report(device: types.ModuleType) -> None:
    acl = device
    stream, _ = acl.rt.create_stream()
    box: dict[str, Any] = {}
    ready = threading.Event()
    go = threading.Event()

    def entry() -> None:
        box["tid"] = threading.get_ident()
        ready.set()
        go.wait(5)
        box["ret"] = acl.rt.process_report(2000)

    tid, _ = acl.util.start_thread(entry, None)
    assert ready.wait(5)
    assert acl.rt.subscribe_report(tid, stream) == 0
    calls: list[Any] = []
    assert acl.rt.launch_callback(calls.append, 7, 1, stream) == 0
    # nobody processes the report yet: the stream cannot finish
    assert acl.rt.synchronize_stream_with_timeout(stream, 100) == 507046
    status, ret = acl.rt.stream_query(stream)
    assert (status, ret) == (1, 0)
    go.set()
    assert acl.rt.synchronize_stream_with_timeout(stream, 5000) == 0
    assert calls == [7] and box["ret"] == 0
    assert acl.util.stop_thread(tid) == 0
    assert acl.rt.unsubscribe_report(tid, stream) == 0
    assert acl.rt.destroy_stream(stream) == 0


def test_process_report_codes(device: types.ModuleType) -> None:
    acl = device
    assert acl.rt.process_report(0) == 100000  # 0 and < -1 are refused by the acl layer
    assert acl.rt.process_report(-2) == 100000
    assert acl.rt.process_report(10) == 107012  # this thread serves no stream
    stream, _ = acl.rt.create_stream()
    me = threading.get_ident()
    assert acl.rt.subscribe_report(me, stream) == 0
    started = time.monotonic()
    assert acl.rt.process_report(30) == 507012  # nothing to process in time
    assert time.monotonic() - started >= 0.025
    assert acl.rt.unsubscribe_report(me, stream) == 0
    assert acl.rt.destroy_stream(stream) == 0


def test_callback_exception_surfaces_from_process_report(device: types.ModuleType) -> None:
    acl = device
    stream, _ = acl.rt.create_stream()
    me = threading.get_ident()
    assert acl.rt.subscribe_report(me, stream) == 0

    def callback(_: Any) -> None:
        raise KeyError("boom")

    assert acl.rt.launch_callback(callback, None, 1, stream) == 0
    with pytest.raises(SystemError) as info:
        acl.rt.process_report(2000)
    assert isinstance(info.value.__cause__, KeyError)
    assert acl.rt.synchronize_stream_with_timeout(stream, 2000) == 0  # the stream went on
    assert acl.rt.unsubscribe_report(me, stream) == 0
    assert acl.rt.destroy_stream(stream) == 0


def test_subscribe_codes(device: types.ModuleType) -> None:
    acl = device
    stream, _ = acl.rt.create_stream()
    assert acl.rt.subscribe_report(111, stream) == 0
    assert acl.rt.subscribe_report(111, stream) == 107011  # the stream already has a thread
    assert acl.rt.subscribe_report(222, stream) == 107011
    assert acl.rt.unsubscribe_report(222, stream) == 107012  # served by another thread
    assert acl.rt.subscribe_report(111, 0) == 0  # 0: the current context's default stream
    assert acl.rt.unsubscribe_report(111, 0) == 0
    assert acl.rt.unsubscribe_report(111, 0) == 107011  # not subscribed
    # one thread serves one device
    assert acl.rt.set_device(1) == 0
    other, _ = acl.rt.create_stream()
    assert acl.rt.subscribe_report(111, other) == 107012
    assert acl.rt.subscribe_report(333, other) == 0
    assert acl.rt.unsubscribe_report(333, other) == 0
    assert acl.rt.destroy_stream(other) == 0
    assert acl.rt.reset_device(1) == 0
    assert acl.rt.set_device(0) == 0  # back to device 0's context
    assert acl.rt.reset_device(0) == 0
    assert acl.rt.unsubscribe_report(111, stream) == 0
    assert acl.rt.destroy_stream(stream) == 0
    assert acl.rt.subscribe_report(111, stream) == 107017  # destroyed stream
    assert kinds() == ["stale_handle"]


def test_destroying_a_stream_drops_its_subscription(device: types.ModuleType) -> None:
    acl = device
    stream, _ = acl.rt.create_stream()
    me = threading.get_ident()
    assert acl.rt.subscribe_report(me, stream) == 0
    assert acl.rt.destroy_stream(stream) == 0
    assert acl.rt.process_report(10) == 107012
    assert sim.violations() == []


def test_launch_callback_codes(device: types.ModuleType) -> None:
    acl = device
    stream, _ = acl.rt.create_stream()
    with pytest.raises(TypeError, match=r"^parameter must be callable$"):
        acl.rt.launch_callback(None, None, 1, stream)
    assert acl.rt.launch_callback(print, None, 1, stream) == 107015  # no report thread
    assert acl.rt.subscribe_report(5, stream) == 0
    assert acl.rt.launch_callback(print, None, 2, stream) == 100000  # block type 0 or 1
    assert acl.rt.launch_callback(print, None, -1, stream) == 100000
    # a stream of another context
    default, _ = acl.rt.get_context()
    context, _ = acl.rt.create_context(0)
    assert acl.rt.launch_callback(print, None, 0, stream) == 107003
    assert acl.rt.destroy_context(context) == 0
    assert acl.rt.set_context(default) == 0
    assert acl.rt.unsubscribe_report(5, stream) == 0
    assert acl.rt.destroy_stream(stream) == 0


def test_report_calls_need_a_context_not_init(acl: types.ModuleType) -> None:
    # the runtime has no acl.init check on these: without a device there is no context
    assert acl.rt.subscribe_report(1, 0) == 107002
    assert acl.rt.unsubscribe_report(1, 0) == 107002
    assert acl.rt.launch_callback(print, None, 1, 0) == 107002
    assert acl.rt.process_report(10) == 107012


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("subscribe_report", ()),
        ("subscribe_report", (1,)),
        ("subscribe_report", ("1", 0)),
        ("subscribe_report", (1, None)),
        ("unsubscribe_report", (1.0, 0)),
        ("launch_callback", (print, None, 1)),
        ("launch_callback", (print, None, "1", 0)),
        ("launch_callback", (print, None, 1 << 31, 0)),
        ("launch_callback", (print, None, 1, None)),
        ("process_report", ()),
        ("process_report", (None,)),
        ("process_report", (1 << 31,)),
        ("set_op_wait_timeout", ()),
        ("set_op_wait_timeout", ("1",)),
        ("set_op_execute_time_out", (1.5,)),
    ],
)
def test_rt_parse_errors(acl: types.ModuleType, name: str, args: tuple[Any, ...]) -> None:
    with pytest.raises(TypeError, match=rf"^acl\.rt\.{name} args parse failed$"):
        getattr(acl.rt, name)(*args)


def test_callback_reaching_an_unsubscribed_stream_is_recorded(device: types.ModuleType) -> None:
    acl = device
    stream, _ = acl.rt.create_stream()
    calls: list[Any] = []
    assert acl.rt.subscribe_report(77, stream) == 0
    with sim.hold_streams():
        assert acl.rt.launch_callback(calls.append, 1, 1, stream) == 0
        assert acl.rt.unsubscribe_report(77, stream) == 0
    assert acl.rt.synchronize_stream_with_timeout(stream, 5000) == 0  # not stuck
    assert calls == []
    assert kinds() == ["callback_without_report_thread"]
    assert acl.rt.destroy_stream(stream) == 0


def test_reset_wakes_a_waiting_process_report(device: types.ModuleType) -> None:
    acl = device
    stream, _ = acl.rt.create_stream()
    result: list[int] = []

    def entry() -> None:
        result.append(acl.rt.process_report(-1))

    tid, _ = acl.util.start_thread(entry, None)
    assert acl.rt.subscribe_report(tid, stream) == 0
    time.sleep(0.05)
    sim.reset()
    assert acl.util.stop_thread(tid) == 3  # the reset forgot the thread ...
    for _ in range(500):
        if result:
            break
        time.sleep(0.01)
    assert result == [107012]  # ... and woke it


# ================================================================= op timeouts


def test_op_timeouts(acl: types.ModuleType) -> None:
    assert acl.rt.set_op_wait_timeout(5) == 0  # no init needed
    assert acl.rt.set_op_execute_time_out(0) == 0
    state = sim._state_for_tests()
    assert state is not None
    assert state.op_wait_timeout == 5 and state.op_execute_timeout == 0
    assert acl.rt.set_op_wait_timeout(-1) == 0  # "I" masks to 32 bits, no range check
    assert state.op_wait_timeout == (1 << 32) - 1
    assert not hasattr(acl.rt, "set_op_execute_timeout")  # pyACL's name has "time_out"


def test_pure_functions_work_in_a_forked_child(acl: types.ModuleType) -> None:
    import os

    assert acl.init() == 0
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            ok = acl.data_type_size(0) == 4 and acl.app_log(3, "child") is None
            ok = ok and acl.rt.subscribe_report(1, 0) == 507899
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"1"
    assert acl.finalize() == 0

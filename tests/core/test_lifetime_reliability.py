"""Lifetime guarantees under threads, interrupts and finalizers (one test per failure mode).

Each test reproduces a way the guarantees used to break (a race, an interrupt at a bad point,
a finalizer run at a bad time) deterministically, and asserts on the simulator's ground truth.
"""

from __future__ import annotations

import gc
import signal
import threading
import time
import warnings
from typing import Any, Callable

import pytest

import ascend_safe as asf
from ascend_safe import _backend, _interrupts, context

SIZE = 4096


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)


class _Thread(threading.Thread):
    """A thread that keeps what its function returned or raised."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:
            self.error = exc

    def finish(self, timeout: float = 10.0) -> None:
        self.join(timeout)
        assert not self.is_alive(), "the thread hung"


def _slow_make_current_in(thread_name: str, monkeypatch: pytest.MonkeyPatch, delay: float):
    """Make ``make_current`` pause in one thread: a use there is caught between checking its
    handle and calling pyacl, the window a close in another thread used to slip into."""
    real = context.ContextOwner.make_current
    entered = threading.Event()

    def make_current(self: context.ContextOwner) -> None:
        real(self)
        if threading.current_thread().name == thread_name and not entered.is_set():
            entered.set()
            time.sleep(delay)

    monkeypatch.setattr(context.ContextOwner, "make_current", make_current)
    return entered


# -- device-wide and stream synchronizes ------------------------------------------------------


def test_device_synchronize_retires_only_work_submitted_before_it(sim):
    sim.configure(async_delay=0.03)
    with asf.Device(0) as dev, dev.stream() as s0, dev.stream() as s1:
        early, late = dev.malloc(SIZE), dev.malloc(SIZE)
        out = bytearray(SIZE)
        with sim.hold_streams():
            early.fill(1, stream=s0)  # what the device synchronize waits for
            syncer = _Thread(dev.synchronize)
            syncer.start()
            _wait_until(lambda: sim.call_counts().get("rt.synchronize_device", 0) > 0,
                        "the device synchronize")
            for _ in range(5):  # queued after the device synchronize began, and slower
                late.fill(9, stream=s1)
            late.copy_to(out, stream=s1)
        syncer.finish()
        assert syncer.error is None
        s1.synchronize()
        assert bytes(out) == b"\x09" * SIZE  # not the staging buffer's bytes
        late.close()  # must wait for s1, not free under its queued copy
        early.close()
    assert sim.violations() == []


@pytest.mark.parametrize("other", ["synchronize", "query"])
def test_stream_synchronize_waits_for_deliveries_another_thread_runs(sim, monkeypatch, other):
    from ascend_safe import _copy

    real_ctypes = _copy.ctypes
    delivering = threading.Event()

    class _SlowDelivery:
        """ctypes, with the host delivery of a download slowed down in one thread."""

        def __getattr__(self, name: str) -> Any:
            return getattr(real_ctypes, name)

        @staticmethod
        def memmove(dst: Any, src: Any, count: int) -> Any:
            if threading.current_thread().name == "other":
                delivering.set()
                time.sleep(0.2)
            return real_ctypes.memmove(dst, src, count)

    with asf.Device(0) as dev, dev.stream() as s, dev.malloc(SIZE, fill=5) as mem:
        out = bytearray(SIZE)
        mem.copy_to(out, stream=s)
        monkeypatch.setattr(_copy, "ctypes", _SlowDelivery())

        def retire() -> None:
            if other == "synchronize":
                s.synchronize()
            else:
                while not s.query():
                    time.sleep(0.001)

        thread = _Thread(retire)
        thread.name = "other"
        thread.start()
        assert delivering.wait(5)
        s.synchronize()
        assert bytes(out) == b"\x05" * SIZE  # the delivery ran before this returned
        thread.finish()
        assert thread.error is None


def test_event_synchronize_delivers_while_another_thread_closes_the_stream(sim, monkeypatch):
    with asf.Device(0) as dev, dev.malloc(SIZE, fill=8) as mem, dev.event() as ev:
        s = dev.stream()
        out = bytearray(SIZE)
        mem.copy_to(out, stream=s)
        ev.record(s)
        entered = _slow_make_current_in("closer", monkeypatch, 0.3)
        closer = _Thread(s.close)
        closer.name = "closer"
        closer.start()
        assert entered.wait(5)  # the stream is closing; its drain has not run yet
        ev.synchronize()
        assert bytes(out) == b"\x08" * SIZE
        closer.finish()
        assert closer.error is None and s.closed


# -- close racing a use in another thread -----------------------------------------------------


def test_closing_a_stream_while_another_thread_synchronizes_it(sim, monkeypatch):
    with asf.Device(0) as dev:
        s = dev.stream()
        mem = dev.malloc(SIZE)
        mem.fill(3, stream=s)
        entered = _slow_make_current_in("user", monkeypatch, 0.2)
        user = _Thread(s.synchronize)
        user.name = "user"
        user.start()
        assert entered.wait(5)
        s.close()
        user.finish()
        assert user.error is None or isinstance(user.error, asf.ResourceClosedError), user.error
        assert s.closed
        mem.close()
    assert sim.violations() == []


def test_freeing_memory_while_another_thread_queues_a_copy_on_it(sim, monkeypatch):
    with asf.Device(0) as dev, dev.stream() as s:
        mem = dev.malloc(SIZE)
        entered = _slow_make_current_in("user", monkeypatch, 0.2)
        user = _Thread(lambda: mem.copy_from(b"\x07" * SIZE, stream=s))
        user.name = "user"
        user.start()
        assert entered.wait(5)
        mem.close()
        user.finish()
        assert user.error is None or isinstance(user.error, asf.ResourceClosedError), user.error
        s.synchronize()
    assert sim.violations() == []  # no free under queued work, no freed pointer to memcpy


def test_closing_a_device_while_another_thread_uses_its_children(sim, monkeypatch):
    dev = asf.Device(0)
    s = dev.stream()
    ev = dev.event()
    mem = dev.malloc(SIZE)
    mem.fill(2, stream=s)
    entered = _slow_make_current_in("user", monkeypatch, 0.2)

    def use() -> None:
        ev.record(s)
        ev.synchronize()

    user = _Thread(use)
    user.name = "user"
    user.start()
    assert entered.wait(5)
    dev.close()
    user.finish()
    assert user.error is None or isinstance(user.error, asf.ResourceClosedError), user.error
    assert s.closed and ev.closed and mem.closed
    assert sim.live_handles() == {}
    assert sim.violations() == []


# -- interrupts -------------------------------------------------------------------------------


class _Interrupt(Exception):
    pass


def _interrupt_after(api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deliver a signal whose handler raises KeyboardInterrupt right after *api* returns."""
    real = _backend.call

    def call(name: str, *args: Any, resource: object = None) -> Any:
        out = real(name, *args, resource=resource)
        if name == api:
            signal.raise_signal(signal.SIGUSR1)
        return out

    monkeypatch.setattr(_backend, "call", call)


@pytest.fixture
def interrupting_signal() -> Any:
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGUSR1, handler)
    yield
    signal.signal(signal.SIGUSR1, old)


@pytest.mark.parametrize(
    ("kind", "api"),
    [
        ("event", "rt.destroy_event"),
        ("stream", "rt.destroy_stream"),
        ("memory", "rt.free"),
        ("context", "rt.destroy_context"),
        ("device", "rt.reset_device"),
    ],
)
def test_an_interrupt_after_the_release_leaves_the_object_closed(
    sim, monkeypatch, interrupting_signal, kind, api
):
    dev = asf.Device(0)
    obj = {
        "event": dev.event,
        "stream": dev.stream,
        "memory": lambda: dev.malloc(64),
        "context": dev.context,
        "device": lambda: dev,
    }[kind]()
    _interrupt_after(api, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        obj.close()
    monkeypatch.undo()
    assert obj.closed
    with pytest.raises(asf.ResourceClosedError):
        obj.handle  # noqa: B018
    obj.close()  # nothing left to release: no second destroy
    dev.close()
    assert sim.live_handles() == {}
    assert sim.violations() == []


def test_an_interrupt_inside_a_child_construction_keeps_the_parent_closeable(
    sim, monkeypatch, interrupting_signal
):
    dev = asf.Device(0)
    _interrupt_after("rt.create_event", monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        with pytest.raises(KeyboardInterrupt):
            dev.event()
        monkeypatch.undo()
        gc.collect()
        done = _Thread(dev.close)  # from another thread: must not block forever
        done.start()
        done.finish(5)
        assert done.error is None
    assert dev.closed
    assert sim.live_handles() == {}
    assert sim.violations() == []  # the event was destroyed before the device reset


def test_signals_are_deferred_to_the_end_of_a_critical_section():
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers run in the main thread")
    ran: list[int] = []

    def handler(signum: int, frame: object) -> None:
        ran.append(_interrupts.depth())

    old = signal.signal(signal.SIGUSR2, handler)
    try:
        assert signal.getsignal(signal.SIGUSR2) is handler  # the program sees its own handler
        with _interrupts.critical:
            with _interrupts.critical:
                signal.raise_signal(signal.SIGUSR2)
                assert ran == []
            assert ran == []
        assert ran == [0]  # ran once, after the outermost section
        signal.raise_signal(signal.SIGUSR2)
        assert ran == [0, 0]  # outside a section: at once
    finally:
        signal.signal(signal.SIGUSR2, old)


# -- finalizers, dropped objects, lost devices, RC mode, re-initialization -------------------


def test_dropped_busy_stream_is_released_after_its_work(sim):
    with asf.Device(0) as dev, dev.malloc(SIZE, fill=6) as mem:
        out = bytearray(SIZE)
        s = dev.stream()
        mem.copy_to(out, stream=s)
        with pytest.warns(ResourceWarning, match="unclosed <Stream"):
            del s
            gc.collect()
        kinds = [r.kind for r in asf.live_resources(internal=True)]
        assert "stream" not in kinds
        assert bytes(out) == b"\x06" * SIZE  # drained (and delivered) before its release
    assert sim.live_handles() == {}


@pytest.mark.parametrize("queued", [False, True])
def test_after_the_device_is_lost_cleanup_completes(sim, queued):
    dev = asf.Device(0)
    s = dev.stream()
    mem = dev.malloc(SIZE)
    if queued:  # work the library still lists as pending when the device goes
        with sim.hold_streams():
            mem.fill(1, stream=s)
            sim.hibernate()
    else:
        sim.hibernate()
    dev.close()  # once: not an error that repeats forever
    assert s.closed and mem.closed and dev.closed
    assert sim.live_handles() == {}
    kinds = {v.kind for v in sim.violations()}
    # with work pending, the library learns of the loss from the synchronize (207004); the
    # lost queue is gone, so nothing is freed under pending work
    expected = {"hibernate_with_active_device"}
    if queued:
        expected.add("use_after_device_lost")
    assert kinds == expected
    sim.clear_violations()
    with asf.Device(0) as again:  # the device can be opened again
        again.malloc(64).close()


@pytest.mark.parametrize("action", ["synchronize", "close"])
def test_a_finalizer_using_a_stream_during_its_submission_does_not_deadlock(
    sim, monkeypatch, action
):
    with asf.Device(0) as dev, dev.malloc(SIZE) as mem:
        s = dev.stream()

        class Owner:
            def __init__(self) -> None:
                self.me = self  # only the cycle collector frees it

            def __del__(self) -> None:
                getattr(s, action)()

        real = _backend.call

        def call(name: str, *args: Any, resource: object = None) -> Any:
            if name == "rt.memcpy_async":
                gc.collect()  # as an allocation inside the call could trigger it
            return real(name, *args, resource=resource)

        Owner()
        gc.disable()
        try:
            monkeypatch.setattr(_backend, "call", call)
            worker = _Thread(lambda: mem.copy_from(b"\x01" * SIZE, stream=s))
            worker.start()
            worker.finish(10)
        finally:
            gc.enable()
            monkeypatch.undo()
        assert worker.error is None or isinstance(worker.error, asf.ResourceClosedError)
        if action == "close":
            assert s.closed
        else:
            s.synchronize()
            assert mem.to_bytes() == b"\x01" * SIZE
            s.close()
    assert sim.violations() == []


@pytest.mark.parametrize("policy", ["native", "wait"])
def test_rc_close_does_not_wait_for_a_malloc_blocked_on_memory_it_frees(sim, policy):
    sim.configure(run_mode=0, memory_per_device=1 << 20, rc_malloc_timeout=20)
    dev = asf.Device(0)
    dev.set_oom_policy(policy, timeout=20)  # native: blocked in pyacl; wait: in admission
    first = dev.malloc(600_000)
    blocked = _Thread(lambda: dev.malloc(600_000))
    blocked.start()
    if policy == "native":
        _wait_until(lambda: sim.call_counts().get("rt.malloc", 0) >= 2, "the blocked malloc")
    time.sleep(0.2)
    start = time.monotonic()
    dev.close()
    assert time.monotonic() - start < 5  # not the malloc's 20 s timeout
    blocked.finish()
    assert blocked.error is None or isinstance(blocked.error, asf.ResourceClosedError)
    if blocked.error is None:
        assert blocked.result.closed  # opened in time, then closed with its device
    assert first.closed
    assert sim.live_handles() == {}
    assert [v.kind for v in sim.violations()] == []


def test_init_again_on_an_open_object_is_refused(sim):
    with asf.Device(0) as dev, dev.stream() as s:
        mem = dev.malloc(64, fill=4)
        ev = dev.event()
        before = sim.live_handles()
        for obj, args in ((mem, (dev, 128)), (ev, (dev,)), (s, (dev,)), (dev, (1,))):
            with pytest.raises(RuntimeError, match="already initialized"):
                obj.__init__(*args)
        assert sim.live_handles() == before
        assert dev.id == 0 and mem.size == 64 and mem.to_bytes() == b"\x04" * 64
        mem.close()
        with pytest.raises(RuntimeError, match="already initialized"):
            mem.__init__(dev, 64)  # a closed object stays closed
        ev.close()


def test_ctrl_c_ends_a_wait_for_a_device_slot(sim, monkeypatch, tmp_path, interrupting_signal):
    from ascend_safe import slots

    monkeypatch.setenv("ASCEND_SAFE_SLOT_DIR", str(tmp_path / "slots"))
    monkeypatch.setenv("ASCEND_SAFE_MAX_PROCS", "1")
    held = slots.acquire(0, 1)  # the device's only slot, held elsewhere
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        old = signal.signal(signal.SIGALRM, signal.getsignal(signal.SIGUSR1))
        start = time.monotonic()
        try:
            with pytest.raises(KeyboardInterrupt):
                asf.Device(0, slot_timeout=None)  # waits forever, unless interrupted
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
        assert time.monotonic() - start < 3
    finally:
        held.release()
    assert asf.live_resources() == []
    with asf.Device(0) as dev:  # nothing of the interrupted session is left behind
        dev.malloc(64).close()
    assert sim.live_handles() == {}

"""Thread stress and interrupt storm, checked against the simulator's ground truth.

Both are seeded and bounded (a few seconds each). ``ASCEND_SAFE_SOAK=1`` runs them much longer
(``ASCEND_SAFE_SOAK_SECONDS``, default 60 per test) with more rounds.
"""

from __future__ import annotations

import gc
import os
import random
import signal
import threading
import time
import warnings
import weakref
from types import FrameType
from typing import Any, Optional

import pytest

import ascend_safe as asf

SOAK = os.environ.get("ASCEND_SAFE_SOAK", "") not in ("", "0")
SECONDS = float(os.environ.get("ASCEND_SAFE_SOAK_SECONDS", "60")) if SOAK else 2.5
SEED = int(os.environ.get("ASCEND_SAFE_STRESS_SEED", "20261125"))
CHUNK = 1024
WORKERS = 28  # plus a device synchronizer, a querier, a stream closer and a memory closer


class _World:
    """What the threads share: one device session, streams and one memory; replaced when a
    closer thread closes them."""

    def __init__(self, device_id: int) -> None:
        self.lock = threading.Lock()
        self.device_id = device_id
        self.dev = asf.Device(device_id)
        self.streams = [self.dev.stream() for _ in range(4)]
        self.mem = self.dev.malloc(CHUNK * WORKERS)
        self.generation = 0

    def snapshot(self) -> tuple[asf.Device, list[asf.Stream], asf.DeviceMemory]:
        with self.lock:
            return self.dev, list(self.streams), self.mem

    def replace_stream(self, rng: random.Random) -> asf.Stream:
        with self.lock:
            i = rng.randrange(len(self.streams))
            old = self.streams[i]
            if not self.dev.closed:
                self.streams[i] = self.dev.stream()
        return old

    def replace_memory(self) -> asf.DeviceMemory:
        with self.lock:
            old = self.mem
            if not self.dev.closed:
                self.mem = self.dev.malloc(CHUNK * WORKERS)
        return old

    def replace_device(self) -> asf.Device:
        with self.lock:
            old = self.dev
            self.dev = asf.Device(self.device_id)
            self.streams = [self.dev.stream() for _ in range(4)]
            self.mem = self.dev.malloc(CHUNK * WORKERS)
            self.generation += 1
        return old


def _settle(*objs: asf.Device | asf.Stream | asf.DeviceMemory) -> None:
    """Wait for the closes other threads have begun on *objs* (a close drains first)."""
    for obj in objs:
        if obj.closed:
            obj.close()  # an object another thread is closing: returns once that is done


def test_thread_stress(sim):
    sim.configure(async_delay=0.0005)
    worlds = [_World(0), _World(1)]
    deadline = time.monotonic() + SECONDS
    stop = threading.Event()
    wrong: list[str] = []
    errors: list[BaseException] = []
    checked = [0]
    count_lock = threading.Lock()

    def guarded(fn: Any) -> Any:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # anything but the expected refusal is a failure
                errors.append(exc)
                stop.set()

        return run

    def worker(index: int) -> None:
        rng = random.Random(SEED + index)
        world = worlds[index % 2]
        region = index * CHUNK
        while not stop.is_set() and time.monotonic() < deadline:
            dev, streams, mem = world.snapshot()
            stream = rng.choice(streams)
            pattern = bytes([rng.randrange(256)]) * CHUNK
            out = bytearray(CHUNK)
            try:
                mem.copy_from(pattern, stream=stream, offset=region)
                mem.copy_to(out, stream=stream, offset=region, nbytes=CHUNK)
            except asf.ResourceClosedError:
                _settle(dev, stream, mem)  # what was queued is drained before the next round
                continue
            try:
                if index % 3:
                    stream.synchronize()
                else:  # through an event: the same guarantees for its deliveries
                    with dev.event() as ev:
                        ev.record(stream)
                        ev.synchronize()
            except asf.ResourceClosedError:  # (the event: its device is closing)
                _settle(dev, stream, mem)
            if bytes(out) != pattern:
                wrong.append(f"{dev!r} region {index}: got {out[:4]!r}.. want {pattern[:4]!r}..")
                stop.set()
            with count_lock:
                checked[0] += 1

    def device_syncer() -> None:
        rng = random.Random(SEED - 1)
        while not stop.is_set() and time.monotonic() < deadline:
            dev, _, _ = rng.choice(worlds).snapshot()
            try:
                dev.synchronize()
            except asf.ResourceClosedError:
                pass

    def querier() -> None:
        rng = random.Random(SEED - 2)
        while not stop.is_set() and time.monotonic() < deadline:
            _, streams, _ = rng.choice(worlds).snapshot()
            try:
                rng.choice(streams).query()
            except asf.ResourceClosedError:
                pass

    def stream_closer() -> None:
        rng = random.Random(SEED - 3)
        while not stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.005)
            world = rng.choice(worlds)
            try:
                world.replace_stream(rng).close()
            except asf.ResourceClosedError:
                pass

    def memory_closer() -> None:
        rng = random.Random(SEED - 4)
        rounds = 0
        while not stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)
            rounds += 1
            world = rng.choice(worlds)
            if rounds % 10 == 0:  # now and then the whole device session goes
                world.replace_device().close()
            else:
                try:
                    world.replace_memory().close()
                except asf.ResourceClosedError:
                    pass

    threads = [threading.Thread(target=guarded(lambda i=i: worker(i))) for i in range(WORKERS)]
    threads += [
        threading.Thread(target=guarded(fn))
        for fn in (device_syncer, querier, stream_closer, memory_closer)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(SECONDS + 60)
        assert not t.is_alive(), "a thread hung"
    assert not errors, errors[:3]
    assert not wrong, wrong[:5]
    assert checked[0] > WORKERS  # the workers got through
    for world in worlds:
        world.dev.close()
    assert asf.live_resources(internal=True) == []
    assert sim.live_handles() == {}
    assert sim.violations() == []


# -- interrupt storm --------------------------------------------------------------------------


_WEAKREF_FILE = weakref.__file__


class _Storm:
    """A SIGALRM handler raising KeyboardInterrupt while the storm body is on the stack (so
    the test's own bookkeeping is never hit, only the library and what it calls). Not inside
    a finalizer, a weak-reference callback (``weakref``'s own dictionaries) or a
    garbage-collector callback: Python itself ignores (prints) an exception raised there."""

    def __init__(self, body_codes: set[Any]) -> None:
        self.body_codes = body_codes
        self.raised = 0

    def __call__(self, signum: int, frame: Optional[FrameType]) -> None:
        ignored = {getattr(cb, "__code__", None) for cb in gc.callbacks}
        f = frame
        while f is not None:
            code = f.f_code
            if code.co_name == "__del__" or code in ignored or code.co_filename == _WEAKREF_FILE:
                return
            if f.f_code in self.body_codes:
                self.raised += 1
                raise KeyboardInterrupt
            f = f.f_back


def test_interrupt_storm(sim):
    if not hasattr(signal, "setitimer"):
        pytest.skip("needs setitimer")
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers run in the main thread")
    rng = random.Random(SEED)
    state: dict[str, Any] = {"dev": None, "pairs": [], "others": []}
    wrong: list[str] = []
    verified = [0]

    def step() -> None:
        dev = state["dev"]
        if dev is None or dev.closed:
            state["dev"] = asf.Device(0)
            state["pairs"], state["others"] = [], []
            return
        roll = rng.random()
        if roll < 0.25 or not state["pairs"]:
            state["pairs"].append((dev.malloc(CHUNK), dev.stream()))
        elif roll < 0.35:
            make = rng.choice([dev.event, dev.context, lambda: dev.malloc_host(64)])
            state["others"].append(make())
        elif roll < 0.75:
            mem, stream = rng.choice(state["pairs"])
            pattern = bytes([rng.randrange(256)]) * CHUNK
            out = bytearray(CHUNK)
            mem.copy_from(pattern, stream=stream)
            mem.copy_to(out, stream=stream)
            stream.synchronize()
            if bytes(out) != pattern:
                wrong.append(f"{mem!r}: got {out[:4]!r}.., want {pattern[:4]!r}..")
            verified[0] += 1
        elif roll < 0.9:
            pool = state["pairs"] if rng.random() < 0.6 else state["others"]
            if pool:
                item = pool.pop(rng.randrange(len(pool)))
                for obj in item if isinstance(item, tuple) else (item,):
                    obj.close()
        elif roll < 0.97:
            mem, stream = rng.choice(state["pairs"])
            if rng.random() < 0.5:
                dev.synchronize()
            else:
                mem.fill(rng.randrange(256), stream=stream)
        else:
            dev.close()

    storm = _Storm({step.__code__})
    old = signal.signal(signal.SIGALRM, storm)
    deadline = time.monotonic() + SECONDS
    steps = interrupted = 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)  # objects whose creation was hit
            while time.monotonic() < deadline:
                signal.setitimer(signal.ITIMER_REAL, rng.uniform(0.00005, 0.002))
                try:
                    step()
                except KeyboardInterrupt:
                    interrupted += 1
                except asf.ResourceClosedError:
                    pass  # a pair whose stream or memory an interrupted close already closed
                steps += 1
            signal.setitimer(signal.ITIMER_REAL, 0)
            for obj in [p for pair in state["pairs"] for p in pair] + state["others"]:
                obj.close()
            if state["dev"] is not None:
                state["dev"].close()
            gc.collect()
            for root in asf.live_resources():
                root.close()
            left = asf.live_resources(internal=True)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert storm.raised > 10 and interrupted > 10, (storm.raised, interrupted, steps)
    assert verified[0] > 0
    assert not wrong, wrong[:5]
    assert left == []
    assert sim.live_handles() == {}
    assert sim.violations() == []

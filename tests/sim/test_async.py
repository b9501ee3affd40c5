"""Streams and events: real asynchrony, ordering, both status polarities, elapsed time."""

from __future__ import annotations

import ctypes
import threading
import time
import types

from ascend_safe import sim


def _buffers(acl: types.ModuleType, size: int) -> tuple[int, int]:
    dev, ret = acl.rt.malloc(size, 0)
    assert ret == 0
    host, ret = acl.rt.malloc_host(size)
    assert ret == 0
    return dev, host


def test_async_copy_lands_only_after_synchronize(device: types.ModuleType) -> None:
    acl = device
    dev, host = _buffers(acl, 64)
    assert acl.rt.memset(dev, 64, 0xAB, 64) == 0
    stream, _ = acl.rt.create_stream()
    with sim.hold_streams():
        assert acl.rt.memcpy_async(host, 64, dev, 64, 2, stream) == 0
        time.sleep(0.05)
        assert ctypes.string_at(host, 4) == b"\xde\xad\xbe\xef"
        assert acl.rt.stream_query(stream) == (1, 0)
        assert acl.rt.synchronize_stream_with_timeout(stream, 20) == 507046
    assert acl.rt.synchronize_stream(stream) == 0
    assert acl.rt.stream_query(stream) == (0, 0)
    assert ctypes.string_at(host, 64) == b"\xab" * 64
    assert acl.rt.destroy_stream(stream) == 0
    assert acl.rt.free(dev) == 0 and acl.rt.free_host(host) == 0


def test_tasks_complete_in_order(device: types.ModuleType) -> None:
    sim.configure(async_delay=0.002)
    acl = device
    dev, host = _buffers(acl, 64)
    stream, _ = acl.rt.create_stream()
    for value in range(1, 11):
        assert acl.rt.memset_async(dev, 64, value, 64, stream) == 0
    assert acl.rt.memcpy_async(host, 64, dev, 64, 2, stream) == 0
    assert acl.rt.synchronize_stream(stream) == 0
    assert ctypes.string_at(host, 64) == bytes([10]) * 64
    assert acl.rt.destroy_stream(stream) == 0
    assert acl.rt.free(dev) == 0 and acl.rt.free_host(host) == 0


def test_synchronize_releases_other_threads(device: types.ModuleType) -> None:
    acl = device
    stream, _ = acl.rt.create_stream()
    ctx, _ = acl.rt.get_context()
    done: list[int] = []
    with sim.hold_streams():
        event, _ = acl.rt.create_event()
        assert acl.rt.record_event(event, stream) == 0
        waiter = threading.Thread(target=lambda: done.append(acl.rt.synchronize_event(event)))
        waiter.start()
        time.sleep(0.05)
        # another thread can still use the simulator while one waits
        worker_ok: list[int] = []

        def other() -> None:
            worker_ok.append(acl.rt.set_context(ctx))
            worker_ok.append(acl.rt.malloc(64, 0)[1])

        t = threading.Thread(target=other)
        t.start()
        t.join(5)
        assert worker_ok == [0, 0]
        assert done == []
    waiter.join(5)
    assert done == [0]
    sim.reset()


def test_event_polarities_and_elapsed_time(device: types.ModuleType) -> None:
    acl = device
    stream, _ = acl.rt.create_stream()
    start, _ = acl.rt.create_event()
    end, _ = acl.rt.create_event()
    # never recorded: complete in every polarity, but no timestamp
    assert acl.rt.query_event(start) == (0, 0)
    assert acl.rt.query_event_status(start) == (1, 0)
    assert acl.rt.query_event_wait_status(start) == (0, 0)
    assert acl.rt.event_elapsed_time(start, end) == (0.0, 507000)
    with sim.hold_streams():
        assert acl.rt.record_event(start, stream) == 0
        assert acl.rt.query_event(start) == (1, 0)
        assert acl.rt.query_event_status(start) == (0, 0)
        assert acl.rt.query_event_wait_status(start) == (1, 0)
        assert acl.rt.synchronize_event_with_timeout(start, 10) == 507047
    sim.configure(async_delay=0.02)
    assert acl.rt.record_event(end, stream) == 0
    assert acl.rt.synchronize_event(end) == 0
    assert acl.rt.query_event(start) == (0, 0)
    assert acl.rt.query_event_status(end) == (1, 0)
    ms, ret = acl.rt.event_elapsed_time(start, end)
    assert ret == 0 and ms >= 15.0
    for ev in (start, end):
        assert acl.rt.destroy_event(ev) == 0
    assert acl.rt.destroy_stream(stream) == 0


def test_stream_wait_event_orders_streams(device: types.ModuleType) -> None:
    acl = device
    dev, host = _buffers(acl, 64)
    first, _ = acl.rt.create_stream()
    second, _ = acl.rt.create_stream()
    event, _ = acl.rt.create_event()
    sim.configure(async_delay=0.03)
    assert acl.rt.memset_async(dev, 64, 0x5A, 64, first) == 0
    assert acl.rt.record_event(event, first) == 0
    assert acl.rt.stream_wait_event(second, event) == 0
    assert acl.rt.memcpy_async(host, 64, dev, 64, 2, second) == 0
    assert acl.rt.synchronize_stream(second) == 0
    assert ctypes.string_at(host, 64) == b"\x5a" * 64
    assert acl.rt.synchronize_stream(first) == 0
    assert acl.rt.destroy_event(event) == 0
    for s in (first, second):
        assert acl.rt.destroy_stream(s) == 0
    assert acl.rt.free(dev) == 0 and acl.rt.free_host(host) == 0


def test_event_flags_per_source(device: types.ModuleType) -> None:
    acl = device
    plain, _ = acl.rt.create_event()
    timing, _ = acl.rt.create_event_with_flag(0x8)
    sync, _ = acl.rt.create_event_with_flag(0x1)
    ex, _ = acl.rt.create_event_ex_with_flag(0x1)
    # api_error.cc: no wait task (no SYNC flag) -> 207000; query_event_wait_status has no check
    assert acl.rt.reset_event(timing, 0) == 207000
    assert acl.rt.stream_wait_event(0, timing) == 207000
    assert acl.rt.query_event_wait_status(timing) == (0, 0)
    # _ex events: reset_event, query_event and query_event_wait_status are not supported
    assert acl.rt.reset_event(ex, 0) == 207000
    assert acl.rt.query_event(ex) == (0, 207000)
    assert acl.rt.query_event_wait_status(ex) == (0, 207000)
    assert acl.rt.query_event_status(ex) == (1, 0)
    # flags: none of 0x3f, or beyond it, or MC2/EXTERNAL combined -> 107000
    for flag in (0, 0x40, 0x11, 0x21):
        assert acl.rt.create_event_with_flag(flag) == (0, 107000)
    for flag in (0, 0x10, 0x41, 0x80):
        assert acl.rt.create_event_ex_with_flag(flag) == (0, 107000)
    # create_event events work with reset_event (the docs forbid it: documented_restriction)
    assert acl.rt.reset_event(plain, 0) == 0
    assert [v.kind for v in sim.violations()] == ["documented_restriction"]
    sim.clear_violations()
    assert acl.rt.record_event(sync, 0) == 0
    assert acl.rt.synchronize_event(sync) == 0
    assert acl.rt.reset_event(sync, 0) == 0
    assert acl.rt.synchronize_stream(0) == 0
    assert acl.rt.event_elapsed_time(sync, sync) == (0.0, 507000)  # reset: unrecorded again
    for ev in (plain, timing, sync, ex):
        assert acl.rt.destroy_event(ev) == 0


def test_destroy_stream_waits_force_does_not(device: types.ModuleType) -> None:
    acl = device
    dev, host = _buffers(acl, 64)
    assert acl.rt.memset(dev, 64, 1, 64) == 0
    slow, _ = acl.rt.create_stream()
    sim.configure(async_delay=0.05)
    assert acl.rt.memcpy_async(host, 64, dev, 64, 2, slow) == 0
    assert acl.rt.destroy_stream(slow) == 0
    assert ctypes.string_at(host, 64) == b"\x01" * 64
    forced, _ = acl.rt.create_stream()
    assert acl.rt.memset(dev, 64, 2, 64) == 0
    assert acl.rt.memcpy_async(host, 64, dev, 64, 2, forced) == 0
    assert acl.rt.destroy_stream_force(forced) == 0
    time.sleep(0.1)
    assert ctypes.string_at(host, 64) == b"\x01" * 64  # dropped, never ran
    assert acl.rt.free(dev) == 0 and acl.rt.free_host(host) == 0
    assert sim.violations() == []


def test_synchronize_device_waits_for_all_streams(device: types.ModuleType) -> None:
    acl = device
    dev, host = _buffers(acl, 64)
    sim.configure(async_delay=0.02)
    streams = [acl.rt.create_stream()[0] for _ in range(3)]
    for i, s in enumerate(streams):
        assert acl.rt.memset_async(dev, 64, i + 1, 64, s) == 0
    assert acl.rt.synchronize_device_with_timeout(-5) == 107000
    assert acl.rt.synchronize_device() == 0
    assert all(acl.rt.stream_query(s) == (0, 0) for s in streams)
    for s in streams:
        assert acl.rt.destroy_stream(s) == 0
    assert acl.rt.free(dev) == 0 and acl.rt.free_host(host) == 0

"""The basic public API moves real data and leaves nothing behind."""

from __future__ import annotations

import numpy as np
import pytest

import ascend_safe as asf


def test_issue_example_round_trip(sim):
    payload = bytes(range(256)) * 16
    with asf.Device(0) as dev, asf.Stream(dev) as s, asf.Event(dev) as ev, asf.DeviceMemory(
        dev, 1 << 20
    ) as d, asf.HostMemory(dev, 1 << 20) as h:
        d.copy_from(payload, stream=s)
        ev.record(s)
        ev.synchronize()
        s.synchronize()
        assert d.to_bytes(len(payload)) == payload
        assert d.to_bytes()[len(payload) :] == bytes((1 << 20) - len(payload))
        h.copy_from(d, nbytes=len(payload))
        assert h.to_bytes(len(payload)) == payload
        buf = asf.DataBuffer(d)
        assert buf.size == d.size and buf.ptr == d.ptr
        assert sim.live_handles()["data_buffer"] == [buf.handle]
        buf.close()
        assert "data_buffer" not in sim.live_handles()
        assert not d.closed
    assert asf.live_resources() == []
    assert sim.live_handles() == {}


def test_backend_name_is_sim():
    assert asf.backend_name() == "sim"


def test_live_resources_lists_open_objects(sim):
    with asf.Device(0) as dev:
        mem = dev.malloc(64)
        stream = dev.stream()
        assert asf.live_resources() == [dev, mem, stream]
        assert "2 live resources" not in asf.leak_report()
        assert "3 live resources" in asf.leak_report()
    assert asf.live_resources() == []
    assert asf.leak_report() == "0 live resources"


def test_numpy_round_trip_async(sim):
    arr = np.arange(1000, dtype=np.float32)
    with asf.Device(0) as dev, dev.stream() as s, dev.malloc(arr.nbytes) as d:
        d.copy_from(arr, stream=s)
        out = np.zeros_like(arr)
        d.copy_to(out, stream=s)
        s.synchronize()
        np.testing.assert_array_equal(out, arr)
        np.testing.assert_array_equal(d.to_numpy(np.float32), arr)
        np.testing.assert_array_equal(
            d.to_numpy(np.float32, shape=(10, 100)), arr.reshape(10, 100)
        )


def test_non_contiguous_numpy_source_is_copied_in_order(sim):
    arr = np.arange(64, dtype=np.int32).reshape(8, 8).T
    with asf.Device(0) as dev, dev.malloc(arr.nbytes) as d:
        d.copy_from(arr)
        np.testing.assert_array_equal(d.to_numpy(np.int32, shape=(8, 8)), np.ascontiguousarray(arr))
        with pytest.raises(ValueError, match="C-contiguous"):
            d.copy_to(np.zeros((8, 8), dtype=np.int32).T)


def test_memory_to_memory_copies(sim):
    data = bytes(range(200))
    with asf.Device(0) as dev, dev.stream() as s:
        a, b, h = dev.malloc(256), dev.malloc(256), dev.malloc_host(256)
        a.copy_from(data)
        b.copy_from(a, stream=s)
        h.copy_from(b, stream=s)
        s.synchronize()
        assert h.to_bytes(200) == data
        dv = dev.dvpp_malloc(256)
        dv.copy_from(h)
        assert dv.to_bytes(200) == data


def test_offsets_and_partial_copies(sim):
    with asf.Device(0) as dev, dev.malloc(128) as d:
        d.copy_from(b"abcdef", offset=10)
        d.copy_from(b"XYZ", offset=20, src_offset=1, nbytes=2)
        assert d.to_bytes(6, offset=10) == b"abcdef"
        assert d.to_bytes(3, offset=20) == b"YZ\x00"
        out = bytearray(4)
        d.copy_to(out, offset=11, nbytes=4)
        assert out == b"bcde"


def test_fill_sync_and_async(sim):
    with asf.Device(0) as dev, dev.stream() as s, dev.malloc(100) as d:
        d.fill(0x5A)
        assert d.to_bytes() == b"\x5a" * 100
        d.fill(3, stream=s)
        assert d.to_bytes() == b"\x03" * 100  # to_bytes waits for the stream writing here


def test_event_timing_and_query(sim):
    sim.configure(async_delay=0.01)
    with asf.Device(0) as dev, dev.stream() as s, dev.malloc(4096) as d:
        start, end = dev.event(), dev.event()
        assert end.query()  # never recorded counts as done
        start.record(s)
        d.fill(1, stream=s)
        end.record(s)
        assert not end.query()
        end.synchronize()
        assert end.query()
        ms = start.elapsed_time(end)
        assert ms >= 5.0
        start.close()
        end.close()


def test_stream_wait_orders_two_streams(sim):
    sim.configure(async_delay=0.005)
    with asf.Device(0) as dev, dev.stream() as s1, dev.stream() as s2, dev.malloc(64) as d:
        ev = dev.event()
        d.copy_from(b"\x07" * 64, stream=s1)
        ev.record(s1)
        s2.wait(ev)
        out = bytearray(64)
        d.copy_to(out, stream=s2)
        s2.synchronize()
        assert out == b"\x07" * 64
        assert not s1.query() or not s1.busy  # s1 may still report its own work
        s1.synchronize()
        ev.close()


def test_default_stream_is_explicit_object(sim):
    with asf.Device(0) as dev:
        ds = dev.default_stream
        assert isinstance(ds, asf.Stream) and ds is not None
        assert ds is dev.default_stream
        assert ds not in asf.live_resources()
        d = dev.malloc(64)
        d.copy_from(b"\x01" * 64, stream=ds)
        ev = dev.event()
        ev.record()  # omitted: the default stream
        ev.synchronize()
        ds.synchronize()
        assert d.to_bytes() == b"\x01" * 64
        ds.close()  # does nothing: it closes with the device
        assert not ds.closed
    assert ds.closed


def test_context_explicit(sim):
    with asf.Device(0) as dev:
        with asf.Context(dev) as ctx:
            assert sim.live_handles()["context"] == [ctx.handle]
            with asf.Stream(ctx) as s, asf.DeviceMemory(ctx, 64) as d:
                d.copy_from(b"\x02" * 64, stream=s)
                s.synchronize()
                assert d.to_bytes() == b"\x02" * 64
            # the default context still works after switching
            with dev.malloc(8) as m:
                assert m.to_bytes() == bytes(8)
        assert "context" not in sim.live_handles()


def test_two_devices(sim):
    with asf.Device(0) as d0, asf.Device(1) as d1:
        a, b = d0.malloc(64), d1.malloc(64)
        a.copy_from(b"\x09" * 64)
        expected = r"cannot copy across devices: <DeviceMemory #\d+ device=0 .*> is on device 0"
        with pytest.raises(ValueError, match=expected):
            b.copy_from(a)
        with d1.stream() as s, pytest.raises(ValueError, match="device"):
            a.copy_from(b"x", stream=s)
        b.copy_from(a.to_bytes())
        assert b.to_bytes() == b"\x09" * 64
        assert sorted(sim.live_handles()["device"]) == [0, 1]

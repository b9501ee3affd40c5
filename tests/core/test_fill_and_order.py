"""Auto-fill of every allocation, ownership and teardown order, streams before memory."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import ascend_safe as asf

KINDS = [asf.DeviceMemory, asf.HostMemory, asf.DvppMemory]


@pytest.mark.parametrize("cls", KINDS)
def test_allocations_are_zero_filled(sim, cls):
    with asf.Device(0) as dev, cls(dev, 1000) as m:
        assert m.to_bytes() == bytes(1000)


@pytest.mark.parametrize("cls", KINDS)
def test_allocations_take_a_chosen_fill(sim, cls):
    with asf.Device(0) as dev, cls(dev, 100, fill=0xAB) as m:
        assert m.to_bytes() == b"\xab" * 100


@pytest.mark.parametrize("cls", KINDS)
def test_uninitialized_is_an_explicit_opt_out(sim, cls):
    with asf.Device(0) as dev, cls(dev, 256, fill=asf.UNINITIALIZED) as m:
        # the simulator fills fresh memory with garbage: proof the fill was really skipped
        assert m.to_bytes() != bytes(256)


@pytest.mark.parametrize(
    ("cls", "alloc", "free"),
    [
        (asf.DeviceMemory, "rt.malloc", "device_memory"),
        (asf.HostMemory, "rt.malloc_host", "host_memory"),
        (asf.DvppMemory, "media.dvpp_malloc", "dvpp_memory"),
    ],
)
def test_failed_fill_frees_the_memory(sim, cls, alloc, free):
    with asf.Device(0) as dev:
        sim.inject_fault("rt.memset", 507899)
        with pytest.raises(asf.AclError) as info:
            cls(dev, 64)
        assert info.value.code == 507899
        assert info.value.api == "acl.rt.memset"
        assert free not in sim.live_handles()
        assert sim.call_counts()[alloc] >= 1


def test_children_hold_their_parent(sim):
    dev = asf.Device(0)
    mem = dev.malloc(64)
    buf = asf.DataBuffer(mem)
    ref = weakref.ref(dev)
    del dev, mem
    gc.collect()
    assert ref() is not None  # the buffer keeps the memory, which keeps the device
    assert buf.memory.device is ref()
    ref().close()
    assert buf.closed


def test_closing_memory_closes_its_buffers_not_the_reverse(sim):
    with asf.Device(0) as dev:
        mem = dev.malloc(64)
        b1, b2 = asf.DataBuffer(mem), asf.DataBuffer(mem, 32)
        b1.close()
        assert not mem.closed
        mem.close()
        assert b2.closed
        assert "data_buffer" not in sim.live_handles()


def test_device_close_tears_down_in_dependency_order(sim):
    dev = asf.Device(0)
    # create in an order that differs from the teardown order
    s1 = dev.stream()
    ctx = asf.Context(dev)
    ctx_stream = asf.Stream(ctx)
    ctx_event = asf.Event(ctx)
    ev = dev.event()
    mem = dev.malloc(64)
    buf = asf.DataBuffer(mem)
    host = dev.malloc_host(64)
    mem.copy_from(b"\x01" * 64, stream=s1)
    dev.close()
    for obj in (s1, ctx, ctx_stream, ctx_event, ev, mem, buf, host):
        assert obj.closed
    assert sim.live_handles() == {}
    assert sim.violations() == []


def test_memory_close_waits_for_streams_using_it(sim):
    sim.configure(async_delay=0.02)
    with asf.Device(0) as dev, dev.stream() as s:
        mem = dev.malloc(4096)
        out = bytearray(4096)
        mem.fill(0x11, stream=s)
        mem.copy_to(out, stream=s)
        mem.close()  # must synchronize s first: freeing now would be a use-after-free
        assert out == b"\x11" * 4096
        assert not s.busy
    assert sim.violations() == []


def test_async_copy_keeps_python_buffers_alive(sim):
    sim.configure(async_delay=0.02)
    with asf.Device(0) as dev, dev.stream() as s, dev.malloc(1024) as mem:
        src = np.full(1024, 7, dtype=np.uint8)
        dst = np.zeros(1024, dtype=np.uint8)
        src_ref, dst_ref = weakref.ref(src), weakref.ref(dst)
        mem.copy_from(src, stream=s)
        mem.copy_to(dst, stream=s)
        del src, dst
        gc.collect()
        assert src_ref() is not None and dst_ref() is not None
        assert s.busy
        s.synchronize()
        assert not s.busy
        gc.collect()
        assert src_ref() is None and dst_ref() is None


def test_async_device_to_host_lands_only_at_synchronize(sim):
    with asf.Device(0) as dev, dev.stream() as s, dev.malloc(64, fill=5) as mem:
        out = bytearray(64)
        with sim.hold_streams():
            mem.copy_to(out, stream=s)
            assert out == bytes(64)
        ev = dev.event()
        ev.record(s)
        ev.synchronize()  # an event covering the copy delivers it too
        assert out == b"\x05" * 64
        ev.close()


def test_staging_buffers_are_reused_and_released_with_the_device(sim):
    with asf.Device(0) as dev, dev.stream() as s, dev.malloc(1 << 16) as mem:
        for size in (64, 100, 4096, 3000):  # one size class: the same two buffers serve all
            data = bytes([size & 0xFF]) * size
            mem.copy_from(data, stream=s)
            out = bytearray(size)
            mem.copy_to(out, stream=s, nbytes=size)
            s.synchronize()
            assert out == data
        # the copy in and the copy out were in flight together: two buffers, each reused
        assert len(sim.live_handles()["host_memory"]) == 2
        assert sim.call_counts()["rt.malloc_host"] == 2
        mem.copy_from(b"\x01" * 60000, stream=s)  # a larger size class
        s.synchronize()
        assert len(sim.live_handles()["host_memory"]) == 3
    assert "host_memory" not in sim.live_handles()

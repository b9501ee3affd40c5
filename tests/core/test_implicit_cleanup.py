"""Objects collected while open warn and are released at the next safe point."""

from __future__ import annotations

import gc
import weakref

import pytest

import ascend_safe as asf
from ascend_safe.memory import StagingMemory


def test_unclosed_memory_warns_and_is_released(sim):
    with asf.Device(0) as dev:
        mem = dev.malloc(64)
        ptr = mem.ptr
        with pytest.warns(ResourceWarning, match="unclosed <DeviceMemory"):
            del mem
            gc.collect()
        assert asf.live_resources() == [dev]  # drains the queue
        assert ptr not in sim.live_handles().get("device_memory", [])


def test_in_flight_work_keeps_dropped_objects_alive_until_retired(sim):
    sim.configure(async_delay=0.01)
    with asf.Device(0) as dev:
        s = dev.stream()
        mem = dev.malloc(256)
        out = bytearray(256)
        mem.fill(9, stream=s)
        mem.copy_to(out, stream=s)  # stream <-> memory reference each other while in flight
        refs = [weakref.ref(s), weakref.ref(mem)]
        del s, mem
        gc.collect()
        assert all(r() is not None for r in refs)  # queued work still needs them
        with pytest.warns(ResourceWarning):
            dev.synchronize()  # retires the work: the dropped objects can go now
            gc.collect()
        assert out == b"\x09" * 256
        assert asf.live_resources() == [dev]
        staging = [r.ptr for r in asf.live_resources(internal=True) if isinstance(r, StagingMemory)]
        assert sim.live_handles().get("host_memory") == staging  # pooled, freed with the device
        assert set(sim.live_handles()) == {"device", "host_memory"}
    assert sim.violations() == []


def test_unclosed_device_is_released_with_children(sim):
    dev = asf.Device(0)
    mem, stream = dev.malloc(64), dev.stream()
    with pytest.warns(ResourceWarning) as record:
        del dev, mem, stream
        gc.collect()
        asf.live_resources()  # releases the children
    assert {str(w.message).split("#")[0] for w in record} == {
        "unclosed <DeviceMemory ",
        "unclosed <Stream ",
    }
    record.clear()  # the warnings' sources held the device
    with pytest.warns(ResourceWarning, match="unclosed <Device "):
        gc.collect()
        assert asf.live_resources() == []
    assert sim.live_handles() == {}


def test_del_never_raises(sim, recwarn):
    with asf.Device(0) as dev:
        mem = dev.malloc(64)
        sim.inject_fault("rt.free", 507899)
        del mem
        gc.collect()
        asf.live_resources()  # the failed release becomes a warning, not an exception
        messages = [str(w.message) for w in recwarn.list]
        assert any("releasing unclosed" in m and "507899" in m for m in messages)
        leaked = asf.live_resources()
        assert len(leaked) == 2  # the memory is still tracked: nothing silently dropped
        leaked[1].close()

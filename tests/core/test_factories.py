"""Device and Context create resources through the same factory methods."""

from __future__ import annotations

import pytest

import ascend_safe as asf


def _sim_event_flags(sim, event: asf.Event) -> int:
    return sim._state_for_tests().events[event.handle].flags


@pytest.mark.parametrize("owner_kind", ["device", "context"])
def test_factories_create_in_their_owners_context(sim, owner_kind):
    with asf.Device(0) as dev:
        owner = dev if owner_kind == "device" else dev.context()
        stream = owner.stream(priority=2)
        event = owner.event()
        mem = owner.malloc(64, fill=7)
        host = owner.malloc_host(64)
        dvpp = owner.dvpp_malloc(64)
        for r in (stream, event, mem, host, dvpp):
            assert r.owner is owner and r.device is dev
        state = sim._state_for_tests()
        sim_stream = state.streams[stream.handle]
        if owner_kind == "context":
            assert sim_stream.context.handle == owner.handle and not sim_stream.context.default
        else:
            assert sim_stream.context.default
        mem.copy_to(host)
        assert bytes(host.to_bytes()) == b"\x07" * 64
        assert sorted(sim.live_handles()["stream"]) == sorted([stream.handle])
        owner.close()
        assert all(r.closed for r in (stream, event, mem, host, dvpp))
    assert sim.live_handles() == {}
    assert sim.violations() == []


def test_event_enable_timing_maps_to_time_line(sim):
    with asf.Device(0) as dev, dev.context() as ctx:
        plain = ctx.event(enable_timing=True)  # create_event: its default flags have TIME_LINE
        assert _sim_event_flags(sim, plain) & asf.EventFlag.TIME_LINE
        synced = ctx.event(flags=asf.EventFlag.SYNC, enable_timing=True)
        assert _sim_event_flags(sim, synced) == asf.EventFlag.SYNC | asf.EventFlag.TIME_LINE
        untimed = dev.event(flags=asf.EventFlag.SYNC, enable_timing=False)
        assert _sim_event_flags(sim, untimed) == asf.EventFlag.SYNC
        s = ctx.stream()
        plain.record(s)
        synced.record(s)
        s.synchronize()
        assert plain.elapsed_time(synced) >= 0.0
        with pytest.raises(ValueError, match="enable_timing=False needs explicit flags"):
            dev.event(enable_timing=False)
        with pytest.raises(ValueError, match="contradicts flags=0x9"):
            asf.Event(dev, flags=asf.EventFlag.SYNC | asf.EventFlag.TIME_LINE, enable_timing=False)
        with pytest.raises(TypeError, match="enable_timing must be True or False"):
            dev.event(enable_timing=1)  # type: ignore[arg-type]
    assert sim.live_handles() == {}


def test_factory_rejects_unknown_keywords(sim):
    with asf.Device(0) as dev:
        with pytest.raises(TypeError, match="blocking"):
            dev.event(blocking=True)  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="non_blocking"):
            dev.context().stream(non_blocking=True)  # type: ignore[call-arg]
    assert sim.live_handles() == {}

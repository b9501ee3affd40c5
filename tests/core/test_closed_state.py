"""The closed-state contract: idempotent close, no stale handle ever reaches pyacl."""

from __future__ import annotations

import pytest

import ascend_safe as asf


def _all_kinds(dev):
    ctx = asf.Context(dev)
    mem = dev.malloc(64)
    return {
        "context": ctx,
        "stream": dev.stream(),
        "event": dev.event(),
        "device memory": mem,
        "host memory": dev.malloc_host(64),
        "dvpp memory": dev.dvpp_malloc(64),
        "data buffer": asf.DataBuffer(mem),
    }


USES = {
    "context": [lambda o: o.handle, lambda o: o.make_current(), lambda o: asf.Stream(o)],
    "stream": [
        lambda o: o.handle,
        lambda o: o.synchronize(),
        lambda o: o.query(),
        lambda o: o.wait(o.device.event()),
    ],
    "event": [
        lambda o: o.handle,
        lambda o: o.record(),
        lambda o: o.synchronize(),
        lambda o: o.query(),
        lambda o: o.elapsed_time(o),
    ],
    "device memory": [
        lambda o: o.ptr,
        lambda o: o.to_bytes(),
        lambda o: o.copy_from(b"x"),
        lambda o: o.copy_to(bytearray(64)),
        lambda o: o.fill(1),
        lambda o: asf.DataBuffer(o),
    ],
    "host memory": [lambda o: o.ptr, lambda o: o.to_bytes()],
    "dvpp memory": [lambda o: o.ptr, lambda o: o.copy_from(b"x")],
    "data buffer": [lambda o: o.handle, lambda o: o.ptr],
}


@pytest.mark.parametrize("kind", sorted(USES))
def test_use_after_close_raises_before_pyacl(sim, kind):
    with asf.Device(0) as dev:
        objs = _all_kinds(dev)
        obj = objs[kind]
        old = obj.handle if hasattr(obj, "handle") else obj.ptr
        obj.close()
        obj.close()  # idempotent
        assert obj.closed
        sim.reset_call_counts()
        for use in USES[kind]:
            with pytest.raises(asf.ResourceClosedError) as info:
                use(obj)
            assert type(obj).__name__ in str(info.value)
        # no pyacl call was made by the failed uses (the event factory in the stream case is
        # created on the device, which is fine: only create_event may appear)
        assert set(sim.call_counts()) <= {"rt.create_event"}
        assert "closed" in repr(obj)
        assert str(old) not in repr(obj)
        for other in objs.values():
            other.close()
    assert sim.violations() == []


def test_closed_device_children_are_closed(sim):
    dev = asf.Device(0)
    objs = _all_kinds(dev)
    dev.close()
    assert all(o.closed for o in objs.values())
    assert dev.closed and dev.id == 0 and "closed" in repr(dev)
    with pytest.raises(asf.ResourceClosedError, match="Device"):
        dev.malloc(8)
    with pytest.raises(asf.ResourceClosedError):
        _ = dev.default_stream
    assert sim.live_handles() == {}


def test_none_is_never_the_default_stream(sim):
    with asf.Device(0) as dev, dev.malloc(64) as d:
        stream = dev.stream()
        stream.close()
        stream = None
        with pytest.raises(TypeError, match="omit it"):
            d.copy_from(b"x", stream=stream)
        with pytest.raises(TypeError, match="omit it"):
            d.fill(1, stream=0)
        ev = dev.event()
        with pytest.raises(TypeError, match="omit the argument"):
            ev.record(None)
        ev.close()


def test_closed_parent_refuses_children(sim):
    dev = asf.Device(0)
    dev.close()
    for factory in (asf.Stream, asf.Event, asf.Context, lambda d: asf.DeviceMemory(d, 8)):
        with pytest.raises(asf.ResourceClosedError):
            factory(dev)
    assert sim.live_handles() == {}


def test_with_on_closed_object_raises(sim):
    with asf.Device(0) as dev:
        s = dev.stream()
        s.close()
        with pytest.raises(asf.ResourceClosedError), s:
            pass


def test_resources_refuse_pickling(sim):
    import pickle

    with asf.Device(0) as dev, dev.malloc(8) as m:
        for obj in (dev, m, dev.default_stream):
            with pytest.raises(TypeError, match="cannot be pickled"):
                pickle.dumps(obj)

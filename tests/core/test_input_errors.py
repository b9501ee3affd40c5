"""Bad input is refused with a clear error before pyacl is called; pyacl failures map to
``AclError`` subclasses carrying code, name, API and pyacl's message."""

from __future__ import annotations

import pytest

import ascend_safe as asf


@pytest.mark.parametrize(
    ("make", "exc", "match"),
    [
        (lambda d: asf.DeviceMemory(d, -1), ValueError, "> 0"),
        (lambda d: asf.DeviceMemory(d, 0), ValueError, "> 0"),
        (lambda d: asf.DeviceMemory(d, 1.5), TypeError, "int"),
        (lambda d: asf.HostMemory(d, "8"), TypeError, "int"),
        (lambda d: asf.DeviceMemory(d, 8, fill=256), ValueError, "0..255"),
        (lambda d: asf.DeviceMemory(d, 8, fill=None), TypeError, "UNINITIALIZED"),
        (lambda d: asf.DeviceMemory(object(), 8), TypeError, "Device or Context"),
        (lambda d: asf.Stream(None), TypeError, "Device or Context"),
        (lambda d: asf.Stream(d, priority=9), ValueError, "priority"),
        (lambda d: asf.DataBuffer(b"x"), TypeError, "memory object"),
        (lambda d: asf.Context(0), TypeError, "Device"),
    ],
)
def test_bad_constructor_arguments(sim, make, exc, match):
    with asf.Device(0) as dev:
        sim.reset_call_counts()
        with pytest.raises(exc, match=match):
            make(dev)
        assert sim.call_counts() == {}


def test_bad_device_ids():
    with pytest.raises(ValueError):
        asf.Device(-1)
    with pytest.raises(TypeError):
        asf.Device("0")


def test_copy_bounds_and_types(sim):
    with asf.Device(0) as dev, dev.malloc(16) as d:
        sim.reset_call_counts()
        with pytest.raises(ValueError, match="allocate a larger buffer"):
            d.copy_from(b"x" * 17)
        with pytest.raises(ValueError, match="allocate a larger buffer"):
            d.copy_from(b"x" * 8, offset=9)
        with pytest.raises(ValueError):
            d.copy_to(bytearray(8))
        with pytest.raises(TypeError, match="read-only"):
            d.copy_to(b"\x00" * 16)
        with pytest.raises(TypeError, match="must be a memory object"):
            d.copy_from(12345)
        with pytest.raises(TypeError, match="None"):
            d.copy_from(None)
        with pytest.raises(ValueError, match=">= 0"):
            d.copy_from(b"x", offset=-1)
        assert sim.call_counts() == {}
        with dev.stream() as s, pytest.raises(ValueError, match="64-byte aligned"):
            d.copy_from(b"x", offset=3, stream=s)


def test_out_of_memory_is_typed(sim):
    sim.configure(memory_per_device=1 << 20)
    with asf.Device(0) as dev:
        with pytest.raises(asf.OutOfDeviceMemoryError) as info:
            dev.malloc(2 << 20)
        err = info.value
        assert err.code == 207001
        assert err.api == "acl.rt.malloc"
        assert err.name == "ACL_ERROR_RT_MEMORY_ALLOCATION"
        assert "DeviceMemory" in str(err)
        assert isinstance(err, asf.AclResourceError)


def test_missing_device_is_refused_before_it_is_used(sim):
    with pytest.raises(ValueError, match="device 7 does not exist: this machine has 2"):
        asf.Device(7)
    assert "rt.set_device" not in sim.call_counts()
    assert sim.live_handles() == {}


def test_pyacl_failure_opening_a_device_is_typed_and_leaves_nothing(sim):
    sim.inject_fault("rt.set_device", 107001)
    with pytest.raises(asf.AclParameterError) as info:
        asf.Device(1)
    assert info.value.code == 107001
    assert info.value.api == "acl.rt.set_device"
    assert "Device" in str(info.value)
    assert sim.live_handles() == {}
    with asf.Device(1):  # the process slot was given back
        pass


def test_recent_error_message_is_attached(sim):
    sim.configure(memory_per_device=1 << 20)
    with asf.Device(0) as dev, pytest.raises(asf.AclError) as info:
        dev.malloc(4 << 20)
    assert info.value.recent_message  # the simulator explains every failure


@pytest.mark.parametrize(
    ("make", "exc", "match"),
    [
        (lambda d: asf.Event(d, flags=-5), ValueError, ">= 0"),
        (lambda d: asf.Event(d, flags=0x80), ValueError, "unknown bits"),
        (lambda d: asf.Stream(d, flags="x"), TypeError, "stream flags must be an int"),
        (lambda d: asf.Stream(d, flags=0x1000), ValueError, "unknown bits"),
        (lambda d: asf.DeviceMemory(d, 64, policy=99), ValueError, "malloc policy 99"),
        (lambda d: asf.Device(0, slot_timeout=-1), ValueError, "slot_timeout"),
    ],
)
def test_bad_flags_and_options_are_refused_before_pyacl(sim, make, exc, match):
    with asf.Device(0) as dev:
        sim.reset_call_counts()
        with pytest.raises(exc, match=match):
            make(dev)
        assert sim.call_counts() == {}


def test_offsets_past_the_end_are_explained(sim):
    with asf.Device(0) as dev, dev.malloc(16) as d:
        with pytest.raises(ValueError, match="source offset 10 is past the end of the 3-byte"):
            d.copy_from(b"abc", src_offset=10)
        with pytest.raises(ValueError, match="source offset 20 is past the end of the 16-byte"):
            d.to_bytes(offset=20)


def test_closed_parent_error_says_what_was_being_created(sim):
    dev = asf.Device(0)
    dev.close()
    with pytest.raises(asf.ResourceClosedError, match="cannot create a Stream: <Device"):
        asf.Stream(dev)


def test_stream_timeout_zero_polls(sim):
    # the runtime refuses a 0 ms timeout (107000); the library polls instead
    with asf.Device(0) as dev, dev.stream() as s, dev.malloc(64) as mem:
        s.synchronize(timeout=0)  # nothing queued: done at once
        sim.configure(async_delay=0.05)
        mem.fill(1, stream=s)
        with pytest.raises(asf.AclError) as info:
            s.synchronize(timeout=0)
        assert info.value.code == 507046
        s.synchronize()
        s.synchronize(timeout=0.0)


def test_stream_timeout_rounds_up(sim):
    with asf.Device(0) as dev, dev.stream() as s, dev.malloc(64) as mem:
        sim.configure(async_delay=0.05)
        mem.fill(1, stream=s)
        with pytest.raises(asf.AclError) as info:
            s.synchronize(timeout=0.0004)  # 0.4 ms: a short wait, not a poll that says 0
        assert info.value.code == 507046
        s.synchronize(timeout=5)
        with pytest.raises(ValueError):
            s.synchronize(timeout=-1)

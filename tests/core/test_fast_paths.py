"""The flat paths of the common operations keep every check of the general ones."""

from __future__ import annotations

from typing import Any, Callable

import pytest

import ascend_safe as asf


def _closed_memory(dev: asf.Device) -> asf.DeviceMemory:
    mem = dev.malloc(64)
    mem.close()
    return mem


@pytest.mark.parametrize(
    "operation",
    [
        lambda m: m.copy_from(b"\x01" * 64),
        lambda m: m.copy_from(bytearray(b"\x01" * 64)),
        lambda m: m.copy_to(bytearray(64)),
        lambda m: m.to_bytes(),
        lambda m: m.to_bytes(offset=8),
    ],
    ids=["copy_from", "copy_from_bytearray", "copy_to", "to_bytes", "to_bytes_offset"],
)
def test_a_closed_memory_refuses_before_pyacl(sim, operation: Callable[[Any], object]) -> None:
    with asf.Device(0) as dev:
        mem = _closed_memory(dev)
        before = sim.call_counts().get("rt.memcpy", 0)
        with pytest.raises(asf.ResourceClosedError):
            operation(mem)
        assert sim.call_counts().get("rt.memcpy", 0) == before


def test_bounds_are_checked_on_the_flat_paths(sim) -> None:
    with asf.Device(0) as dev, dev.malloc(64) as mem:
        with pytest.raises(ValueError, match="65 bytes"):
            mem.copy_from(b"\x01" * 65)
        with pytest.raises(ValueError):
            mem.copy_from(b"\x01" * 8, offset=60)
        with pytest.raises(ValueError):
            mem.copy_from(b"\x01" * 8, offset=-1)
        with pytest.raises(ValueError):
            mem.copy_to(bytearray(63))  # too small for the whole memory
        with pytest.raises(ValueError):
            mem.copy_to(bytearray(64), offset=1, nbytes=64)
        with pytest.raises(ValueError):
            mem.to_bytes(offset=65)
        mem.copy_from(bytearray(b"\x07" * 8), offset=56)
        with pytest.raises(ValueError):
            mem.copy_from(bytearray(65))
        out = bytearray(8)
        mem.copy_to(out, offset=56, nbytes=8)
        assert out == b"\x07" * 8
        assert mem.to_bytes(offset=60) == b"\x07" * 4
        assert mem.to_bytes(offset=64) == b""
    assert sim.violations() == []


def test_a_sync_copy_waits_for_async_work_on_the_memory(sim) -> None:
    with asf.Device(0) as dev, dev.stream() as s, dev.malloc(4096) as mem:
        mem.copy_from(b"\x05" * 4096, stream=s)
        assert s.busy
        mem.copy_from(b"\x06" * 16)  # must not overtake the queued upload
        assert not s.busy
        assert mem.to_bytes(16) == b"\x06" * 16
        assert mem.to_bytes(16, offset=16) == b"\x05" * 16
    assert sim.violations() == []


def test_record_and_synchronize_check_their_objects(sim) -> None:
    with asf.Device(0) as dev:
        s = dev.stream()
        ev = dev.event()
        ev.record(s)
        ev.synchronize()
        s.synchronize()
        s.close()
        with pytest.raises(asf.ResourceClosedError):
            ev.record(s)
        with pytest.raises(asf.ResourceClosedError):
            s.synchronize()
        ev.close()
        with pytest.raises(asf.ResourceClosedError):
            ev.synchronize()
        with pytest.raises(asf.ResourceClosedError):
            ev.record(dev.default_stream)
    assert sim.violations() == []


def test_an_object_of_another_process_is_refused_on_the_flat_paths(sim, monkeypatch) -> None:
    from ascend_safe import _process

    with asf.Device(0) as dev, dev.stream() as s, dev.malloc(64) as mem, dev.event() as ev:
        monkeypatch.setattr(_process.state, "pid", _process.state.pid + 1)
        for operation in (
            lambda: mem.copy_from(b"\x01" * 8),
            lambda: mem.copy_to(bytearray(64)),
            lambda: ev.record(s),
            s.synchronize,
            ev.synchronize,
        ):
            with pytest.raises(asf.ForkSafetyError):
                operation()
        monkeypatch.undo()

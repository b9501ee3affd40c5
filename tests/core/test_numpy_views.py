"""Zero-copy numpy views of pinned host memory, and memory made from numpy arrays."""

from __future__ import annotations

import gc

import pytest

import ascend_safe as asf

np = pytest.importorskip("numpy")


def test_view_is_zero_copy_both_ways(sim):
    with asf.Device(0) as dev:
        host = dev.malloc_host(64, fill=3)
        view = host.numpy()
        assert view.dtype == np.uint8 and view.shape == (64,) and (view == 3).all()
        assert view.ctypes.data == host.ptr
        view[:4] = [1, 2, 3, 4]  # a write through the view is a write to the memory
        assert host.to_bytes(4) == b"\x01\x02\x03\x04"
        host.copy_from(b"\x09" * 8, offset=8)  # and the other way round
        assert (view[8:16] == 9).all()
        floats = host.numpy(np.float32, (4, 4))
        assert floats.shape == (4, 4) and floats.ctypes.data == host.ptr
        raw = np.asarray(host)  # not an object array
        assert raw.dtype == np.uint8 and raw.ctypes.data == host.ptr
        copied = np.array(host, copy=True)
        assert copied.ctypes.data != host.ptr and copied.tobytes() == host.to_bytes()
        with pytest.raises(ValueError, match="needs 128 bytes"):
            host.numpy(np.float64, (16,))
        del view, floats, raw
        gc.collect()
        host.close()
    assert sim.live_handles() == {}


def test_view_sees_an_async_copy_after_synchronize(sim):
    sim.configure(async_delay=0.005)
    with asf.Device(0) as dev, dev.stream() as s:
        src = dev.device_from_numpy(np.arange(16, dtype=np.int32))
        host = dev.malloc_host(64)
        view = host.numpy(np.int32)
        host.copy_from(src, stream=s)
        s.synchronize()
        assert view.tolist() == list(range(16))
        del view
    assert sim.live_handles() == {}


def test_view_keeps_the_memory_alive(sim):
    with asf.Device(0) as dev:
        view = dev.malloc_host(32, fill=5).numpy()[8:]  # the memory object itself is dropped
        gc.collect()
        assert len(sim.live_handles()["host_memory"]) == 1
        assert (view == 5).all()
        with pytest.warns(ResourceWarning, match="unclosed <HostMemory"):
            del view
            gc.collect()
        asf.live_resources()  # a safe point: the dropped memory is released there
        assert "host_memory" not in sim.live_handles()
    assert sim.live_handles() == {}


def test_close_with_a_live_view_raises_and_frees_nothing(sim):
    dev = asf.Device(0)
    host = dev.malloc_host(16, fill=1)
    view = host.numpy()[4:]  # a slice of a view counts too
    with pytest.raises(asf.LiveViewError, match=r"1 numpy view\(s\) of it are still alive"):
        host.close()
    assert not host.closed and sim.live_handles()["host_memory"] == [host.ptr]
    with pytest.raises(asf.LiveViewError):
        dev.close()  # the device stays open too: nothing is freed under the view
    assert not dev.closed and (view == 1).all()
    del view
    gc.collect()
    host.close()
    dev.close()
    assert sim.live_handles() == {}
    assert sim.violations() == []


def test_closed_memory_gives_no_view(sim):
    with asf.Device(0) as dev:
        host = dev.malloc_host(16)
        host.close()
        with pytest.raises(asf.ResourceClosedError):
            host.numpy()


@pytest.mark.parametrize("kind", ["host", "device"])
def test_from_numpy_round_trip(sim, kind):
    arr = np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::2]  # not contiguous
    with asf.Device(0) as dev, dev.context() as ctx:
        mem = ctx.host_from_numpy(arr) if kind == "host" else ctx.device_from_numpy(arr)
        assert mem.size == arr.nbytes and mem.owner is ctx
        assert (mem.to_numpy(arr.dtype, arr.shape) == arr).all()
        with pytest.raises(ValueError, match="empty array"):
            asf.HostMemory.from_numpy(dev, np.empty((0, 3)))
        with pytest.raises(TypeError, match="holds Python objects"):
            asf.DeviceMemory.from_numpy(dev, np.array([object()]))
    assert sim.live_handles() == {}


def test_dlpack_export_is_a_view_that_counts(sim):
    with asf.Device(0) as dev:
        host = dev.malloc_host(32, fill=6)
        assert host.__dlpack_device__() == (1, 0)
        arr = np.from_dlpack(host)
        assert arr.ctypes.data == host.ptr and (arr == 6).all()
        arr[0] = 42
        assert host.to_bytes(1) == b"\x2a"
        with pytest.raises(asf.LiveViewError):
            host.close()
        with pytest.raises(BufferError, match="takes no stream"):
            host.__dlpack__(stream=1)
        del arr
        gc.collect()
        host.close()
    assert sim.live_handles() == {}

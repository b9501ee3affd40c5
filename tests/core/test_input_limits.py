"""Numbers are checked against the C type pyacl parses them into, user buffers must hold plain
data, and every bad argument gets an error naming it and the accepted range."""

from __future__ import annotations

import ctypes
import math

import pytest

import ascend_safe as asf

np = pytest.importorskip("numpy")

BIG = (1 << 64) + 64  # pyacl's ``k`` format would wrap this to 64


# -- item: sizes of 2**64 or more ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["malloc", "malloc_host", "dvpp_malloc"])
def test_sizes_past_64_bits_are_refused_before_pyacl(sim, kind):
    with asf.Device(0) as dev, dev.malloc(64, fill=7) as neighbour:
        sim.reset_call_counts()
        with pytest.raises(ValueError, match=r"size must be at most 2\*\*64-1"):
            getattr(dev, kind)(BIG)
        assert sim.call_counts() == {}
        assert neighbour.to_bytes() == b"\x07" * 64
    assert sim.violations() == []


@pytest.mark.parametrize("kind", ["malloc", "malloc_host", "dvpp_malloc"])
def test_largest_c_size_reaches_pyacl(sim, kind):
    """2**64-1 is a valid ``unsigned long``: pyacl gets it unwrapped and refuses it itself
    (the runtime's padding overflows: 100000; or out of memory: 207001)."""
    with asf.Device(0) as dev:
        with pytest.raises(asf.errors.AclError) as caught:
            getattr(dev, kind)((1 << 64) - 1)
        assert caught.value.code in (100000, 207001)
        assert caught.value.api.endswith(kind)
    assert sim.live_handles() == {}


@pytest.mark.parametrize("use_stream", [False, True])
def test_offsets_and_counts_past_64_bits_are_refused(sim, use_stream):
    with asf.Device(0) as dev, dev.stream() as s, dev.malloc(128) as a, dev.malloc(128) as b:
        extra = {"stream": s} if use_stream else {}
        sim.reset_call_counts()
        with pytest.raises(ValueError, match=r"^offset must be at most 2\*\*64-1"):
            a.copy_from(b"x" * 64, offset=1 << 64, **extra)
        with pytest.raises(ValueError, match=r"^src_offset must be at most 2\*\*64-1"):
            a.copy_from(b, src_offset=1 << 64, nbytes=64, **extra)
        with pytest.raises(ValueError, match=r"^dst_offset must be at most 2\*\*64-1"):
            a.copy_to(b, dst_offset=BIG, nbytes=64, **extra)
        with pytest.raises(ValueError, match=r"^nbytes must be at most 2\*\*64-1"):
            a.copy_to(bytearray(64), nbytes=BIG, **extra)
        assert sim.call_counts() == {}
        assert b.to_bytes() == bytes(128)
    assert sim.violations() == []


def test_offset_of_wrong_type_names_the_argument(sim):
    with asf.Device(0) as dev, dev.malloc(64) as m:
        with pytest.raises(TypeError, match=r"^offset must be an int, not str"):
            m.copy_from(b"x", offset="1")
        with pytest.raises(TypeError, match=r"^dst_offset must be an int, not float"):
            m.copy_to(bytearray(64), dst_offset=1.0, nbytes=1)


def test_data_buffer_size_past_64_bits(sim):
    with asf.Device(0) as dev, dev.malloc(64) as m:
        sim.reset_call_counts()
        with pytest.raises(ValueError, match="data buffer size"):
            asf.DataBuffer(m, BIG)
        assert sim.call_counts() == {}


def test_to_bytes_checks_bounds_before_allocating(sim):
    with asf.Device(0) as dev, dev.malloc(64) as m:
        with pytest.raises(ValueError, match=r"cannot copy 1099511627776 bytes .* 64-byte"):
            m.to_bytes(1 << 40)
        with pytest.raises(ValueError, match="cannot copy 60 bytes from offset 8"):
            m.to_bytes(60, offset=8)
        with pytest.raises(ValueError, match=r"nbytes must be at most 2\*\*64-1"):
            m.to_bytes(BIG)
        assert m.to_bytes(4, offset=60) == bytes(4)


def test_to_numpy_shape_is_checked_before_allocating(sim):
    with asf.Device(0) as dev, dev.malloc(64, fill=1) as m:
        with pytest.raises(ValueError, match=r"needs 4398046511104 bytes .* holds 64"):
            m.to_numpy("float32", (1 << 40,))
        with pytest.raises(ValueError, match="has no size"):
            m.to_numpy("V0")
        assert m.to_numpy("uint8", (2, 4)).tolist() == [[1] * 4] * 2


# -- item: object buffers ------------------------------------------------------------------


class _WithObject(ctypes.Structure):
    _fields_ = [("n", ctypes.c_int), ("obj", ctypes.py_object)]


def _object_arrays():
    yield np.empty(8, dtype=object)
    yield np.zeros(2, dtype=[("a", "i4"), ("b", "O")])
    yield np.zeros(2, dtype=[("O", "i4"), ("b", [("c", "O")])])


@pytest.mark.parametrize("array", list(_object_arrays()), ids=["object", "record", "nested"])
def test_object_buffers_are_refused(sim, array):
    with asf.Device(0) as dev, dev.stream() as s, dev.malloc(64) as m:
        sim.reset_call_counts()
        with pytest.raises(TypeError, match="holds Python objects"):
            m.copy_to(array, nbytes=8)
        with pytest.raises(TypeError, match="holds Python objects"):
            m.copy_to(array, nbytes=8, stream=s)
        with pytest.raises(TypeError, match="holds Python objects"):
            m.copy_from(array)
        with pytest.raises(TypeError, match="holds Python objects"):
            m.to_numpy(array.dtype)
        assert sim.call_counts() == {}


@pytest.mark.parametrize("make", [lambda: (ctypes.py_object * 8)(), lambda: (_WithObject * 2)()])
def test_ctypes_object_buffers_are_refused(sim, make):
    buf = make()
    with asf.Device(0) as dev, dev.malloc(64) as m:
        sim.reset_call_counts()
        with pytest.raises(TypeError, match="holds Python objects"):
            m.copy_to(buf, nbytes=8)
        with pytest.raises(TypeError, match="holds Python objects"):
            m.copy_from(buf, nbytes=8)
        assert sim.call_counts() == {}


def test_field_named_o_is_plain_data(sim):
    """Field names are not type codes: a record whose field is called "O" copies fine."""
    rec = np.zeros(4, dtype=[("O", "<i4"), ("x", "<f4")])
    rec["O"] = [1, 2, 3, 4]
    with asf.Device(0) as dev, dev.malloc(32) as m:
        m.copy_from(rec)
        out = np.zeros_like(rec)
        m.copy_to(out)
        assert out["O"].tolist() == [1, 2, 3, 4]


def test_empty_multidimensional_arrays_copy_nothing(sim):
    with asf.Device(0) as dev, dev.stream() as s, dev.malloc(64, fill=3) as m:
        m.copy_from(np.empty((0, 3), dtype="f4"))
        m.copy_from(np.empty((2, 0)), stream=s)
        m.copy_to(np.empty((0, 4)), nbytes=0)
        s.synchronize()
        assert m.to_bytes() == b"\x03" * 64


# -- item: timeouts ------------------------------------------------------------------------


def test_synchronize_inf_waits_forever(sim):
    with asf.Device(0) as dev, dev.stream() as s, dev.malloc(64) as m:
        sim.configure(async_delay=0.02)
        m.fill(5, stream=s)
        s.synchronize(timeout=math.inf)
        assert not s.busy
        assert m.to_bytes() == b"\x05" * 64


@pytest.mark.parametrize(
    ("timeout", "exc", "match"),
    [
        (1e30, ValueError, r"timeout must be >= 0 and at most 2147483\.647 seconds"),
        (float("nan"), ValueError, "got nan"),
        (-0.5, ValueError, ">= 0"),
        ("1", TypeError, "number of seconds"),
        (True, TypeError, "not bool"),
    ],
)
def test_bad_synchronize_timeouts(sim, timeout, exc, match):
    with asf.Device(0) as dev, dev.stream() as s:
        sim.reset_call_counts()
        with pytest.raises(exc, match=match):
            s.synchronize(timeout=timeout)
        assert sim.call_counts() == {}


def test_longest_finite_timeout_is_accepted(sim):
    with asf.Device(0) as dev, dev.stream() as s:
        s.synchronize(timeout=2147483.647)


@pytest.mark.parametrize(
    ("value", "exc"),
    [(float("nan"), ValueError), (1e300, ValueError), (0, ValueError), ("5", TypeError)],
)
def test_bad_fork_sync_timeouts(value, exc):
    before = asf.get_fork_policy()
    with pytest.raises(exc, match="sync_timeout"):
        asf.set_fork_policy("sync", sync_timeout=value)
    assert asf.get_fork_policy() == before


def test_fork_sync_timeout_inf_waits_as_long_as_it_takes(sim):
    import subprocess
    import sys

    from ascend_safe import fork

    before, policy = fork._settings.sync_timeout, asf.get_fork_policy()
    try:
        asf.set_fork_policy("sync", sync_timeout=math.inf)
        with asf.Device(0) as dev, dev.stream() as s, dev.malloc(64) as m:
            sim.configure(async_delay=0.05)
            m.fill(9, stream=s)
            subprocess.run([sys.executable, "-c", "pass"], check=True)  # drains first
            assert not s.busy
            assert m.to_bytes() == b"\x09" * 64
    finally:
        asf.set_fork_policy(policy, sync_timeout=before)


@pytest.mark.parametrize(
    ("value", "exc", "match"),
    [
        ("a", TypeError, "slot_timeout must be a number of seconds"),
        (float("nan"), ValueError, "slot_timeout must be >= 0"),
        (-1, ValueError, "slot_timeout must be >= 0"),
    ],
)
def test_bad_slot_timeouts(sim, value, exc, match):
    sim.reset_call_counts()
    with pytest.raises(exc, match=match):
        asf.Device(0, slot_timeout=value)
    assert sim.call_counts() == {}


def test_slot_timeout_inf_is_accepted(sim):
    with asf.Device(0, slot_timeout=math.inf) as dev:
        assert dev.id == 0


def test_mem_info_attribute_is_checked(sim):
    with asf.Device(0) as dev:
        sim.reset_call_counts()
        with pytest.raises(ValueError, match="memory attribute"):
            dev.mem_info(1 << 40)
        assert sim.call_counts() == {}

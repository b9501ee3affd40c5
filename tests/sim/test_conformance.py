"""Return shapes, argument parsing and documented error codes of the simulated pyacl."""

from __future__ import annotations

import ctypes
import types

import pytest

from ascend_safe import sim

ACL_SUCCESS = 0


def test_module_tree_is_pyacl_shaped(acl: types.ModuleType) -> None:
    assert acl.__name__ == "acl"
    for sub in ("rt", "media", "util", "mdl"):
        assert getattr(acl, sub).__name__ == f"acl.{sub}"
    exported = [n for n in dir(acl) + dir(acl.rt) if not n.startswith("_")]
    assert not [n for n in exported if n.isupper() or n.startswith("ACL")]


def test_install_and_uninstall() -> None:
    import sys

    module = sim.install()
    assert sim.install() is module
    import acl
    import acl.rt

    assert acl is module and acl.rt is module.rt
    assert sys.modules["acl.media"] is module.media
    sim.uninstall()
    assert "acl" not in sys.modules and "acl.rt" not in sys.modules


def test_calls_before_init_return_uninitialize_in_strict_mode(acl: types.ModuleType) -> None:
    sim.configure(strict=True)
    assert acl.rt.set_device(0) == 100001
    assert acl.rt.malloc(64, 0) == (0, 100001)
    assert acl.rt.get_run_mode() == (1, 0)
    assert acl.get_soc_name() == "Ascend910B4"
    assert acl.get_version() == (1, 17, 0, 0)
    assert acl.finalize() == 100037
    assert "acl.init" in acl.get_recent_err_msg()


def test_init_refcount_and_finalize(acl: types.ModuleType) -> None:
    assert acl.init() == 0
    assert sim.initialized()
    assert acl.init("") == 100002
    assert acl.finalize_reference() == (1, 0)
    assert sim.initialized()
    assert acl.finalize_reference() == (0, 0)
    assert not sim.initialized()
    assert acl.finalize_reference() == (0, 100037)
    assert acl.init() == 0
    assert acl.init() == 100002
    assert acl.finalize() == 0
    assert acl.finalize() == 100037


def test_init_config_path(acl: types.ModuleType, tmp_path: object) -> None:
    import pathlib

    base = pathlib.Path(str(tmp_path))
    assert acl.init(str(base / "missing.json")) == 100003
    bad = base / "bad.json"
    bad.write_text("{not json")
    assert acl.init(str(bad)) == 100006
    good = base / "good.json"
    good.write_text("{}")
    assert acl.init(str(good)) == 0
    assert acl.finalize() == 0


@pytest.mark.parametrize(
    ("path", "args"),
    [
        ("init", (None,)),
        ("init", (1,)),
        ("rt.set_device", ()),
        ("rt.set_device", (None,)),
        ("rt.set_device", (0.0,)),
        ("rt.set_device", ("0",)),
        ("rt.set_device", (1 << 40,)),
        ("rt.malloc", (64,)),
        ("rt.malloc", (64.0, 0)),
        ("rt.free", (None,)),
        ("rt.memcpy", (1, 2, 3, 4)),
        ("create_data_buffer", (0,)),
        ("media.dvpp_malloc", ("64",)),
    ],
)
def test_bad_arguments_raise_type_error(acl: types.ModuleType, path: str, args: tuple) -> None:
    fn: object = acl
    for part in path.split("."):
        fn = getattr(fn, part)
    with pytest.raises(TypeError, match=f"acl.{path} args parse failed"):
        fn(*args)  # type: ignore[operator]


def test_keyword_arguments_are_rejected(acl: types.ModuleType) -> None:
    with pytest.raises(TypeError):
        acl.rt.set_device(device_id=0)


def test_bool_is_accepted_as_int(device: types.ModuleType) -> None:
    acl = device
    ptr, ret = acl.rt.malloc(True, False)
    assert ret == 0 and ptr
    assert acl.rt.free(ptr) == 0


def test_negative_size_wraps_to_huge(device: types.ModuleType) -> None:
    # -1 wraps to 2**64 - 1 (format k); size + padding overflows size_t: 100000
    assert device.rt.malloc(-1, 0) == (0, 100000)
    assert device.rt.malloc(-(1 << 40), 0) == (0, 207001)  # huge but no overflow


def test_return_shapes(device: types.ModuleType) -> None:
    acl = device
    assert acl.rt.get_device() == (0, 0)
    assert acl.rt.get_device_count() == (2, 0)
    assert acl.rt.get_run_mode() == (1, 0)
    free, total, ret = acl.rt.get_mem_info(1)
    assert (free, total, ret) == (1 << 30, 1 << 30, 0)
    info, ret = acl.get_cann_version(0)
    assert ret == 0 and isinstance(info, dict) and "version" in info
    ctx, ret = acl.rt.get_context()
    assert ret == 0 and isinstance(ctx, int) and ctx
    assert acl.rt.synchronize_device() == 0


def test_documented_error_codes(device: types.ModuleType) -> None:
    acl = device
    assert acl.rt.malloc(0, 0) == (0, 100000)
    assert acl.rt.malloc_host(0) == (0, 100000)
    assert acl.rt.free(0) == 100000
    assert acl.rt.free_host(0) == 100000
    assert acl.rt.destroy_stream(0) == 100000
    assert acl.rt.destroy_event(0) == 100000
    assert acl.rt.destroy_context(0) == 100000
    assert acl.rt.set_context(0) == 100000
    assert acl.rt.set_device(7) == 107001
    assert acl.rt.get_mem_info(18) == (0, 0, 107016)
    assert acl.get_cann_version(8) == (None, 100000)
    assert acl.rt.malloc(2 << 30, 0) == (0, 207001)
    assert "out of device memory" in acl.get_recent_err_msg()
    assert acl.get_recent_err_msg() is None


def test_no_context_gives_context_null(acl: types.ModuleType) -> None:
    assert acl.init() == 0
    assert acl.rt.get_context() == (0, 107002)
    assert acl.rt.create_stream() == (0, 107002)
    assert acl.rt.malloc(64, 0) == (0, 107002)
    assert acl.rt.get_device() == (0, 107002)
    assert acl.finalize() == 0


def test_memory_sizes_budget_and_alignment(device: types.ModuleType) -> None:
    acl = device
    sim.configure(memory_per_device=1024)
    a, ret = acl.rt.malloc(1, 0)  # reserves 64
    assert ret == 0 and a % 64 == 0
    assert acl.rt.get_mem_info(1)[0] == 1024 - 64
    b, ret = acl.rt.malloc_align32(33, 0)  # reserves 64
    assert ret == 0
    assert acl.rt.get_mem_info(1)[0] == 1024 - 128
    assert acl.rt.malloc(1024 - 128 - 31, 0) == (0, 207001)
    c, ret = acl.media.dvpp_malloc(10)
    assert ret == 0 and c % 128 == 0
    assert not (a <= ctypes.c_uint64(c).value < a + 64)
    for ptr, free in ((a, acl.rt.free), (b, acl.rt.free), (c, acl.media.dvpp_free)):
        assert free(ptr) == 0
    assert acl.rt.get_mem_info(1)[0] == 1024


def test_fresh_memory_is_garbage(device: types.ModuleType) -> None:
    acl = device
    dev, _ = acl.rt.malloc(64, 0)
    host, _ = acl.rt.malloc_host(64)
    out = bytes(64)
    assert acl.rt.memcpy(acl.util.bytes_to_ptr(out), 64, dev, 64, 2) == 0
    assert out[:4] == b"\xde\xad\xbe\xef"
    assert ctypes.string_at(host, 4) == b"\xde\xad\xbe\xef"
    assert host % 64 == 0
    assert acl.rt.memset(dev, 64, 0x1FF, 64) == 0  # value masked to a byte
    assert acl.rt.memcpy(acl.util.bytes_to_ptr(out), 64, dev, 64, 2) == 0
    assert out == b"\xff" * 64
    assert acl.rt.memset(dev, 32, 0, 64) == 107000
    assert acl.rt.free(dev) == 0
    assert acl.rt.free_host(host) == 0


def test_memcpy_checks(device: types.ModuleType) -> None:
    acl = device
    dev, _ = acl.rt.malloc(64, 0)
    src = b"x" * 64
    p = acl.util.bytes_to_ptr(src)
    assert acl.rt.memcpy(0, 0, 0, 0, 99) == 0  # count 0: no-op before any check
    assert acl.rt.memcpy(0, 64, p, 64, 1) == 100000
    assert acl.rt.memcpy(dev, 32, p, 64, 1) == 107000
    assert acl.rt.memcpy(dev, 64, p, 64, 8) == 100000
    assert sim.violations() == []
    big = bytes(128)
    assert acl.rt.memcpy(dev, 128, acl.util.bytes_to_ptr(big), 97, 1) == 107000  # past 96
    assert [v.kind for v in sim.violations()] == ["out_of_bounds"]
    sim.clear_violations()
    # kind does not matter: the direction comes from the addresses
    assert acl.rt.memcpy(dev, 64, p, 64, 2) == 0
    out = bytes(64)
    assert acl.rt.memcpy(acl.util.bytes_to_ptr(out), 64, dev, 64, 0) == 0
    assert out == src
    assert acl.rt.free(dev) == 0


def test_memcpy_async_rules(device: types.ModuleType) -> None:
    acl = device
    dev, _ = acl.rt.malloc(128, 0)
    h1, _ = acl.rt.malloc_host(128)
    h2, _ = acl.rt.malloc_host(128)
    stream, _ = acl.rt.create_stream()
    sim.configure(strict=True)
    assert acl.rt.memcpy_async(dev + 1, 64, h1, 64, 1, stream) == 100000
    sim.configure(strict=False)
    assert acl.rt.memcpy_async(h2, 128, h1, 128, 0, stream) == 207000
    assert acl.rt.memcpy_async(dev, 128, h1, 128, 1, stream) == 0
    assert acl.rt.synchronize_stream_with_timeout(stream, -2) == 107000
    assert acl.rt.synchronize_stream_with_timeout(stream, -1) == 0
    for ret in (acl.rt.free(dev), acl.rt.free_host(h1), acl.rt.free_host(h2)):
        assert ret == 0
    assert acl.rt.destroy_stream(stream) == 0


def test_host_to_host_async_allowed_in_rc_mode(device: types.ModuleType) -> None:
    sim.configure(run_mode=0)
    acl = device
    h1, _ = acl.rt.malloc_host(64)
    h2, _ = acl.rt.malloc_host(64)
    ctypes.memset(h1, 7, 64)
    assert acl.rt.memcpy_async(h2, 64, h1, 64, 0, 0) == 0
    assert acl.rt.synchronize_stream(0) == 0
    assert ctypes.string_at(h2, 64) == b"\x07" * 64
    assert acl.rt.get_run_mode() == (0, 0)
    assert acl.rt.free_host(h1) == 0 and acl.rt.free_host(h2) == 0


def test_data_buffers(acl: types.ModuleType) -> None:
    buf = acl.create_data_buffer(0x1234, 100)  # works before init
    assert buf
    assert acl.get_data_buffer_addr(buf) == 0x1234
    assert acl.get_data_buffer_size(buf) == 100
    assert acl.get_data_buffer_size_v2(buf) == 100
    assert acl.update_data_buffer(buf, 0x5678, 7) == 0
    assert (acl.get_data_buffer_addr(buf), acl.get_data_buffer_size_v2(buf)) == (0x5678, 7)
    empty = acl.create_data_buffer(0, 0)
    assert empty
    assert sim.live_handles() == {"data_buffer": sorted([buf, empty])}
    assert acl.destroy_data_buffer(buf) == 0
    assert acl.destroy_data_buffer(empty) == 0
    assert acl.get_data_buffer_addr(buf) == 0
    assert acl.destroy_data_buffer(buf) == 100000
    kinds = [v.kind for v in sim.violations()]
    assert kinds == ["stale_handle", "double_free"]
    assert sim.live_handles() == {}


def test_util_helpers(acl: types.ModuleType) -> None:
    np = pytest.importorskip("numpy")
    data = b"hello world"
    ptr = acl.util.bytes_to_ptr(data)
    assert acl.util.ptr_to_bytes(ptr, len(data)) == data
    array = np.arange(6, dtype=np.float32)
    with pytest.warns(DeprecationWarning):
        aptr = acl.util.numpy_to_ptr(array)
    view = acl.util.ptr_to_numpy(aptr, (2, 3), 11)
    assert view.shape == (2, 3) and view[1, 2] == 5.0
    view[0, 0] = 42.0
    assert array[0] == 42.0  # no copy
    cptr, contiguous = acl.util.numpy_contiguous_to_ptr(array[::2])
    assert list(acl.util.ptr_to_numpy(cptr, (3,), 11)) == list(contiguous)
    with pytest.raises(ValueError):
        acl.util.bytes_to_ptr("text")
    with pytest.raises(ValueError):
        acl.util.ptr_to_bytes(1 << 48, 4)
    with pytest.raises(TypeError):
        acl.util.ptr_to_bytes(ptr)


def test_configure_validation() -> None:
    with pytest.raises(TypeError, match="no_such_option"):
        sim.configure(no_such_option=1)
    with pytest.raises(ValueError):
        sim.configure(device_count=0)
    with pytest.raises(ValueError):
        sim.configure(run_mode=2)
    with pytest.raises(ValueError):
        sim.configure(vm="yes")
    sim.configure(device_count=4, soc_name="Ascend310P3")
    acl = sim.acl_module()
    assert acl.get_soc_name() == "Ascend310P3"
    assert acl.init() == 0
    assert acl.rt.get_device_count() == (4, 0)
    assert acl.finalize() == 0


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASCEND_SAFE_SIM_DEVICE_COUNT", "5")
    monkeypatch.setenv("ASCEND_SAFE_SIM_VM", "true")
    sim.reset()
    acl = sim.acl_module()
    assert acl.init() == 0
    assert acl.rt.get_device_count() == (5, 0)
    assert acl.finalize() == 0
    monkeypatch.setenv("ASCEND_SAFE_SIM_DEVICE_COUNT", "many")
    with pytest.raises(ValueError, match="ASCEND_SAFE_SIM_DEVICE_COUNT"):
        sim.reset()
    monkeypatch.delenv("ASCEND_SAFE_SIM_DEVICE_COUNT")
    sim.reset()

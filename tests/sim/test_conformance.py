"""The simulated pyacl against the conformance kit's cases, plus what only the simulator has.

Every expectation about pyacl's behaviour (return shapes, error codes, argument parsing, async
semantics, events, memory, process rules) is a case of ``ascend_safe.conformance``, written once
with its evidence; :func:`test_kit_case` runs each of them here. The other tests check what is
specific to the simulator: its configuration, its violation records and its helpers.
"""

from __future__ import annotations

import ctypes
import types

import pytest

from ascend_safe import conformance, sim

#: Cases the simulator does not pass yet, each waiting for a simulator fix (pyACL's source is
#: the reference). Strict: when the fix lands the test turns red; remove the entry then.
PENDING_SIMULATOR_FIXES: dict[str, str] = {}

#: Cases about a property of the machine (the run mode) that the default simulated machine
#: lacks: the options of a simulated machine that has it (they are not applicable otherwise).
MACHINE_OPTIONS: dict[str, dict[str, object]] = {
    "util.ptr_to_bytes.device_memory_in_rc_mode": {"run_mode": 0},
    "util.ptr_to_numpy.device_memory_in_rc_mode": {"run_mode": 0},
    "rt.memcpy_async.rc_pageable_copied_at_call": {"run_mode": 0},
}


def _kit_params() -> list[object]:
    params: list[object] = []
    for case in conformance.cases():
        reason = PENDING_SIMULATOR_FIXES.get(case.id)
        marks = (
            []
            if reason is None
            else [pytest.mark.xfail(strict=True, reason=f"pending simulator fix: {reason}")]
        )
        params.append(pytest.param(case, id=case.id, marks=marks))
    return params


def test_pending_entries_name_real_cases() -> None:
    ids = {case.id for case in conformance.cases()}
    assert set(PENDING_SIMULATOR_FIXES) <= ids
    assert set(MACHINE_OPTIONS) <= ids


@pytest.fixture(scope="module")
def child_results(
    tmp_path_factory: pytest.TempPathFactory, sample_models: list[str]
) -> dict[str, conformance.Result]:
    """The cases that run in child processes, run once in one chain of children."""
    with pytest.MonkeyPatch.context() as patch:
        # Children read their simulator options from the environment: a small device (for
        # the exhaustion probe) and a 2-process limit (for the process-slot probe).
        patch.setenv("ASCEND_SAFE_SIM_STATE_DIR", str(tmp_path_factory.mktemp("sim-state")))
        patch.setenv("ASCEND_SAFE_SIM_MAX_PROCS_PER_DEVICE", "2")
        patch.setenv("ASCEND_SAFE_SIM_MEMORY_PER_DEVICE", str(64 << 20))
        patch.delenv("ASCEND_SAFE_SIM_RECORD_FILE", raising=False)
        results = conformance.run_in_children(
            [c for c in conformance.cases() if c.in_child], models=sample_models
        )
    return {r.case.id: r for r in results}


@pytest.mark.parametrize("case", _kit_params())
def test_kit_case(
    case: conformance.Case,
    acl: types.ModuleType,
    request: pytest.FixtureRequest,
    sample_models: list[str],
) -> None:
    """One kit case against the simulator: it passes, and leaves nothing allocated."""
    if case.in_child:
        result = request.getfixturevalue("child_results")[case.id]
    else:
        # Queued stream work takes a little time, so that work the simulator runs
        # asynchronously is still in flight when a case looks, as a DMA would be on hardware.
        sim.configure(async_delay=0.005, **MACHINE_OPTIONS.get(case.id, {}))
        # The case leaves what it found: its own cleanup ran before the kit's teardown.
        before: list[dict[str, list[int]]] = []
        after: list[dict[str, list[int]]] = []
        (result,) = conformance.run_inline(
            acl,
            [case],
            starting=lambda _: before.append(sim.live_handles()),
            report=lambda _: after.append(sim.live_handles()),
            models=sample_models,
        )
        assert after == before
    assert (result.status, result.observed, result.detail) == ("pass", case.expect, "")
    assert sim.live_handles() == {}
    assert not sim.initialized()


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


def test_default_configuration_values(device: types.ModuleType) -> None:
    """Values set by the simulator's default configuration (shapes are kit cases)."""
    acl = device
    assert acl.rt.get_device() == (0, 0)
    assert acl.rt.get_device_count() == (2, 0)
    assert acl.rt.get_run_mode() == (1, 0)
    assert acl.rt.get_mem_info(1) == (1 << 30, 1 << 30, 0)
    assert acl.get_cann_version(0)[0]["version"] == "9.0.0"


def test_out_of_budget_malloc_explains(device: types.ModuleType) -> None:
    acl = device
    assert acl.rt.malloc(2 << 30, 0) == (0, 207001)
    assert "out of device memory" in acl.get_recent_err_msg()
    assert acl.get_recent_err_msg() is None


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


def test_failure_dicts_are_fresh_objects(device: types.ModuleType) -> None:
    """pyACL builds a new dict for every call (PyDict_New): a failure's dict is not shared."""
    acl = device
    first, ret = acl.mdl.get_input_dims(0, 0)
    assert ret != 0 and first == {}
    first["name"] = "changed by the caller"
    assert acl.mdl.get_input_dims(0, 0)[0] == {}
    version, ret = acl.get_cann_version(99)
    assert ret == 100000
    version["version"] = "changed"
    assert acl.get_cann_version(99)[0]["version"] == ""

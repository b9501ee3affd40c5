"""Every violation kind is recorded, with the error code the simulator documents."""

from __future__ import annotations

import subprocess
import sys
import time
import types

import pytest

from ascend_safe import sim


def _kinds() -> list[str]:
    return [v.kind for v in sim.violations()]


def test_stale_and_double_destroy(device: types.ModuleType) -> None:
    acl = device
    stream, _ = acl.rt.create_stream()
    assert acl.rt.destroy_stream(stream) == 0
    assert acl.rt.synchronize_stream(stream) == 107017
    assert acl.rt.destroy_stream(stream) == 107017
    event, _ = acl.rt.create_event()
    assert acl.rt.destroy_event(event) == 0
    assert acl.rt.query_event(event) == (0, 107017)
    assert _kinds() == ["stale_handle", "double_free", "stale_handle"]
    violation = sim.violations()[0]
    assert violation.api == "rt.synchronize_stream" and hex(stream)[2:] in violation.detail


def test_foreign_handles_and_pointers(device: types.ModuleType) -> None:
    acl = device
    assert acl.rt.synchronize_stream(123456) == 107017
    assert acl.rt.free(123456) == 207002
    dev, _ = acl.rt.malloc(64, 0)
    assert acl.rt.memset(dev + (1 << 20), 64, 0, 64) == 107000  # device range, no allocation
    assert acl.rt.memset(0x100, 64, 0, 64) == 107000  # no valid host address
    host, _ = acl.rt.malloc_host(64)
    assert acl.rt.free(host) == 207002  # host memory is not rt.free's
    assert _kinds() == ["foreign_handle"] * 5
    assert acl.rt.free(dev) == 0 and acl.rt.free_host(host) == 0


def test_double_free_and_stale_pointer(device: types.ModuleType) -> None:
    acl = device
    dev, _ = acl.rt.malloc(64, 0)
    host, _ = acl.rt.malloc_host(64)
    dvpp, _ = acl.media.dvpp_malloc(64)
    assert acl.rt.free(dev) == 0
    assert acl.rt.free(dev) == 207002
    assert acl.rt.free_host(host) == 0
    assert acl.rt.free_host(host) == 207002
    assert acl.media.dvpp_free(dvpp) == 0
    assert acl.media.dvpp_free(dvpp) == 207002
    assert _kinds() == ["double_free"] * 3
    sim.clear_violations()
    assert acl.rt.memset(dev, 64, 0, 64) == 107000
    assert acl.rt.memset(host + 8, 8, 0, 8) == 107000
    assert _kinds() == ["stale_handle"] * 2


def test_free_with_pending_work(device: types.ModuleType) -> None:
    acl = device
    dev, _ = acl.rt.malloc(64, 0)
    host, _ = acl.rt.malloc_host(64)
    stream, _ = acl.rt.create_stream()
    with sim.hold_streams():
        assert acl.rt.memcpy_async(host, 64, dev, 64, 2, stream) == 0
        assert acl.rt.free(dev) == 0
    assert acl.rt.synchronize_stream(stream) == 0
    assert _kinds() == ["free_with_pending_work"]
    assert acl.rt.destroy_stream(stream) == 0
    assert acl.rt.free_host(host) == 0


def test_teardown_order(acl: types.ModuleType) -> None:
    assert acl.init() == 0
    assert acl.rt.set_device(0) == 0
    ctx, _ = acl.rt.create_context(0)
    _stream, _ = acl.rt.create_stream()
    assert acl.rt.destroy_context(ctx) == 0  # stream still live
    assert _kinds() == ["teardown_order"]
    assert "stream" not in sim.live_handles()
    assert acl.rt.set_device(0) == 0
    dev, _ = acl.rt.malloc(64, 0)
    assert acl.rt.reset_device(0) == 0
    assert acl.rt.reset_device(0) == 0  # refcount 0 with memory live
    assert _kinds() == ["teardown_order"] * 2
    assert sim.live_handles() == {}
    assert acl.rt.free(dev) == 207002  # released by the reset
    sim.clear_violations()
    assert acl.rt.set_device(1) == 0
    acl.create_data_buffer(0, 0)
    assert acl.finalize() == 0
    assert _kinds() == ["teardown_order"]
    assert sim.live_handles() == {}


def test_use_in_wrong_context_and_default_context(device: types.ModuleType) -> None:
    acl = device
    default_ctx, _ = acl.rt.get_context()
    assert acl.rt.destroy_context(default_ctx) == 107002
    stream, _ = acl.rt.create_stream()
    other, _ = acl.rt.create_context(0)
    assert acl.rt.destroy_stream(stream) == 107003
    assert acl.rt.set_context(default_ctx) == 0
    assert acl.rt.destroy_stream(stream) == 0
    assert acl.rt.destroy_context(other) == 0
    assert sim.violations() == []


def test_process_created_during_async(device: types.ModuleType) -> None:
    acl = device
    dev, _ = acl.rt.malloc(64, 0)
    host, _ = acl.rt.malloc_host(64)
    stream, _ = acl.rt.create_stream()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert _kinds() == []
    with sim.hold_streams():
        assert acl.rt.memcpy_async(host, 64, dev, 64, 2, stream) == 0
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert acl.rt.synchronize_stream(stream) == 0
    assert _kinds() == ["process_created_during_async"]
    assert sim.violations()[0].api == "subprocess.Popen"
    assert acl.rt.destroy_stream(stream) == 0
    assert acl.rt.free(dev) == 0 and acl.rt.free_host(host) == 0


def test_rc_malloc_blocks_until_freed(device: types.ModuleType) -> None:
    import threading

    sim.configure(run_mode=0, memory_per_device=256, rc_malloc_timeout=5.0)
    acl = device
    a, _ = acl.rt.malloc(200, 0)
    ctx, _ = acl.rt.get_context()
    got: list[tuple[int, int]] = []

    def second() -> None:
        acl.rt.set_context(ctx)
        got.append(acl.rt.malloc(200, 0))

    t = threading.Thread(target=second)
    t.start()
    time.sleep(0.1)
    assert got == []  # hangs like real RC mode
    assert acl.rt.free(a) == 0
    t.join(5)
    assert got and got[0][1] == 0
    assert acl.rt.free(got[0][0]) == 0
    sim.configure(rc_malloc_timeout=0.05)
    b, _ = acl.rt.malloc(200, 0)
    assert acl.rt.malloc(200, 0) == (0, 207001)
    assert _kinds() == ["rc_malloc_hang"]
    sim.configure(rc_malloc_blocks=False)
    assert acl.rt.malloc(200, 0) == (0, 207001)
    assert acl.rt.free(b) == 0


def test_hibernate(device: types.ModuleType) -> None:
    acl = device
    dev, _ = acl.rt.malloc(64, 0)
    stream, _ = acl.rt.create_stream()
    sim.hibernate()
    assert _kinds() == ["hibernate_with_active_device"]
    assert acl.rt.memset(dev, 64, 0, 64) == 207004
    assert acl.rt.synchronize_stream(stream) == 207004
    assert acl.rt.malloc(64, 0) == (0, 207004)
    assert _kinds()[1:] == ["use_after_device_lost"] * 3
    # cleanup still works, and after the reset the device is usable again
    assert acl.rt.destroy_stream(stream) == 0
    assert acl.rt.free(dev) == 0
    assert acl.rt.reset_device(0) == 0
    assert acl.rt.set_device(0) == 0
    ptr, ret = acl.rt.malloc(64, 0)
    assert ret == 0 and acl.rt.free(ptr) == 0
    sim.hibernate()
    assert _kinds().count("hibernate_with_active_device") == 2


def test_hibernate_without_device_loss(acl: types.ModuleType) -> None:
    sim.configure(lose_device_on_hibernate=False)
    sim.hibernate()
    assert _kinds() == []  # nothing set: nothing to report
    assert acl.init() == 0 and acl.rt.set_device(0) == 0
    sim.hibernate()
    ptr, ret = acl.rt.malloc(64, 0)
    assert ret == 0 and _kinds() == ["hibernate_with_active_device"]
    assert acl.rt.free(ptr) == 0
    assert acl.rt.reset_device(0) == 0 and acl.finalize() == 0


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_forked_child_call_is_recorded(acl: types.ModuleType, tmp_path: object) -> None:
    import os

    record = os.path.join(str(tmp_path), "violations.jsonl")
    sim.configure(record_file=record)
    assert acl.init() == 0
    pid = os.fork()
    if pid == 0:  # child: must not run pytest machinery
        code = 0
        try:
            if acl.rt.set_device(0) != 507899:
                code = 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    found = [v for v in sim.violations() if v.kind == "forked_child_call"]
    assert len(found) == 1 and found[0].pid == pid and found[0].api == "rt.set_device"
    assert acl.rt.set_device(0) == 0  # the parent is unaffected
    assert acl.rt.reset_device(0) == 0
    assert acl.finalize() == 0

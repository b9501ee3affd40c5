"""Fault injection, call counting, and thread safety."""

from __future__ import annotations

import ctypes
import threading
import types

import pytest

from ascend_safe import sim


def test_fault_has_no_side_effect_and_respects_after_times(device: types.ModuleType) -> None:
    acl = device
    sim.inject_fault("acl.rt.malloc", 207001, after=1, times=2)
    first, ret = acl.rt.malloc(64, 0)
    assert ret == 0
    assert acl.rt.malloc(64, 0) == (0, 207001)
    assert acl.rt.malloc(64, 0) == (0, 207001)
    third, ret = acl.rt.malloc(64, 0)
    assert ret == 0
    assert sorted(sim.live_handles()["device_memory"]) == sorted([first, third])
    assert "injected" in acl.get_recent_err_msg()
    sim.inject_fault("rt.free", 507899)
    assert acl.rt.free(first) == 507899
    assert first in sim.live_handles()["device_memory"]
    assert acl.rt.free(first) == 0 and acl.rt.free(third) == 0
    assert sim.call_counts()["rt.malloc"] == 4
    assert sim.call_counts()["rt.free"] == 3


def test_fault_shapes() -> None:
    acl = sim.acl_module()
    sim.inject_fault("init", 100000)
    assert acl.init() == 100000
    assert not sim.initialized()
    sim.inject_fault("create_data_buffer", 1)
    assert acl.create_data_buffer(1, 1) == 0
    assert sim.live_handles() == {}
    sim.inject_fault("get_soc_name", 1)
    assert acl.get_soc_name() is None
    sim.inject_fault("rt.get_mem_info", 507899)
    sim.inject_fault("rt.event_elapsed_time", 507899)
    assert acl.rt.get_mem_info(0) == (0, 0, 507899)
    assert acl.rt.event_elapsed_time(1, 2) == (0.0, 507899)
    sim.inject_fault("get_cann_version", 5)
    sim.clear_faults()
    assert acl.init() == 0
    _info, ret = acl.get_cann_version(0)
    assert ret == 0
    assert acl.finalize() == 0


def test_fault_validation() -> None:
    with pytest.raises(ValueError):
        sim.inject_fault("rt.no_such_call", 1)
    with pytest.raises(ValueError):
        sim.inject_fault("rt.malloc", 1, times=0)
    with pytest.raises(ValueError):
        sim.inject_fault("rt.malloc", 1, after=-1)
    with pytest.raises(ValueError):
        sim.inject_fault("util.bytes_to_ptr", 1)


def test_call_counts_reset(acl: types.ModuleType) -> None:
    acl.get_soc_name()
    acl.get_soc_name()
    assert sim.call_counts() == {"get_soc_name": 2}
    sim.reset_call_counts()
    assert sim.call_counts() == {}


def test_many_threads_malloc_copy_free(device: types.ModuleType) -> None:
    acl = device
    ctx, _ = acl.rt.get_context()
    errors: list[str] = []
    rounds = 40

    def work(index: int) -> None:
        if acl.rt.set_context(ctx) != 0:
            errors.append("set_context")
            return
        stream, ret = acl.rt.create_stream()
        host, ret2 = acl.rt.malloc_host(256)
        if ret or ret2:
            errors.append("create")
            return
        payload = bytes([index]) * 256
        for _ in range(rounds):
            dev, ret = acl.rt.malloc(256, 0)
            if ret:
                errors.append(f"malloc {ret}")
                continue
            rets = [
                acl.rt.memcpy(dev, 256, acl.util.bytes_to_ptr(payload), 256, 1),
                acl.rt.memcpy_async(host, 256, dev, 256, 2, stream),
                acl.rt.synchronize_stream(stream),
            ]
            if any(rets) or ctypes.string_at(host, 256) != payload:
                errors.append(f"copy {rets}")
            if acl.rt.free(dev):
                errors.append("free")
        if acl.rt.destroy_stream(stream) or acl.rt.free_host(host):
            errors.append("teardown")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sim.live_handles() == {"device": [0]}
    assert acl.rt.get_mem_info(1)[0] == 1 << 30
    assert sim.violations() == []
    assert sim.call_counts()["rt.malloc"] == 8 * rounds

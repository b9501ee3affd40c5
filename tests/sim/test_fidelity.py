"""Conformance with pyACL's source: one test per divergence the simulator used to have.

Each test names the behaviour of the source it checks (``hicann/runtime``: ``python/pyACL/`` for
argument formats, ``src/acl/aclrt_impl/`` and ``src/runtime/api/impl/`` for checks and codes).
"""

from __future__ import annotations

import ctypes
import os
import signal
import struct
import threading
import time
import types

import pytest

from ascend_safe import sim
from ascend_safe.sim import _config


def _kinds() -> list[str]:
    return [v.kind for v in sim.violations()]


def _details(kind: str) -> list[str]:
    return [v.detail for v in sim.violations() if v.kind == kind]


# ----------------------------------------------------------------------------- 1. init


def test_get_run_mode_before_init(acl: types.ModuleType) -> None:
    # acllite's helpers query the run mode at import time, before acl.init
    assert acl.rt.get_run_mode() == (1, 0)
    sim.configure(run_mode=0)
    assert acl.rt.get_run_mode() == (0, 0)
    assert sim.violations() == []


def test_calls_before_init_are_accepted_and_recorded(acl: types.ModuleType) -> None:
    # No runtime entry point checks acl.init; the docs say it must come first.
    assert acl.rt.set_device(0) == 0
    ptr, ret = acl.rt.malloc(64, 0)
    assert ret == 0 and ptr
    assert acl.rt.free(ptr) == 0
    assert acl.rt.reset_device(0) == 0
    assert set(_kinds()) == {"documented_restriction"}
    assert all("acl.init" in d for d in _details("documented_restriction"))
    assert sim.live_handles() == {}


def test_calls_before_init_fail_in_strict_mode(acl: types.ModuleType) -> None:
    sim.configure(strict=True)
    assert acl.rt.set_device(0) == 100001
    assert acl.rt.get_run_mode() == (1, 0)
    assert sim.violations() == []


def test_strict_option_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASCEND_SAFE_SIM_STRICT", "1")
    assert _config.from_env().strict is True
    sim.reset()
    acl = sim.acl_module()
    assert acl.rt.set_device(0) == 100001
    monkeypatch.setenv("ASCEND_SAFE_SIM_STRICT", "0")
    sim.reset()
    assert acl.rt.set_device(0) == 0
    assert acl.rt.reset_device(0) == 0
    sim.clear_violations()


# ----------------------------------------------------------------------------- 2. alignment


def test_memcpy_async_misaligned_is_accepted_and_recorded(device: types.ModuleType) -> None:
    acl = device
    dev, _ = acl.rt.malloc(256, 0)
    host, _ = acl.rt.malloc_host(256)
    ctypes.memset(host, 0x33, 256)
    assert acl.rt.memcpy_async(dev + 8, 128, host + 4, 128, 1, 0) == 0
    assert acl.rt.synchronize_stream(0) == 0
    out = bytes(128)
    assert acl.rt.memcpy(acl.util.bytes_to_ptr(out), 128, dev + 8, 128, 2) == 0
    assert out == b"\x33" * 128
    details = _details("documented_restriction")
    assert len(details) == 2 and all("64-byte aligned" in d for d in details)
    sim.clear_violations()
    assert acl.rt.free(dev) == 0 and acl.rt.free_host(host) == 0


def test_memcpy_async_misaligned_fails_in_strict_mode(device: types.ModuleType) -> None:
    acl = device
    sim.configure(strict=True)
    dev, _ = acl.rt.malloc(256, 0)
    host, _ = acl.rt.malloc_host(256)
    assert acl.rt.memcpy_async(dev + 8, 128, host, 128, 1, 0) == 100000
    assert "64-byte aligned" in acl.get_recent_err_msg()
    assert sim.violations() == []
    assert acl.rt.free(dev) == 0 and acl.rt.free_host(host) == 0


# ----------------------------------------------------------------------------- 3. pageable


def test_memcpy_async_from_pageable_host_memory_is_synchronous(device: types.ModuleType) -> None:
    acl = device
    sim.configure(async_delay=0.05)
    dev, _ = acl.rt.malloc(64, 0)
    stream, _ = acl.rt.create_stream()
    assert acl.rt.memset_async(dev, 64, 0xAB, 64, stream) == 0
    out = (ctypes.c_char * 128)()  # ordinary host memory, 64-byte aligned address inside
    address = (ctypes.addressof(out) + 63) // 64 * 64
    # the runtime synchronizes the stream (the memset lands first), then copies synchronously
    assert acl.rt.memcpy_async(address, 64, dev, 64, 2, stream) == 0
    assert ctypes.string_at(address, 64) == b"\xab" * 64
    assert acl.rt.stream_query(stream) == (0, 0)
    details = _details("documented_restriction")
    assert len(details) == 1 and "malloc_host" in details[0]
    sim.clear_violations()
    assert acl.rt.destroy_stream(stream) == 0
    assert acl.rt.free(dev) == 0


# ----------------------------------------------------------------------------- 4. contexts


def test_stream_of_another_context_is_refused(device: types.ModuleType) -> None:
    acl = device
    dev, _ = acl.rt.malloc(64, 0)
    host, _ = acl.rt.malloc_host(64)
    stream, _ = acl.rt.create_stream()  # in the default context
    event, _ = acl.rt.create_event_with_flag(0x1)
    other, _ = acl.rt.create_context(0)  # now current
    assert acl.rt.memcpy_async(dev, 64, host, 64, 1, stream) == 107003
    assert acl.rt.memset_async(dev, 64, 0, 64, stream) == 107003
    assert acl.rt.record_event(event, stream) == 107003
    assert acl.rt.reset_event(event, stream) == 107003
    assert acl.rt.stream_wait_event(stream, event) == 107003
    # synchronize_stream switches to the stream's context (api_impl.cc StreamSynchronize)
    assert acl.rt.synchronize_stream(stream) == 0
    assert acl.rt.stream_query(stream) == (0, 0)
    # the current context's default stream (handle 0) is always accepted
    assert acl.rt.memcpy_async(dev, 64, host, 64, 1, 0) == 0
    assert acl.rt.synchronize_stream(0) == 0
    assert acl.rt.destroy_context(other) == 0
    assert acl.rt.set_device(0) == 0  # back to the default context
    assert acl.rt.memcpy_async(dev, 64, host, 64, 1, stream) == 0
    assert acl.rt.synchronize_stream(stream) == 0
    for ret in (
        acl.rt.destroy_event(event),
        acl.rt.destroy_stream(stream),
        acl.rt.free(dev),
        acl.rt.free_host(host),
        acl.rt.reset_device(0),
    ):
        assert ret == 0
    assert sim.violations() == []


# ----------------------------------------------------------------------------- 5. timeouts


def test_synchronize_timeout_zero_is_invalid(device: types.ModuleType) -> None:
    acl = device
    stream, _ = acl.rt.create_stream()
    event, _ = acl.rt.create_event()
    for ms in (0, -2):
        assert acl.rt.synchronize_stream_with_timeout(stream, ms) == 107000
        assert acl.rt.synchronize_event_with_timeout(event, ms) == 107000
        assert acl.rt.synchronize_device_with_timeout(ms) == 107000
    assert acl.rt.synchronize_stream_with_timeout(stream, -1) == 0
    assert acl.rt.synchronize_event_with_timeout(event, 10) == 0
    assert acl.rt.synchronize_device_with_timeout(10) == 0
    assert acl.rt.destroy_event(event) == 0 and acl.rt.destroy_stream(stream) == 0


# ----------------------------------------------------------------------------- 6. reset


def test_reset_device_at_refcount_zero(device: types.ModuleType) -> None:
    acl = device
    assert acl.rt.reset_device(1) == 507007
    assert acl.rt.reset_device_force(1) == 507007
    assert acl.rt.reset_device(0) == 0
    assert acl.rt.reset_device(0) == 507007
    assert "has not been set" in acl.get_recent_err_msg()
    assert sim.violations() == []


# ----------------------------------------------------------------------------- 7. bounds


def test_padding_is_usable_and_recorded(device: types.ModuleType) -> None:
    acl = device
    dev, _ = acl.rt.malloc(100, 0)  # reserved: 128 + 32 = 160 bytes
    data = bytes(range(160))
    src = acl.util.bytes_to_ptr(data)
    assert acl.rt.memcpy(dev, 160, src, 128, 1) == 0
    assert _kinds() == ["documented_restriction"]
    assert "requested" in sim.violations()[0].detail
    sim.clear_violations()
    assert acl.rt.memcpy(dev, 160, src, 160, 1) == 0  # the whole padded extent
    sim.clear_violations()
    assert acl.rt.memcpy(dev, 161, src, 161, 1) == 107000  # past the extent
    assert _kinds() == ["out_of_bounds"]
    sim.clear_violations()
    aligned, _ = acl.rt.malloc_align32(100, 0)  # reserved: 128 bytes, no +32
    assert acl.rt.memset(aligned, 128, 0, 128) == 0
    sim.clear_violations()
    assert acl.rt.memset(aligned, 129, 0, 129) == 107000
    assert _kinds() == ["out_of_bounds"]
    sim.clear_violations()
    host, _ = acl.rt.malloc_host(100)  # HostMalloc rounds to 32 only: 128 bytes
    assert acl.rt.memcpy(host, 128, src, 128, 0) == 0
    assert _kinds() == ["documented_restriction"]
    sim.clear_violations()
    assert acl.rt.memcpy(host, 129, src, 129, 0) == 107000
    assert _kinds() == ["out_of_bounds"]
    sim.clear_violations()
    assert acl.rt.free_host(host) == 0
    sim.configure(strict=True)
    assert acl.rt.memcpy(dev, 160, src, 128, 1) == 107000
    assert sim.violations() == []
    assert acl.rt.free(dev) == 0 and acl.rt.free(aligned) == 0


# ----------------------------------------------------------------------------- 8. codes


def test_error_codes_per_source(device: types.ModuleType) -> None:
    acl = device
    dev, _ = acl.rt.malloc(64, 0)
    host, _ = acl.rt.malloc_host(64)
    assert acl.rt.memcpy(dev, 32, host, 64, 1) == 107000
    assert acl.rt.memcpy_async(dev, 32, host, 64, 1, 0) == 107000
    assert acl.rt.memset(dev, 32, 0, 64) == 107000
    assert acl.rt.memset_async(dev, 32, 0, 64, 0) == 107000
    assert acl.rt.get_mem_info(18) == (0, 0, 107016)
    default_ctx, _ = acl.rt.get_context()
    assert acl.rt.destroy_context(default_ctx) == 107002
    start, _ = acl.rt.create_event()
    end, _ = acl.rt.create_event()
    assert acl.rt.event_elapsed_time(start, end) == (0.0, 507000)
    assert acl.rt.malloc(-1, 0) == (0, 100000)  # 2**64-1 + padding overflows size_t
    assert acl.rt.malloc_align32((1 << 64) - 16, 0) == (0, 100000)
    for ret in (
        acl.rt.destroy_event(start),
        acl.rt.destroy_event(end),
        acl.rt.free(dev),
        acl.rt.free_host(host),
    ):
        assert ret == 0
    assert sim.violations() == []


def test_invalid_context_codes_per_source(device: types.ModuleType) -> None:
    acl = device
    ctx, _ = acl.rt.create_context(0)
    assert acl.rt.destroy_context(ctx) == 0
    # api_impl.cc ContextDestroy: an invalid context -> RT_ERROR_CONTEXT_NULL (107002)
    assert acl.rt.destroy_context(ctx) == 107002
    # api_error.cc ContextSetCurrent: an invalid context -> RT_ERROR_INVALID_VALUE (107000)
    assert acl.rt.set_context(ctx) == 107000
    assert _kinds() == ["double_free", "stale_handle"]
    sim.clear_violations()


# ----------------------------------------------------------------------------- 9. parsing


class _Index:
    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


def test_integer_arguments_follow_their_format_letter(device: types.ModuleType) -> None:
    np = pytest.importorskip("numpy")
    acl = device
    # "i" (device ids, policies, kinds, timeouts) takes anything with __index__
    assert acl.rt.set_device(np.int32(0)) == 0
    assert acl.rt.set_device(_Index(0)) == 0
    ptr, ret = acl.rt.malloc(64, np.int64(0))
    assert ret == 0
    # "k" (sizes, pointers, handles) takes only int: numpy integers are refused
    with pytest.raises(TypeError, match=r"acl\.rt\.malloc args parse failed"):
        acl.rt.malloc(np.uint64(64), 0)
    with pytest.raises(TypeError, match=r"acl\.rt\.free args parse failed"):
        acl.rt.free(np.uint64(ptr))
    # "i" range-checks: OverflowError becomes pyacl's TypeError
    with pytest.raises(TypeError, match=r"acl\.rt\.set_device args parse failed"):
        acl.rt.set_device(1 << 31)
    with pytest.raises(TypeError, match="args parse failed"):
        acl.rt.set_device(0.0)
    # "I" (create_event_with_flag, get_cann_version) masks to 32 bits and takes __index__
    event, ret = acl.rt.create_event_with_flag(np.uint32(1))
    assert ret == 0
    wrapped, ret = acl.rt.create_event_with_flag((1 << 32) + 1)  # wraps to flag 1 (SYNC)
    assert ret == 0
    assert acl.rt.reset_event(wrapped, 0) == 0
    assert acl.get_cann_version(np.uint8(0))[1] == 0
    # create_stream_with_config parses "ii"
    stream, ret = acl.rt.create_stream_with_config(np.int32(0), _Index(0))
    assert ret == 0
    with pytest.raises(TypeError, match="args parse failed"):
        acl.rt.create_stream_with_config(0, 1 << 40)
    for r in (
        acl.rt.destroy_stream(stream),
        acl.rt.synchronize_stream(0),
        acl.rt.destroy_event(event),
        acl.rt.destroy_event(wrapped),
        acl.rt.free(ptr),
        acl.rt.reset_device(0),
        acl.rt.reset_device(0),
    ):
        assert r == 0
    assert sim.violations() == []


# ----------------------------------------------------------------------------- 11. details


def test_get_mem_info_reports_ddr_and_hbm_separately(device: types.ModuleType) -> None:
    acl = device
    total = 1 << 30
    assert acl.rt.get_mem_info(1) == (total, total, 0)  # ACL_HBM_MEM
    assert acl.rt.get_mem_info(0) == (0, 0, 0)  # ACL_DDR_MEM: none on an Ascend910B
    assert acl.rt.get_mem_info(12) == (total, total, 0)  # ACL_MEM_NORMAL
    sim.configure(soc_name="Ascend310P3")
    assert acl.rt.get_mem_info(0) == (total, total, 0)
    assert acl.rt.get_mem_info(1) == (0, 0, 0)


def test_ptr_to_bytes_reads_device_memory_in_rc_mode(device: types.ModuleType) -> None:
    acl = device
    sim.configure(run_mode=0)
    dev, _ = acl.rt.malloc(64, 0)
    assert acl.rt.memset(dev, 64, 0x42, 64) == 0
    assert acl.util.ptr_to_bytes(dev, 64) == b"\x42" * 64
    np = pytest.importorskip("numpy")
    sim.configure(run_mode=0)
    assert list(acl.util.ptr_to_numpy(dev, (4,), 2)) == [0x42] * 4  # NPY_UBYTE
    sim.configure(run_mode=1)
    with pytest.raises(ValueError):
        acl.util.ptr_to_bytes(dev, 64)
    with pytest.raises(ValueError):
        acl.util.ptr_to_numpy(dev, (4,), 2)
    assert np is not None
    assert acl.rt.free(dev) == 0


def test_ptr_to_bytes_of_null_returns_unset_bytes(acl: types.ModuleType) -> None:
    # util/bytes_convert.cpp: PyBytes_FromStringAndSize(NULL, size) makes a new bytes object
    assert len(acl.util.ptr_to_bytes(0, 16)) == 16
    assert _kinds() == ["foreign_handle"]
    sim.clear_violations()


def test_elapsed_time_is_a_c_float(device: types.ModuleType) -> None:
    acl = device
    start, _ = acl.rt.create_event()
    end, _ = acl.rt.create_event()
    assert acl.rt.record_event(start, 0) == 0
    time.sleep(0.0123)
    assert acl.rt.record_event(end, 0) == 0
    assert acl.rt.synchronize_event(end) == 0
    ms, ret = acl.rt.event_elapsed_time(start, end)
    assert ret == 0 and ms > 10.0
    assert struct.unpack("f", struct.pack("f", ms))[0] == ms
    assert acl.rt.destroy_event(start) == 0 and acl.rt.destroy_event(end) == 0


def test_free_with_pending_copy_races_instead_of_cancelling(device: types.ModuleType) -> None:
    acl = device
    dev, _ = acl.rt.malloc(64, 0)
    host, _ = acl.rt.malloc_host(64)
    assert acl.rt.memset(dev, 64, 0x5A, 64) == 0
    with sim.hold_streams():
        assert acl.rt.memcpy_async(host, 64, dev, 64, 2, 0) == 0
        assert acl.rt.free(dev) == 0
        assert _kinds() == ["free_with_pending_work"]
    assert acl.rt.synchronize_stream(0) == 0
    # the copy ran against the released block (on hardware it races whatever reuses it)
    assert ctypes.string_at(host, 64) == b"\x5a" * 64
    assert sim.live_handles() == {"device": [0], "host_memory": [host]}
    sim.clear_violations()
    assert acl.rt.free_host(host) == 0


# ----------------------------------------------------------------------------- interrupts


def _raise_interrupt(signum: int, frame: types.FrameType | None) -> None:
    """KeyboardInterrupt for a signal that arrived inside the simulator (deferred to the call's
    return); a signal arriving in the test's own code is ignored, so none escapes the test."""
    inside = os.sep + os.path.join("ascend_safe", "sim")
    if frame is not None and inside in frame.f_code.co_filename:
        raise KeyboardInterrupt


needs_itimer = pytest.mark.skipif(
    not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread(),
    reason="needs setitimer on the main thread",
)


@needs_itimer
def test_keyboard_interrupt_lands_after_the_call(device: types.ModuleType) -> None:
    acl = device
    sim.configure(call_latency=0.05)
    old = signal.signal(signal.SIGALRM, _raise_interrupt)
    try:
        assert signal.getsignal(signal.SIGALRM) is _raise_interrupt
        signal.setitimer(signal.ITIMER_REAL, 0.01)
        with pytest.raises(KeyboardInterrupt):
            acl.rt.malloc(64, 0)  # the alarm fires during the call; the call completes
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    sim.configure(call_latency=0.0)
    (ptr,) = sim.live_handles()["device_memory"]
    assert acl.rt.free(ptr) == 0


@needs_itimer
def test_interrupt_storm_leaves_the_simulator_consistent(device: types.ModuleType) -> None:
    acl = device
    stream, _ = acl.rt.create_stream()
    host, _ = acl.rt.malloc_host(4096)
    interrupts = 0
    old = signal.signal(signal.SIGALRM, _raise_interrupt)
    deadline = time.monotonic() + 1.0
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
        while time.monotonic() < deadline:
            try:
                ptr, ret = acl.rt.malloc(4096, 0)
                assert ret == 0
                assert acl.rt.memcpy_async(ptr, 4096, host, 4096, 1, stream) == 0
                assert acl.rt.synchronize_stream(stream) == 0
                assert acl.rt.free(ptr) == 0
            except KeyboardInterrupt:
                interrupts += 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert interrupts > 0
    # no lock left held: the stream drains and the simulator answers from another thread
    answered: list[int] = []
    worker = threading.Thread(target=lambda: answered.append(acl.rt.synchronize_stream(stream)))
    worker.start()
    worker.join(5.0)
    assert answered == [0]
    assert acl.rt.synchronize_stream(stream) == 0
    sim.clear_violations()  # interrupted loops may free with copies queued
    for ptr in sim.live_handles().get("device_memory", []):
        assert acl.rt.free(ptr) == 0
    assert acl.rt.free_host(host) == 0
    assert acl.rt.destroy_stream(stream) == 0
    assert sim.live_handles() == {"device": [0]}
    assert sim.violations() == []


_EARLY_HANDLER_PROGRAM = r"""
import signal, sys

def handler(signum, frame):
    raise KeyboardInterrupt

signal.signal(signal.SIGALRM, handler)  # installed before the simulator exists

from ascend_safe import sim

acl = sim.install()
assert signal.getsignal(signal.SIGALRM) is handler
import acl

assert acl.init() == 0 and acl.rt.set_device(0) == 0
sim.configure(call_latency=0.05)
signal.setitimer(signal.ITIMER_REAL, 0.01)
try:
    acl.rt.malloc(64, 0)
except KeyboardInterrupt:
    pass
else:
    sys.exit("no KeyboardInterrupt")
sim.configure(call_latency=0.0)
(ptr,) = sim.live_handles()["device_memory"]  # the call completed before the interrupt
assert acl.rt.free(ptr) == 0 and acl.rt.reset_device(0) == 0 and acl.finalize() == 0
print("ok")
"""


@needs_itimer
def test_handlers_installed_before_the_simulator_are_deferred() -> None:
    import subprocess
    import sys

    env = dict(os.environ, ASCEND_SAFE_BACKEND="sim")
    done = subprocess.run(
        [sys.executable, "-c", _EARLY_HANDLER_PROGRAM],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_sample_style_program_runs_unchanged(acl: types.ModuleType) -> None:
    # the call sequence of the official samples' helpers (written here, not copied)
    run_mode, ret = acl.rt.get_run_mode()  # queried at import time, before acl.init
    assert (run_mode, ret) == (1, 0)
    assert acl.init() == 0
    assert acl.rt.set_device(0) == 0
    context, ret = acl.rt.create_context(0)
    assert ret == 0
    stream, ret = acl.rt.create_stream()
    assert ret == 0
    data = bytes(range(256)) * 4
    size = len(data)
    dev, ret = acl.rt.malloc(size, 0)
    assert ret == 0
    # host-to-device from a bytes object (pageable memory), as the samples do
    kind = 1 if run_mode == 1 else 0
    assert acl.rt.memcpy_async(dev, size, acl.util.bytes_to_ptr(data), size, kind, stream) == 0
    assert acl.rt.synchronize_stream(stream) == 0
    host, ret = acl.rt.malloc_host(size)
    assert ret == 0
    assert acl.rt.memcpy(host, size, dev, size, 2) == 0
    assert acl.util.ptr_to_bytes(host, size) == data
    for ret in (
        acl.rt.free_host(host),
        acl.rt.free(dev),
        acl.rt.destroy_stream(stream),
        acl.rt.destroy_context(context),
        acl.rt.reset_device(0),
        acl.finalize(),
    ):
        assert ret == 0
    assert sim.live_handles() == {}
    # only the documented (not enforced) rules the pageable copy breaks are recorded: pinned
    # memory, and 64-byte alignment when the bytes object's buffer happens not to be aligned
    assert set(_kinds()) == {"documented_restriction"}
    details = _details("documented_restriction")
    assert any("malloc_host" in d for d in details)
    assert all("malloc_host" in d or "64-byte aligned" in d for d in details)

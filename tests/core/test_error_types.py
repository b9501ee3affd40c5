"""Library error types for user mistakes and timeouts: an incomplete event is named, and every
wait that runs out of time is a ``TimeoutError``."""

from __future__ import annotations

import pickle

import pytest

import ascend_safe as asf


def test_elapsed_time_before_the_end_event_completed_names_it(ascend_sim):
    with asf.Device(0) as dev, dev.stream() as s:
        start, end = dev.event(), dev.event()
        start.record(s)
        start.synchronize()
        with ascend_sim.hold_streams():
            end.record(s)
            with pytest.raises(asf.EventNotCompleteError) as info:
                start.elapsed_time(end)
        err = info.value
        assert isinstance(err, asf.AsyncOperationsPendingError)
        assert isinstance(err.__cause__, asf.AclError) and err.__cause__.code == 507006
        text = str(err)
        assert f"the end event {end!r}" in text and "synchronize()" in text
        assert "start event" not in text  # the start event had completed
        end.synchronize()
        assert start.elapsed_time(end) >= 0.0


def test_stream_synchronize_timeout_is_a_timeout_error(ascend_sim):
    with asf.Device(0) as dev, dev.stream() as s, dev.malloc(64) as mem:
        with ascend_sim.hold_streams():
            mem.copy_from(b"\x01" * 64, stream=s)
            for timeout in (0.05, 0):
                with pytest.raises(TimeoutError) as info:
                    s.synchronize(timeout=timeout)
                assert isinstance(info.value, asf.AclTimeoutError)
                assert info.value.code == 507046
        s.synchronize()


@pytest.mark.parametrize("code", [507046, 507047])
def test_sync_timeout_codes_build_timeout_errors_that_pickle(code):
    err = asf.errors.make_acl_error(code, "acl.rt.synchronize_event_with_timeout")
    assert isinstance(err, TimeoutError) and isinstance(err, asf.AclInternalError)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is asf.AclTimeoutError and str(back) == str(err)
    assert not isinstance(asf.errors.make_acl_error(507006, "acl.x"), TimeoutError)


def test_oom_wait_that_runs_out_is_a_timeout_error(ascend_sim):
    with asf.Device(0) as dev:
        total = dev.memory_info()[1] if hasattr(dev, "memory_info") else None
        asf.set_oom_policy("wait", timeout=0.2, device=dev)
        try:
            size = total if total else 1 << 40
            with pytest.raises(asf.MemoryWaitTimeoutError) as info:
                dev.malloc(size)
            assert isinstance(info.value, TimeoutError)
            assert isinstance(info.value, asf.OutOfDeviceMemoryError)
            asf.set_oom_policy("raise", device=dev)
            with pytest.raises(asf.OutOfDeviceMemoryError) as refused:
                dev.malloc(size)
            assert not isinstance(refused.value, TimeoutError)
        finally:
            asf.set_oom_policy(None, device=dev)

"""Devices take a process slot: limit+1 processes get ProcessLimitError, a killed holder's slot
is reused, and a forked child does not keep its parent's slot."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import warnings

import pytest

import ascend_safe as asf

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="flock slots are POSIX")

HOLDER = textwrap.dedent(
    """
    import os, sys
    os.environ["ASCEND_SAFE_BACKEND"] = "sim"
    import ascend_safe as asf
    dev = asf.Device(0)
    print("ready", flush=True)
    sys.stdin.read()
    dev.close()
    """
)


@pytest.fixture
def slot_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ASCEND_SAFE_SLOT_DIR", str(tmp_path / "slots"))
    monkeypatch.setenv("ASCEND_SAFE_MAX_PROCS", "2")
    return dict(os.environ)


def _holder(env):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_limit_plus_one_process_is_refused(sim, slot_env):
    holders = [_holder(slot_env), _holder(slot_env)]
    try:
        with pytest.raises(asf.ProcessLimitError) as info:
            asf.Device(0)
        err = info.value
        assert err.device == 0 and err.limit == 2
        assert set(err.holders) == {p.pid for p in holders}
        assert "device 0" in str(err)
        assert sim.live_handles() == {}  # refused before pyacl was asked for the device
        with asf.Device(1) as dev:  # other devices have their own slots
            assert dev.id == 1
        holders[0].send_signal(signal.SIGKILL)
        holders[0].wait(10)
        with asf.Device(0) as dev, asf.Device(0) as again:  # one slot serves both sessions
            assert dev.id == again.id == 0
    finally:
        for p in holders:
            if p.poll() is None:
                p.stdin.close()
                p.wait(10)
            else:
                p.stdin.close()
            p.stdout.close()


def test_waiting_for_a_slot(sim, slot_env):
    holders = [_holder(slot_env), _holder(slot_env)]
    try:
        with pytest.raises(asf.ProcessLimitError) as at_once:
            asf.Device(0)
        assert not isinstance(at_once.value, TimeoutError)  # no wait asked for: not a timeout
        with pytest.raises(asf.SlotWaitTimeoutError) as waited:
            asf.Device(0, slot_timeout=0.2)
        assert isinstance(waited.value, TimeoutError)
        assert isinstance(waited.value, asf.ProcessLimitError) and waited.value.device == 0
        back = pickle.loads(pickle.dumps(waited.value))
        assert type(back) is asf.SlotWaitTimeoutError and back.holders == waited.value.holders
        holders[1].stdin.close()  # the holder closes its device and exits
        with asf.Device(0, slot_timeout=10) as dev:
            assert not dev.closed
    finally:
        for p in holders:
            if not p.stdin.closed:
                p.stdin.close()
            p.wait(10)
            p.stdout.close()


def test_forked_child_does_not_keep_the_parent_slot(sim, slot_env):
    dev = asf.Device(0)
    r, w = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child lingers while the parent gives its slot back
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    os.close(r)
    try:
        dev.close()
        holders = [_holder(slot_env), _holder(slot_env)]  # both slots are free again
        for p in holders:
            p.stdin.close()
            p.wait(10)
            p.stdout.close()
    finally:
        os.write(w, b"x")
        os.close(w)
        os.waitpid(pid, 0)

"""Creating processes while async copies are in flight, under each policy, with real stdlib
launchers; the simulator's record is the judge."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import warnings

import pytest

import ascend_safe as asf

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux process model")

DELAY = 0.15
SIZE = 1 << 12


def _touch_with_system(marker):
    assert os.system(f"touch {marker}") == 0


def _touch_with_subprocess(marker):
    subprocess.run(["touch", str(marker)], check=True)


def _touch_with_posix_spawn(marker):
    pid = os.posix_spawnp("touch", ["touch", str(marker)], os.environ)
    os.waitpid(pid, 0)


def _touch_with_popen(marker):
    with os.popen(f"touch {marker}") as pipe:
        pipe.read()


def _touch_with_fork(marker):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
        pid = os.fork()
    if pid == 0:
        os.close(os.open(str(marker), os.O_CREAT | os.O_WRONLY))
        os._exit(0)
    os.waitpid(pid, 0)


def _touch_with_multiprocessing(method):
    def launch(marker):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            proc = multiprocessing.get_context(method).Process(target=os.mkdir, args=(str(marker),))
            proc.start()
        proc.join(30)
        assert proc.exitcode == 0

    return launch


LAUNCHERS = {
    "os.system": _touch_with_system,
    "subprocess.run": _touch_with_subprocess,
    "os.posix_spawnp": _touch_with_posix_spawn,
    "os.popen": _touch_with_popen,
    "os.fork": _touch_with_fork,
    "multiprocessing-fork": _touch_with_multiprocessing("fork"),
    "multiprocessing-spawn": _touch_with_multiprocessing("spawn"),
}


def _in_flight(dev, stream):
    """Queue a fill and a copy back to host that take a while to complete."""
    mem = dev.malloc(SIZE)
    out = bytearray(SIZE)
    mem.fill(0x3C, stream=stream)
    mem.copy_to(out, stream=stream)
    assert stream.busy
    return mem, out


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
@pytest.mark.parametrize("policy", ["sync", "raise", "warn", "off"])
def test_process_creation_with_async_work_in_flight(sim, tmp_path, launcher, policy):
    asf.set_fork_policy(policy)
    marker = tmp_path / "child-ran"
    launch = LAUNCHERS[launcher]
    with asf.Device(0) as dev, dev.stream() as stream:
        if policy == "sync":  # slow work that the guard must wait for
            sim.configure(async_delay=DELAY)
            mem, out = _in_flight(dev, stream)
            launch(marker)
            assert marker.exists()
        else:
            with sim.hold_streams():  # the work stays in flight, however slow the machine
                mem, out = _in_flight(dev, stream)
                if policy == "raise":
                    with pytest.raises(asf.AsyncOperationsPendingError, match="in flight"):
                        launch(marker)
                    assert not marker.exists()  # no process was created
                elif policy == "warn":
                    with pytest.warns(RuntimeWarning, match="in flight"):
                        launch(marker)
                    assert marker.exists()
                else:
                    launch(marker)
                    assert marker.exists()
        stream.synchronize()
        assert out == b"\x3c" * SIZE
        mem.close()
    kinds = [v.kind for v in sim.violations()]
    if policy in ("sync", "raise"):
        assert kinds == []
    else:  # the simulator sees what the guard let through: proof the test can fail
        assert "process_created_during_async" in kinds
        sim.clear_violations()


def test_no_work_in_flight_means_no_interference(sim, tmp_path):
    asf.set_fork_policy("raise")
    with asf.Device(0) as dev, dev.stream() as stream, dev.malloc(64) as mem:
        mem.fill(1, stream=stream)
        stream.synchronize()
        assert not stream.busy
        subprocess.run(["true"], check=True)
        assert os.system("true") == 0


def test_policy_from_api_and_validation():
    assert asf.get_fork_policy() == "sync"
    asf.set_fork_policy("warn")
    assert asf.get_fork_policy() == "warn"
    with pytest.raises(ValueError, match="sync, raise, warn, off"):
        asf.set_fork_policy("sometimes")
    with pytest.raises(ValueError):
        asf.set_fork_policy("sync", sync_timeout=0)


def test_policy_from_environment(tmp_path):
    code = (
        "import ascend_safe as asf; print(asf.get_fork_policy())"
    )
    env = dict(os.environ, ASCEND_SAFE_FORK_POLICY="raise")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "raise"


def test_sync_policy_gives_up_after_its_timeout(sim, tmp_path):
    asf.set_fork_policy("sync", sync_timeout=0.2)
    marker = tmp_path / "child-ran"
    with asf.Device(0) as dev, dev.stream() as stream:
        with sim.hold_streams():
            mem, out = _in_flight(dev, stream)
            with pytest.raises(asf.AsyncOperationsPendingError, match="could not drain"):
                _touch_with_subprocess(marker)
            assert not marker.exists()
        stream.synchronize()
        assert out == b"\x3c" * SIZE
        mem.close()
    asf.set_fork_policy("sync", sync_timeout=30)

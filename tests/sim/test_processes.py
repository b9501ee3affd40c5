"""The per-device process limit holds across real processes and survives a SIGKILLed holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import types
from pathlib import Path

import pytest

from ascend_safe import sim

_HOLDER = """
import sys
from ascend_safe import sim
acl = sim.install()
import acl
assert acl.init() == 0
print(acl.rt.set_device(0), flush=True)
sys.stdin.readline()
"""


def _spawn(state_dir: Path, limit: int = 2) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["ASCEND_SAFE_SIM_MAX_PROCS_PER_DEVICE"] = str(limit)
    env["ASCEND_SAFE_SIM_STATE_DIR"] = str(state_dir)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen(
        [sys.executable, "-c", _HOLDER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def _ret(proc: subprocess.Popen[str]) -> int:
    assert proc.stdout is not None
    return int(proc.stdout.readline())


def test_process_limit_across_processes(tmp_path: Path) -> None:
    holders = [_spawn(tmp_path), _spawn(tmp_path)]
    try:
        assert [_ret(p) for p in holders] == [0, 0]
        third = _spawn(tmp_path)
        holders.append(third)
        assert _ret(third) == 207012
        # this process is limited too
        sim.configure(max_procs_per_device=2, state_dir=str(tmp_path))
        acl = sim.acl_module()
        assert acl.init() == 0
        assert acl.rt.set_device(0) == 207012
        assert acl.rt.set_device(1) == 0  # other device, other slots
        # a SIGKILLed holder's slot is freed by the kernel
        os.kill(holders[0].pid, signal.SIGKILL)
        holders[0].wait(10)
        assert acl.rt.set_device(0) == 0
        fourth = _spawn(tmp_path)
        holders.append(fourth)
        assert _ret(fourth) == 207012
        assert acl.rt.reset_device(0) == 0  # slot released at refcount 0
        fifth = _spawn(tmp_path)
        holders.append(fifth)
        assert _ret(fifth) == 0
        assert acl.rt.reset_device(1) == 0 and acl.finalize() == 0
    finally:
        for proc in holders:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()


def test_product_default_limits(acl: types.ModuleType, tmp_path: Path) -> None:
    from ascend_safe.sim._config import Config

    assert Config().process_limit() == 63
    assert Config(soc_name="Ascend910_9391").process_limit() == 63
    assert Config(soc_name="Ascend310P3").process_limit() == 64
    assert Config(soc_name="Ascend910B4", vm=True).process_limit() == 32
    assert Config(max_procs_per_device=5).process_limit() == 5


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_closes_inherited_slot(acl: types.ModuleType, tmp_path: Path) -> None:
    sim.configure(max_procs_per_device=1, state_dir=str(tmp_path))
    assert acl.init() == 0
    assert acl.rt.set_device(0) == 0
    go_read, go_write = os.pipe()
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: stays alive holding whatever it inherited, until told to exit
        try:
            os.write(ready_write, b"r")
            os.read(go_read, 1)
        finally:
            os._exit(0)
    holder = None
    try:
        os.read(ready_read, 1)
        # the parent frees its slot while the forked child is still alive
        assert acl.rt.reset_device(0) == 0
        holder = _spawn(tmp_path, limit=1)
        assert _ret(holder) == 0
    finally:
        os.write(go_write, b"g")
        os.waitpid(pid, 0)
        for fd in (go_read, go_write, ready_read, ready_write):
            os.close(fd)
        if holder is not None:
            holder.kill()
            holder.wait(10)
            for stream in (holder.stdin, holder.stdout):
                if stream is not None:
                    stream.close()
    assert acl.finalize() == 0


def test_record_file_env_is_inherited(tmp_path: Path) -> None:
    record = tmp_path / "rec.jsonl"
    sim.configure(record_file=str(record))
    env = dict(os.environ)
    env["ASCEND_SAFE_SIM_RECORD_FILE"] = str(record)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    code = "from ascend_safe import sim; acl = sim.acl_module(); acl.init(); acl.rt.free(99999)"
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    found = sim.violations()
    assert [v.kind for v in found] == ["foreign_handle"]
    assert found[0].pid != os.getpid()

"""One simulated machine, many processes: a shared memory budget per device, configuration
that reaches child processes, and state kept in the machine's own directory."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import machine_tasks
import pytest

from ascend_safe import sim

MiB = 1 << 20
_SPAWN = multiprocessing.get_context("spawn")
_TIMEOUT = 60


class Client:
    """A spawned process using device 0 of the simulated machine, driven step by step."""

    def __init__(self) -> None:
        self.conn, child = _SPAWN.Pipe()
        self.proc = _SPAWN.Process(target=machine_tasks.serve, args=(child,), daemon=True)
        self.proc.start()
        child.close()
        self.pid, ready = self._recv()
        assert ready == (0, 0), ready

    def _recv(self, timeout: float = _TIMEOUT) -> Any:
        assert self.conn.poll(timeout), "the client process did not answer"
        return self.conn.recv()

    def ask(self, command: str, arg: Any = None) -> Any:
        self.conn.send((command, arg))
        return self._recv()

    def close(self) -> None:
        if self.proc.is_alive():
            try:
                self.ask("exit")
            except (OSError, EOFError, AssertionError):
                pass
        self.proc.join(_TIMEOUT)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(_TIMEOUT)
        self.conn.close()


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Path]:
    """A simulated machine of this test's own, with 8 MiB per device."""
    sim.configure(state_dir=str(tmp_path), memory_per_device=8 * MiB)
    yield tmp_path


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        client.close()


def _free_bytes(client: Client) -> int:
    free, total, ret = client.ask("info")
    assert ret == 0 and total == 8 * MiB
    return int(free)


def test_two_spawned_workers_share_one_device_budget(
    machine: Path, clients: list[Client]
) -> None:
    first, second = Client(), Client()
    clients += [first, second]
    assert first.ask("malloc", 5 * MiB) == 0
    # the second process sees the first one's memory, and cannot have it
    assert _free_bytes(second) < 3 * MiB
    assert second.ask("malloc", 5 * MiB) == 207001
    assert second.ask("malloc", 2 * MiB) == 0
    # and the first sees the second's
    assert _free_bytes(first) < 1 * MiB
    assert first.ask("malloc", 2 * MiB) == 207001
    usage = sim.memory_usage(0)
    assert set(usage) == {first.pid, second.pid}
    assert 5 * MiB <= usage[first.pid] < 6 * MiB and 2 * MiB <= usage[second.pid] < 3 * MiB
    # this process is on the same machine
    acl = sim.acl_module()
    assert acl.init() == 0 and acl.rt.set_device(0) == 0
    try:
        free, total, ret = acl.rt.get_mem_info(12)
        assert ret == 0 and free < 1 * MiB and total == 8 * MiB
        assert acl.rt.malloc(2 * MiB, 0)[1] == 207001
        # memory given back in one process is available to the others
        assert first.ask("free") == 0
        assert _free_bytes(second) > 5 * MiB
        ptr, ret = acl.rt.malloc(5 * MiB, 0)
        assert ret == 0
        assert acl.rt.free(ptr) == 0
    finally:
        acl.rt.reset_device(0)
        acl.finalize()


def test_sigkilled_process_gives_its_memory_back(machine: Path, clients: list[Client]) -> None:
    holder, other = Client(), Client()
    clients += [holder, other]
    assert holder.ask("malloc", 6 * MiB) == 0
    assert other.ask("malloc", 6 * MiB) == 207001
    os.kill(holder.pid, signal.SIGKILL)
    holder.proc.join(_TIMEOUT)
    assert _free_bytes(other) > 7 * MiB
    assert holder.pid not in sim.memory_usage(0)
    assert other.ask("malloc", 6 * MiB) == 0


def test_rc_malloc_waits_for_a_free_in_another_process(
    machine: Path, clients: list[Client]
) -> None:
    sim.configure(run_mode=0, rc_malloc_timeout=30.0)
    holder, waiter = Client(), Client()
    clients += [holder, waiter]
    assert holder.ask("malloc", 6 * MiB) == 0
    waiter.conn.send(("malloc", 6 * MiB))
    assert not waiter.conn.poll(0.5), "RC-mode malloc returned instead of waiting for memory"
    start = time.monotonic()
    assert holder.ask("free") == 0
    assert waiter.conn.poll(_TIMEOUT)
    assert waiter.conn.recv() == 0
    assert time.monotonic() - start < 5.0
    assert sim.violations() == []


def test_configure_reaches_a_multiprocessing_spawn_child(tmp_path: Path) -> None:
    sim.configure(
        soc_name="Ascend310P3", device_count=5, memory_per_device=96 * MiB, state_dir=str(tmp_path)
    )
    with _SPAWN.Pool(1) as pool:
        seen = pool.apply(machine_tasks.report_options)
    assert seen == {
        "soc_name": "Ascend310P3",
        "device_count": 5,
        "total": 96 * MiB,
        "run_mode": 1,
        "state_dir": str(tmp_path),
    }


_REPORT = "import json, machine_tasks; print(json.dumps(machine_tasks.report_options()))"


def _child_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """*base* (default: this environment) with this directory and the project importable."""
    env = dict(os.environ if base is None else base)
    here = str(Path(__file__).resolve().parent)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([here, root, env.get("PYTHONPATH", "")])
    return env


def _python(code: str, env: dict[str, str] | None = None) -> Any:
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=_child_env(env),
        capture_output=True,
        text=True,
        timeout=_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_configure_reaches_a_python_subprocess(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASCEND_SAFE_SIM_SOC_NAME", "Ascend910_9391")
    sim.reset()
    sim.configure(soc_name="Ascend310B1", run_mode=0, state_dir=str(tmp_path))
    seen = _python(_REPORT)
    assert (seen["soc_name"], seen["run_mode"], seen["state_dir"]) == (
        "Ascend310B1",
        0,
        str(tmp_path),
    )
    # a per-option variable set for one child wins over the parent's configure()
    env = dict(os.environ, ASCEND_SAFE_SIM_RUN_MODE="1")
    assert _python(_REPORT, env)["run_mode"] == 1
    # reset() gives the environment back as it was
    sim.reset()
    assert "ASCEND_SAFE_SIM_CONFIG" not in os.environ
    assert os.environ["ASCEND_SAFE_SIM_SOC_NAME"] == "Ascend910_9391"
    assert sim.acl_module().get_soc_name() == "Ascend910_9391"


def test_configuration_variable_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASCEND_SAFE_SIM_CONFIG", '{"device_count": 0}')
    with pytest.raises(ValueError, match=r"ASCEND_SAFE_SIM_CONFIG.*device_count"):
        sim.reset()
    monkeypatch.setenv("ASCEND_SAFE_SIM_CONFIG", "[1]")
    with pytest.raises(ValueError, match="JSON object"):
        sim.reset()
    monkeypatch.setenv("ASCEND_SAFE_SIM_CONFIG", '{"soc_name": "Ascend310P3"}')
    sim.reset()
    assert sim.acl_module().get_soc_name() == "Ascend310P3"


def test_state_dir_must_belong_to_this_user(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "machine"
    link.symlink_to(target)
    sim.configure(state_dir=str(link))
    acl = sim.acl_module()
    assert acl.init() == 0
    assert acl.rt.set_device(0) == 507899
    assert "is a symbolic link" in (acl.get_recent_err_msg() or "")
    assert acl.finalize() == 0


_FORKSERVER = """
import json, multiprocessing, sys
import machine_tasks
from ascend_safe import sim

if __name__ == "__main__":
    sim.configure(soc_name="Ascend310P3", device_count=3, state_dir=sys.argv[1])
    with multiprocessing.get_context("forkserver").Pool(1) as pool:
        print(json.dumps(pool.apply(machine_tasks.report_options)))
"""


@pytest.mark.skipif(
    "forkserver" not in multiprocessing.get_all_start_methods(), reason="needs forkserver"
)
def test_configure_reaches_a_forkserver_child(tmp_path: Path) -> None:
    script = tmp_path / "main.py"
    script.write_text(_FORKSERVER)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "machine")],
        env=_child_env(),
        capture_output=True,
        text=True,
        timeout=_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert (seen["soc_name"], seen["device_count"], seen["state_dir"]) == (
        "Ascend310P3",
        3,
        str(tmp_path / "machine"),
    )

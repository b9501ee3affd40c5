"""Tests for ascend_safe.slots: per-device process slots, with real processes."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

import pytest

from ascend_safe import slots
from ascend_safe.errors import ProcessLimitError
from ascend_safe.slots import (
    DeviceSlot,
    acquire,
    detect_vm,
    held_slots,
    process_limit,
    product_limit,
    slot_dir,
)

HOLDER_SCRIPT = Path(__file__).with_name("slot_holder.py")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def slot_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private slot directory and no limit overrides; slots left held are released."""
    directory = tmp_path / "slots"
    monkeypatch.setenv("ASCEND_SAFE_SLOT_DIR", str(directory))
    monkeypatch.delenv("ASCEND_SAFE_MAX_PROCS", raising=False)
    monkeypatch.delenv("ASCEND_SAFE_VM", raising=False)
    yield directory
    for slot in held_slots():
        slot.release()


class Holder:
    """A tests/slot_holder.py process; its output lines are read by a thread."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, str(HOLDER_SCRIPT), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.strip())

    def line(self, timeout: float = 15.0) -> str:
        return self._lines.get(timeout=timeout)

    def ready(self) -> int:
        """Wait for ``ready`` and return the slot index."""
        words = self.line().split()
        assert words[0] == "ready", words
        assert int(words[2]) == self.pid
        return int(words[1])

    def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._pump.join(timeout=5)
        if self.proc.stdout is not None and not self._pump.is_alive():
            self.proc.stdout.close()


@pytest.fixture
def spawn() -> Iterator[Callable[..., Holder]]:
    """Start holder processes; all are stopped after the test."""
    started: list[Holder] = []

    def start(*args: object) -> Holder:
        holder = Holder(*(str(arg) for arg in args))
        started.append(holder)
        return holder

    yield start
    for holder in started:
        holder.stop()


def _fds_on(path: str) -> list[int]:
    """This process's descriptors that refer to *path*."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == path:
                found.append(int(name))
        except OSError:
            pass
    return found


def _alive(pid: int) -> bool:
    """True if *pid* runs and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _probe_from_other_process(spawn: Callable[..., Holder], device: int, limit: int) -> str:
    """Have a fresh process try to take a slot; returns its first line (``ready``/``full``)."""
    holder = spawn(device, limit)
    first = holder.line()
    holder.stop()
    return first


# ---------------------------------------------------------------------------
# Limits and environment
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("soc", "vm", "expected"),
    [
        ("Ascend910B4", False, 63),
        ("Ascend910B1", False, 63),
        ("Ascend910_9391", False, 63),
        ("Ascend910_9382", False, 63),
        ("Ascend310P3", False, 64),
        ("Ascend910A", False, 64),
        ("Ascend310B1", False, 64),
        (None, False, 64),
        ("", False, 64),
        ("Ascend910B4", True, 32),
        ("Ascend310P3", True, 32),
        (None, True, 32),
    ],
)
def test_product_limit(soc: Optional[str], vm: bool, expected: int) -> None:
    assert product_limit(soc, vm=vm) == expected


def test_max_procs_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASCEND_SAFE_VM", "1")
    monkeypatch.setenv("ASCEND_SAFE_MAX_PROCS", "5")
    assert process_limit("Ascend910B4") == 5
    monkeypatch.setenv("ASCEND_SAFE_MAX_PROCS", " 100 ")
    assert process_limit(None) == 100


@pytest.mark.parametrize("bad", ["0", "-3", "abc", "1.5", "2x"])
def test_max_procs_bad_value(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("ASCEND_SAFE_MAX_PROCS", bad)
    with pytest.raises(ValueError, match="ASCEND_SAFE_MAX_PROCS"):
        process_limit("Ascend910B4")


def test_vm_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """On real pyacl, the limit is the product's for the host's VM status."""
    monkeypatch.setenv("ASCEND_SAFE_VM", "1")
    assert detect_vm() is True
    assert product_limit("Ascend910B4", vm=detect_vm()) == 32
    monkeypatch.setenv("ASCEND_SAFE_VM", "0")
    assert detect_vm() is False
    assert product_limit("Ascend910B4", vm=detect_vm()) == 63
    assert product_limit("Ascend910_9391", vm=False) == 63
    assert product_limit("Ascend310P3", vm=False) == 64
    assert product_limit(None, vm=False) == 64
    monkeypatch.setenv("ASCEND_SAFE_VM", "maybe")
    with pytest.raises(ValueError, match="ASCEND_SAFE_VM"):
        detect_vm()


def test_detect_vm_probes_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake_tool() -> Optional[bool]:
        calls.append(1)
        return True

    monkeypatch.setattr(slots, "_vm_from_tool", fake_tool)
    slots._probe_vm.cache_clear()
    try:
        assert detect_vm() is True
        assert detect_vm() is True
        assert calls == [1]
    finally:
        slots._probe_vm.cache_clear()


@pytest.mark.parametrize(
    ("vendor", "product", "expected"),
    [
        ("QEMU", "Standard PC (Q35 + ICH9, 2009)", True),
        ("Red Hat", "KVM", True),
        ("VMware, Inc.", "VMware Virtual Platform", True),
        ("innotek GmbH", "VirtualBox", True),
        ("Xen", "HVM domU", True),
        ("Microsoft Corporation", "Virtual Machine", True),
        ("Microsoft Corporation", "Surface Laptop 5", False),
        ("Amazon EC2", "m5.large", True),
        ("Amazon EC2", "c5.metal", False),
        ("Google", "Google Compute Engine", True),
        ("OpenStack Foundation", "OpenStack Nova", True),
        ("Bochs", "Bochs", True),
        ("Parallels Software International Inc.", "Parallels Virtual Platform", True),
        ("Huawei", "TaiShan 200 (Model 2280)", False),
        ("Dell Inc.", "PowerEdge R740", False),
    ],
)
def test_dmi_strings(vendor: str, product: str, expected: bool) -> None:
    assert slots._dmi_says_vm(vendor, product) is expected


def test_dmi_and_cpuinfo_files(tmp_path: Path) -> None:
    dmi = tmp_path / "dmi"
    assert slots._vm_from_dmi(str(dmi)) is None
    dmi.mkdir()
    (dmi / "sys_vendor").write_text("QEMU\n")
    assert slots._vm_from_dmi(str(dmi)) is True
    (dmi / "sys_vendor").write_text("Huawei\n")
    (dmi / "product_name").write_text("Atlas 800T A2\n")
    assert slots._vm_from_dmi(str(dmi)) is False

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu vme sse2 hypervisor lahf_lm\n")
    assert slots._vm_from_cpuinfo(str(cpuinfo), "x86_64") is True
    assert slots._vm_from_cpuinfo(str(cpuinfo), "aarch64") is None
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu vme sse2 lahf_lm\n")
    assert slots._vm_from_cpuinfo(str(cpuinfo), "x86_64") is False
    assert slots._vm_from_cpuinfo(str(tmp_path / "missing"), "x86_64") is None


def test_slot_dir(slot_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert slot_dir() == str(slot_env)
    assert not slot_env.exists()  # only acquire creates it
    with acquire(3, 1) as slot:
        assert slot.path == str(slot_env / "dev3.slot0")
    monkeypatch.delenv("ASCEND_SAFE_SLOT_DIR")
    assert os.path.basename(slot_dir()) == "ascend_safe-slots"


# ---------------------------------------------------------------------------
# One process
# ---------------------------------------------------------------------------


def test_acquire_and_release() -> None:
    first = acquire(0, 2)
    assert (first.device, first.index, first.pid, first.released) == (0, 0, os.getpid(), False)
    assert Path(first.path).read_text().strip() == str(os.getpid())
    assert "held" in repr(first) and "index=0" in repr(first)
    second = acquire(0, 2)
    assert second.index == 1
    assert held_slots() == [first, second]
    with pytest.raises(ProcessLimitError):
        acquire(0, 2)
    first.release()
    first.release()  # idempotent
    assert first.released
    assert "released" in repr(first)
    assert Path(first.path).read_text() == ""
    assert held_slots() == [second]
    again = acquire(0, 2)
    assert again.index == 0
    second.release()
    again.release()
    assert held_slots() == []


def test_context_manager_releases() -> None:
    with acquire(1, 1) as slot:
        assert isinstance(slot, DeviceSlot)
        assert not slot.released
    assert slot.released
    with acquire(1, 1) as other:
        assert other.index == 0


def test_descriptor_is_close_on_exec() -> None:
    with acquire(0, 1) as slot:
        fds = _fds_on(slot.path)
        assert len(fds) == 1
        assert os.get_inheritable(fds[0]) is False
    assert _fds_on(slot.path) == []


@pytest.mark.parametrize(
    ("device", "limit", "timeout"),
    [(-1, 1, 0.0), (0, 0, 0.0), (0, 1, -1.0), (0, 1, float("nan")), (True, 1, 0.0)],
)
def test_bad_arguments(device: int, limit: int, timeout: float) -> None:
    with pytest.raises(ValueError):
        acquire(device, limit, timeout=timeout)


def test_timeout_expires() -> None:
    with acquire(0, 1):
        start = time.monotonic()
        with pytest.raises(ProcessLimitError) as info:
            acquire(0, 1, timeout=0.2)
        elapsed = time.monotonic() - start
    assert 0.19 <= elapsed < 2.0
    assert info.value.holders == (os.getpid(),)
    assert "after waiting" in str(info.value)


def test_threads_get_distinct_slots() -> None:
    got: list[DeviceSlot] = []
    barrier = threading.Barrier(8)

    def take() -> None:
        barrier.wait()
        got.append(acquire(0, 8))

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(slot.index for slot in got) == list(range(8))
    for slot in got:
        slot.release()


def test_waiting_thread_does_not_block_release() -> None:
    slot = acquire(0, 1)
    result: list[DeviceSlot] = []
    waiter = threading.Thread(
        target=lambda: result.append(acquire(0, 1, timeout=None)), daemon=True
    )
    waiter.start()
    time.sleep(0.2)
    assert not result
    releaser = threading.Thread(target=slot.release, daemon=True)
    releaser.start()
    releaser.join(timeout=5)
    assert not releaser.is_alive(), "release() blocked behind the waiting thread"
    waiter.join(timeout=5)
    assert len(result) == 1 and result[0].index == 0
    result[0].release()


# ---------------------------------------------------------------------------
# Real processes
# ---------------------------------------------------------------------------


def test_limit_plus_one_process(spawn: Callable[..., Holder]) -> None:
    holders = [spawn(0, 3) for _ in range(3)]
    assert sorted(holder.ready() for holder in holders) == [0, 1, 2]
    with pytest.raises(ProcessLimitError) as info:
        acquire(0, 3)
    error = info.value
    assert (error.device, error.limit) == (0, 3)
    assert sorted(error.holders) == sorted(holder.pid for holder in holders)
    message = str(error)
    assert "device 0" in message
    assert "all 3 process slots" in message
    for holder in holders:
        assert str(holder.pid) in message
    assert "ASCEND_SAFE_MAX_PROCS" in message and "timeout" in message
    # another device is independent
    with acquire(1, 3) as other:
        assert other.index == 0


def test_sigkilled_holder_slot_is_reused(spawn: Callable[..., Holder]) -> None:
    holders = [spawn(0, 2) for _ in range(2)]
    indices = {holder.pid: holder.ready() for holder in holders}
    with pytest.raises(ProcessLimitError):
        acquire(0, 2)
    victim = holders[1]
    os.kill(victim.pid, signal.SIGKILL)
    victim.proc.wait(timeout=5)
    with acquire(0, 2) as slot:
        assert slot.index == indices[victim.pid]
        # the dead PID is gone from the slot file
        assert Path(slot.path).read_text().strip() == str(os.getpid())


def test_wait_until_a_holder_releases(spawn: Callable[..., Holder]) -> None:
    holder = spawn(0, 1, "--release-after", 0.3)
    holder.ready()
    start = time.monotonic()
    with acquire(0, 1, timeout=5) as slot:
        elapsed = time.monotonic() - start
        assert slot.index == 0
    assert 0.1 < elapsed < 4.0
    assert holder.line() == "released"


def test_forked_child_drops_slot_without_unlocking(spawn: Callable[..., Holder]) -> None:
    slot = acquire(0, 1)
    report_r, report_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report, then wait for the parent's go (EOF) and exit
        code = 1
        try:
            os.close(report_r)
            os.close(go_w)
            ok = slot.released and held_slots() == [] and _fds_on(slot.path) == []
            os.write(report_w, b"ok" if ok else b"bad")
            os.read(go_r, 1)
            code = 0
        finally:
            os._exit(code)
    os.close(report_w)
    os.close(go_r)
    try:
        assert os.read(report_r, 16) == b"ok"
        # The child ran its at-fork hook; the parent's lock must still hold for others.
        assert not slot.released and held_slots() == [slot]
        assert _probe_from_other_process(spawn, 0, 1) == f"full {os.getpid()}"
        slot.release()
        assert _alive(pid)
        # With the forked child still alive, another process can take the slot.
        assert _probe_from_other_process(spawn, 0, 1).startswith("ready 0 ")
        assert _alive(pid)
    finally:
        os.close(report_r)
        os.close(go_w)  # EOF: the child exits
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_forked_child_outliving_killed_parent_holds_nothing(
    spawn: Callable[..., Holder],
) -> None:
    holder = spawn(0, 1, "--fork")
    lines = sorted([holder.line(), holder.line()])  # "child ..." and "ready ..."
    child_words, ready_words = lines[0].split(), lines[1].split()
    assert child_words[0] == "child" and ready_words[0] == "ready"
    grandchild = int(child_words[1])
    try:
        assert child_words[2:] == ["True", "0"]  # released, no descriptor on the slot file
        with pytest.raises(ProcessLimitError):
            acquire(0, 1)
        os.kill(holder.pid, signal.SIGKILL)
        holder.proc.wait(timeout=5)
        assert _alive(grandchild)
        with acquire(0, 1) as slot:  # the parent died without unlocking; the child pins nothing
            assert slot.index == 0
        assert _alive(grandchild)
    finally:
        try:
            os.kill(grandchild, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_on_the_simulator_the_limit_is_the_machines(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's VM status does not decide a simulated machine's limit: the library refuses
    exactly where the simulator's set_device would."""
    from ascend_safe import sim

    monkeypatch.setenv("ASCEND_SAFE_VM", "1")  # the host looks like a VM
    try:
        sim.configure(vm=False, soc_name="Ascend910B4")
        assert process_limit("Ascend910B4") == sim.process_limit() == 63
        sim.configure(vm=True)
        assert process_limit("Ascend910B4") == sim.process_limit() == 32
        sim.configure(max_procs_per_device=5)
        assert process_limit("Ascend910B4") == 5
    finally:
        sim.reset()

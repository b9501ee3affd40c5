"""The simulated machine's state directory resists other local users.

The default directory, ``$TMPDIR/ascend_safe_sim-<uid>``, has a name anyone can guess: another
user may create it first, as a directory or a symbolic link, or plant links in it. The simulator
opens it without following links and checks the descriptor (a directory of this user that no
one else can write to), then opens every file relative to that descriptor, never following a
link, close-on-exec, and checks each file (regular, this user's, one link). Tests that
impersonate another user need root (``os.chown``).
"""

from __future__ import annotations

import fcntl
import os
import stat
import types
from pathlib import Path

import pytest

from ascend_safe import sim
from ascend_safe.sim import _slots

OTHER = 54321  # a uid and gid no one on the test machine uses
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="impersonating another user needs root")
DRV_INTERNAL = 507899


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "machine"
    sim.configure(state_dir=str(path))
    return path


def _set_device_error(acl: types.ModuleType) -> str:
    """set_device(0) fails with the driver's internal error; the message it left."""
    assert acl.init() == 0
    try:
        assert acl.rt.set_device(0) == DRV_INTERNAL
        return str(acl.get_recent_err_msg())
    finally:
        assert acl.finalize() == 0


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="lists descriptors in /proc")
def test_made_private_and_every_descriptor_is_checked_and_close_on_exec(
    state: Path, device: types.ModuleType
) -> None:
    acl = device
    ptr, ret = acl.rt.malloc(64, 0)  # opens the machine: ledger, liveness file
    assert ret == 0
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "procs").stat().st_mode) == 0o700
    opened = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target == str(state) or target.startswith(str(state) + os.sep):
            opened.append(target)
            flags = fcntl.fcntl(int(name), fcntl.F_GETFD)
            assert flags & fcntl.FD_CLOEXEC, target
    names = {os.path.relpath(t, state) for t in opened}
    assert {"device0.slot0", "device0.memory", "."} <= names  # the directory fds too
    assert any(n.startswith("procs") for n in names)
    for entry in [state / "device0.slot0", state / "device0.memory"]:
        assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert acl.rt.free(ptr) == 0


def test_symlink_at_the_directory_name_is_refused(tmp_path: Path, acl: types.ModuleType) -> None:
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    link = tmp_path / "machine"
    link.symlink_to(victim)
    sim.configure(state_dir=str(link))
    message = _set_device_error(acl)
    assert "is a symbolic link" in message and "state_dir" in message
    assert list(victim.iterdir()) == []


def test_dangling_symlink_at_the_directory_name_is_refused(
    tmp_path: Path, acl: types.ModuleType
) -> None:
    link = tmp_path / "machine"
    link.symlink_to(tmp_path / "not-yet")
    sim.configure(state_dir=str(link))
    assert "is a symbolic link" in _set_device_error(acl)
    assert not (tmp_path / "not-yet").exists()


@as_root
def test_directory_of_another_user_is_refused(state: Path, acl: types.ModuleType) -> None:
    state.mkdir(mode=0o700)
    os.chown(state, OTHER, OTHER)
    message = _set_device_error(acl)
    assert f"belongs to uid {OTHER}" in message
    assert list(state.iterdir()) == []


def test_directory_writable_by_others_is_refused(state: Path, acl: types.ModuleType) -> None:
    state.mkdir()
    state.chmod(0o777)  # our own, but anyone could plant names in it
    message = _set_device_error(acl)
    assert "writable by other users (mode 0777)" in message
    assert list(state.iterdir()) == []
    state.chmod(0o700)
    assert acl.init() == 0 and acl.rt.set_device(0) == 0
    assert acl.rt.reset_device(0) == 0 and acl.finalize() == 0


def test_planted_symlink_file_is_not_followed(
    state: Path, tmp_path: Path, acl: types.ModuleType
) -> None:
    state.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (state / "device0.slot0").symlink_to(victim)
    message = _set_device_error(acl)
    assert "device0.slot0" in message and "symbolic link" in message
    assert victim.read_text() == "keep"


def test_planted_hard_link_is_not_written(
    state: Path, tmp_path: Path, acl: types.ModuleType
) -> None:
    state.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    os.link(victim, state / "device0.slot0")
    message = _set_device_error(acl)
    assert "device0.slot0" in message and "2 hard links" in message
    assert victim.read_text() == "keep"


@as_root
def test_file_of_another_user_is_not_written(state: Path, acl: types.ModuleType) -> None:
    state.mkdir(mode=0o700)
    planted = state / "device0.memory"
    planted.write_text("not a ledger")
    os.chown(planted, OTHER, OTHER)
    assert acl.init() == 0 and acl.rt.set_device(0) == 0
    assert acl.rt.malloc(64, 0) == (0, DRV_INTERNAL)
    assert f"belongs to uid {OTHER}" in str(acl.get_recent_err_msg())
    assert planted.read_text() == "not a ledger"
    assert acl.rt.reset_device(0) == 0 and acl.finalize() == 0


def test_planted_liveness_link_is_neither_followed_nor_removed(
    state: Path, tmp_path: Path
) -> None:
    (state / "procs").mkdir(parents=True, mode=0o700)
    state.chmod(0o700)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (state / "procs" / "1.1").symlink_to(victim)
    machine = _slots.Machine(str(state))
    try:
        assert machine.alive(1, 1)  # cannot tell: counted, never unlinked
        assert (state / "procs" / "1.1").is_symlink()
        assert victim.read_text() == "keep"
    finally:
        machine.forget()


def test_directory_swapped_after_the_check_is_not_followed(
    state: Path, tmp_path: Path
) -> None:
    machine = _slots.Machine(str(state))
    try:
        # The name is replaced by a link to elsewhere once the machine has its descriptor:
        # files are still made in the directory that was checked.
        moved = tmp_path / "moved"
        state.rename(moved)
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir(mode=0o700)
        state.symlink_to(elsewhere)
        ledger = machine.ledger(0)
        ledger.close()
        assert (moved / "device0.memory").exists()
        assert list(elsewhere.iterdir()) == []
    finally:
        machine.forget()

"""The shared slot directory resists other local users (see the threat model in
``ascend_safe.slots``): planted symlinks, foreign owners, unsafe modes, planted files, and
deleting a held slot. Tests that impersonate another user need root (``os.chown``, setuid)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

from ascend_safe import slots
from ascend_safe.errors import ProcessLimitError, SlotDirectoryError

OTHER = 54321  # a uid and gid no one on the test machine uses
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="impersonating another user needs root")


@pytest.fixture
def shared() -> Iterator[Path]:
    """A root of test directories that any user can traverse (tmp_path may be 0700)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    path = Path(tempfile.mkdtemp(prefix="slot-sec-", dir=base))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_overrides(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("ASCEND_SAFE_MAX_PROCS", raising=False)
    yield
    for slot in slots.held_slots():
        slot.release()


def _use(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    monkeypatch.setenv("ASCEND_SAFE_SLOT_DIR", str(path))


def _as_other_user(action: Callable[[], None]) -> str:
    """Run *action* in a forked child as uid/gid OTHER; "" on success, else the error text."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(read_end)
        code = 0
        try:
            os.setgroups([])
            os.setgid(OTHER)
            os.setuid(OTHER)
            action()
        except BaseException as exc:
            os.write(write_end, f"{type(exc).__name__}: {exc}".encode())
            if not isinstance(exc, OSError):
                os.write(write_end, traceback.format_exc().encode())
            code = 1
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        text = f.read().decode()
    os.waitpid(pid, 0)
    return text


def test_created_with_safe_modes(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = shared / "a" / "b" / "slots"
    _use(monkeypatch, target)
    old = os.umask(0o077)
    try:
        with slots.acquire(0, 1) as slot:
            file_mode = stat.S_IMODE(os.stat(slot.path).st_mode)
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == slots.SHARED_DIR_MODE == 0o1777
    assert file_mode == slots.SLOT_FILE_MODE == 0o644
    for parent in (shared / "a", shared / "a" / "b"):
        assert not parent.stat().st_mode & 0o022  # never writable by others


def test_own_shared_dir_without_sticky_bit_is_repaired(
    shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = shared / "slots"
    target.mkdir()
    target.chmod(0o777)  # what earlier versions created
    _use(monkeypatch, target)
    with slots.acquire(0, 1):
        pass
    assert stat.S_IMODE(target.stat().st_mode) == 0o1777


def test_path_that_is_a_file_is_explained(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (shared / "slots").write_text("planted")
    _use(monkeypatch, shared / "slots")
    with pytest.raises(SlotDirectoryError, match=r"slots is a file .*not a directory.*remove it"):
        slots.acquire(1, 1)
    _use(monkeypatch, shared / "slots" / "below")
    with pytest.raises(SlotDirectoryError, match="is a file"):
        slots.acquire(1, 1)
    assert (shared / "slots").read_text() == "planted"


def test_relative_path_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASCEND_SAFE_SLOT_DIR", "relative/slots")
    with pytest.raises(SlotDirectoryError, match="must be an absolute path"):
        slots.acquire(0, 1)


def test_own_symlink_is_followed(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = shared / "real"
    real.mkdir()
    (shared / "link").symlink_to(real)
    _use(monkeypatch, shared / "link" / "slots")
    with slots.acquire(0, 1):
        assert (real / "slots" / "dev0.slot0").is_file()


@as_root
def test_symlink_planted_at_a_component_is_refused(
    shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = shared / "victim"
    victim.mkdir()
    secret = victim / "dev0.slot0"
    secret.write_text("secret")
    secret.chmod(0o600)
    parent = shared / "parent"
    parent.mkdir()
    parent.chmod(0o1777)
    link = parent / "slots"
    link.symlink_to(victim)
    os.lchown(link, OTHER, OTHER)  # planted by another user
    _use(monkeypatch, link)
    with pytest.raises(SlotDirectoryError, match=r"symbolic link owned by uid 54321") as info:
        slots.acquire(0, 1)
    assert info.value.path == str(link)
    assert secret.read_text() == "secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert sorted(p.name for p in victim.iterdir()) == ["dev0.slot0"]


@as_root
@pytest.mark.parametrize("which", ["parent", "slot dir"])
def test_directory_of_another_user_is_refused(
    shared: Path, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    target = shared / "parent" / "slots"
    target.mkdir(parents=True)
    os.chown(shared / "parent" if which == "parent" else target, OTHER, OTHER)
    _use(monkeypatch, target)
    with pytest.raises(SlotDirectoryError, match="belongs to uid 54321") as info:
        slots.acquire(0, 1)
    fix = "install -d -m 1777 -o root" if which == "slot dir" else "belong to root"
    assert fix in str(info.value)
    assert list(target.iterdir()) == []


def test_parent_writable_by_others_without_sticky_bit_is_refused(
    shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = shared / "open"
    parent.mkdir()
    parent.chmod(0o777)
    _use(monkeypatch, parent / "slots")
    with pytest.raises(SlotDirectoryError, match=r"mode 0777.* without the sticky bit") as info:
        slots.acquire(0, 1)
    assert "chmod +t" in str(info.value)
    assert not (parent / "slots").exists()
    parent.chmod(0o1777)  # like /tmp: fine
    with slots.acquire(0, 1):
        pass


def test_planted_symlink_and_hard_link_are_skipped_and_named(
    shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = shared / "slots"
    _use(monkeypatch, target)
    with slots.acquire(0, 1):
        pass
    victim = shared / "victim"
    victim.write_text("keep")
    (target / "dev1.slot0").symlink_to(victim)
    os.link(victim, target / "dev1.slot1")
    with pytest.raises(ProcessLimitError) as info:
        slots.acquire(1, 2)
    message = str(info.value)
    assert f"{target}/dev1.slot0 (is a symbolic link)" in message
    assert f"{target}/dev1.slot1 (has 2 hard links)" in message
    with slots.acquire(1, 3) as slot:
        assert slot.index == 2
    assert victim.read_text() == "keep"


@as_root
def test_file_planted_by_another_user_is_not_written(
    shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = shared / "slots"
    _use(monkeypatch, target)
    with slots.acquire(0, 1):
        pass
    planted = target / "dev1.slot0"
    planted.write_text("1\n")  # a fake holder PID
    os.chown(planted, OTHER, OTHER)
    with slots.acquire(1, 1) as slot:
        assert slot.path == str(planted)
        assert planted.read_text() == "1\n"  # only our own files are written
        assert planted.stat().st_uid == OTHER
        with pytest.raises(ProcessLimitError) as info:
            slots.acquire(1, 1)
        assert info.value.holders == (os.getpid(),)  # the kernel's lock table, not the file


@as_root
def test_other_users_take_part_and_cannot_delete_a_held_slot(
    shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = shared / "slots"
    _use(monkeypatch, target)
    with slots.acquire(0, 2) as slot:
        path = slot.path

        def delete() -> None:
            os.unlink(path)

        assert "PermissionError" in _as_other_user(delete)
        assert os.path.exists(path)

        def take_the_other_slot() -> None:
            other = slots.acquire(0, 2)
            assert other.index == 1, other
            assert os.stat(other.path).st_uid == OTHER
            try:
                slots.acquire(0, 2)
            except ProcessLimitError as exc:
                assert exc.holders == (os.getppid(), os.getpid()), exc.holders
            else:
                raise AssertionError("a third holder got in with the limit at 2")

        assert _as_other_user(take_the_other_slot) == ""
        target.chmod(0o777)  # without the sticky bit the same user could delete it
        assert _as_other_user(delete) == ""
        assert not os.path.exists(path)

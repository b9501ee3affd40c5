"""The simulated machine's shared state: per-device process slots and the device memory ledger.

A simulated machine is one machine whatever the number of processes using it, so what the
driver shares between processes lives in the machine's state directory:

- ``device<d>.slot<i>``: one ``flock``-ed file per process slot of device *d*; the kernel frees
  a slot when its holder dies, even by ``SIGKILL``.
- ``device<d>.memory``: the device's memory ledger, one fixed-size entry (pid, token, bytes) per
  process holding memory on it, mapped in memory. Entries are read and written under an
  ``flock`` of the ledger file (two system calls, a few microseconds), so the budget check and
  the reservation are one step across processes.
- ``procs/<pid>.<token>``: one file per process, ``flock``-ed for the process's whole life. A
  ledger entry whose process file is no longer locked belongs to a dead process: it is ignored
  and cleared (the driver gives a dead process's memory back). Liveness is only probed when the
  budget looks exhausted or ``get_mem_info`` asks, so the common malloc and free pay nothing
  for it; a probe is one non-blocking ``flock`` on a descriptor kept open.

Descriptors are close-on-exec; a forked child closes (never unlocks) the ones it inherited.

The directory is private to one user (``$TMPDIR/ascend_safe_sim-<uid>`` by default), and another
local user may create that name first, as a directory or a symbolic link. So the directory is
opened without following a symbolic link and checked on its descriptor (a directory, owned by
this user, writable by no one else), and every file is opened relative to that descriptor with
``O_NOFOLLOW | O_CLOEXEC`` and checked on its own descriptor (a regular file owned by this
user, one link): a planted or swapped name is refused with an explanation, never followed.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import secrets
import stat
import struct
import threading
from typing import Optional

__all__ = [
    "DeviceLedger",
    "Machine",
    "MachineError",
    "acquire",
    "close_inherited",
    "ensure_dir",
    "machine",
    "other_holders",
    "release",
]

_HEADER = struct.Struct("=QQ")  # format mark, entries in use (a high-water mark)
_HEADER_SIZE = 64
_ENTRY = struct.Struct("=QQQ")  # pid, token, bytes held
#: Processes that can hold memory on one device at once (the process limit is far lower).
CAPACITY = 4096
_FILE_SIZE = _HEADER_SIZE + CAPACITY * _ENTRY.size
_MARK = int.from_bytes(b"ASLEDGR1", "little")
#: Liveness files of other processes kept open for probing (all closed when exceeded).
_PROBES_KEPT = 256
_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
#: Opening an existing file (liveness probes): never created, never followed.
_PROBE_FLAGS = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW


class MachineError(OSError):
    """The machine's state directory or one of its files cannot be used."""


def ensure_dir(path: str) -> None:
    """Create *path* (mode 0700) and check that it is this user's private directory."""
    _close(open_dir(path))


def open_dir(path: str, parent_fd: Optional[int] = None) -> int:
    """A descriptor of the state directory *path* (made, mode 0700, if missing), checked.

    With *parent_fd*, *path* is a name inside that directory. The directory is opened without
    following a symbolic link and must be a directory owned by this user that no other user
    can write to; otherwise :class:`MachineError` says what is wrong and what to do.
    """
    shown = path if parent_fd is None else f"{_dir_name(parent_fd)}/{path}"
    try:
        if parent_fd is None:
            os.makedirs(path, mode=0o700, exist_ok=True)
        else:
            try:
                os.mkdir(path, 0o700, dir_fd=parent_fd)
            except FileExistsError:
                pass
        fd = os.open(path, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EEXIST):
            reason = "is a symbolic link or not a directory"
            raise MachineError(exc.errno, _unsafe(shown, reason)) from None
        raise MachineError(
            exc.errno, f"simulator state directory {shown!r} cannot be created: {exc.strerror}"
        ) from None
    info = os.fstat(fd)
    reason = ""
    if not stat.S_ISDIR(info.st_mode):
        reason = "is not a directory"
    elif info.st_uid != os.getuid():
        reason = f"belongs to uid {info.st_uid}, not to this user (uid {os.getuid()})"
    elif info.st_mode & 0o022:
        reason = f"is writable by other users (mode {stat.S_IMODE(info.st_mode):04o})"
    if reason:
        _close(fd)
        raise MachineError(errno.EPERM, _unsafe(shown, reason))
    return fd


def _unsafe(path: str, reason: str) -> str:
    return (
        f"simulator state directory {path!r} {reason}; it must be a directory of this user "
        "that no one else can write to (mode 0700): remove it, or choose another with the "
        "state_dir option"
    )


def _dir_name(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return f"<directory fd {fd}>"


def _open(dir_fd: int, name: str) -> int:
    """Open (creating, mode 0600) the state file *name* of the directory *dir_fd*, checked."""
    try:
        fd = os.open(name, _OPEN_FLAGS, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        path = f"{_dir_name(dir_fd)}/{name}"
        if exc.errno == errno.ELOOP:
            raise MachineError(
                exc.errno,
                f"simulator state file {path!r} is a symbolic link (not followed); remove it",
            ) from None
        raise MachineError(
            exc.errno, f"simulator state file {path!r} cannot be opened: {exc.strerror}"
        ) from None
    problem = _foreign(fd)
    if problem:
        _close(fd)
        path = f"{_dir_name(dir_fd)}/{name}"
        raise MachineError(
            errno.EPERM, f"simulator state file {path!r} {problem}; remove it (not used)"
        )
    return fd


def _foreign(fd: int) -> str:
    """Why the open file *fd* is not one of this user's state files ("" when it is)."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if info.st_uid != os.getuid():
        return f"belongs to uid {info.st_uid}, not to this user"
    if info.st_nlink != 1:
        return f"has {info.st_nlink} hard links"
    return ""


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _holder_alive(dir_fd: int, name: str) -> bool:
    """Whether the process that locked the file *name* (in *dir_fd*) still holds it (is alive).

    A dead holder's file is removed. Probing takes the lock for an instant when it is free.
    A file that is not one of this user's state files is left alone and counted as alive.
    """
    try:
        fd = os.open(name, _PROBE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell (a planted link, say): count it, which is the safe side
    if _foreign(fd):
        _close(fd)
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        _close(fd)
        return True
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass
    _close(fd)
    return False


# --------------------------------------------------------------------------- process slots


def acquire(directory: str, device: int, limit: int) -> Optional[int]:
    """Lock a free slot file for *device*; its fd, or None when all *limit* slots are taken."""
    dir_fd = open_dir(directory)
    try:
        for index in range(limit):
            fd = _open(dir_fd, f"device{device}.slot{index}")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                _close(fd)
                continue
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            except OSError:
                pass
            return fd
        return None
    finally:
        _close(dir_fd)


def release(fd: int) -> None:
    """Give a slot back (closing the fd drops the lock)."""
    _close(fd)


def other_holders(directory: str) -> dict[int, list[int]]:
    """Devices whose process slots other live processes hold: device -> their pids.

    A slot is held while its file is locked; the holder wrote its pid into it. Probing takes a
    shared lock for an instant when the slot is free (a slot is never taken by a probe).
    """
    held: dict[int, list[int]] = {}
    try:
        names = os.listdir(directory)
    except OSError:
        return held
    me = os.getpid()
    for name in names:
        device, _, index = name.partition(".slot")
        if not (device.startswith("device") and device[6:].isdigit() and index.isdigit()):
            continue
        try:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                text = os.pread(fd, 32, 0).decode(errors="replace").strip()
                pid = int(text) if text.isdigit() else 0
                if pid != me:
                    held.setdefault(int(device[6:]), []).append(pid)
        finally:
            _close(fd)
    return held


def close_inherited(fds: list[int]) -> None:
    """In a forked child: close (never unlock) slot fds inherited from the parent."""
    for fd in fds:
        release(fd)


# --------------------------------------------------------------------------- memory ledger


class DeviceLedger:
    """This process's view of one device's memory ledger (see the module docstring).

    The ledger file is mapped in memory: a header (format mark, number of entries in use) and
    up to :data:`CAPACITY` entries, read and written under the file's ``flock``.
    """

    def __init__(self, owner: Machine, device: int) -> None:
        self._owner = owner
        name = f"device{device}.memory"
        path = os.path.join(owner.path, name)
        self._fd = _open(owner.dir_fd, name)
        self._lock = threading.Lock()
        self._index: Optional[int] = None  # our entry, while we hold bytes on the device
        try:
            with self._locked_file():
                if os.fstat(self._fd).st_size < _FILE_SIZE:
                    os.ftruncate(self._fd, _FILE_SIZE)
                self._map = mmap.mmap(self._fd, _FILE_SIZE)
                mark, _ = _HEADER.unpack_from(self._map, 0)
                if mark == 0:
                    _HEADER.pack_into(self._map, 0, _MARK, 0)
                elif mark != _MARK:
                    raise MachineError(
                        errno.EINVAL,
                        f"{path!r} is not a device memory ledger of this simulator version; "
                        "remove the state directory or choose another with state_dir",
                    )
        except OSError as exc:
            _close(self._fd)
            if isinstance(exc, MachineError):
                raise
            raise MachineError(exc.errno, f"{path!r} cannot be used: {exc.strerror}") from None

    def close(self) -> None:
        """Unmap and close the ledger (never unlocks it for another holder of the file)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            self._map.close()
            _close(fd)

    # -- raw access, under the file lock

    def _read(self) -> list[tuple[int, int, int]]:
        _, count = _HEADER.unpack_from(self._map, 0)
        data = self._map[_HEADER_SIZE : _HEADER_SIZE + min(count, CAPACITY) * _ENTRY.size]
        return [(int(p), int(t), int(u)) for p, t, u in _ENTRY.iter_unpack(data)]

    def _write(self, index: int, pid: int, token: int, used: int) -> None:
        _ENTRY.pack_into(self._map, _HEADER_SIZE + index * _ENTRY.size, pid, token, used)

    def _others(self, entries: list[tuple[int, int, int]], sweep: bool) -> dict[int, int]:
        """Bytes held by other processes, by entry index; dead ones cleared when *sweep*."""
        me = self._index
        held: dict[int, int] = {}
        for index, (pid, token, used) in enumerate(entries):
            if index == me or pid == 0:
                continue
            if sweep and not self._owner.alive(pid, token):
                self._write(index, 0, 0, 0)
                continue
            held[index] = used
        return held

    def _store(self, entries: list[tuple[int, int, int]], used: int) -> None:
        """Write our entry: claim a free one on the first byte, free it at zero."""
        owner = self._owner
        index = self._index
        if index is not None and (
            index >= len(entries) or entries[index][:2] != (owner.pid, owner.token)
        ):
            index = None  # cleared behind our back (liveness file removed): claim anew
        if used == 0:
            if index is not None:
                self._write(index, 0, 0, 0)
            self._index = None
            return
        if index is None:
            index = next((i for i, e in enumerate(entries) if e[0] == 0), len(entries))
            if index >= CAPACITY:
                raise MachineError(
                    errno.ENOSPC,
                    f"more than {CAPACITY} processes hold memory on one simulated device",
                )
            if index == len(entries):
                _HEADER.pack_into(self._map, 0, _MARK, index + 1)
        self._index = index
        self._write(index, owner.pid, owner.token, used)

    def _locked_file(self) -> _FileLock:
        return _FileLock(self._fd, self._lock)

    # -- operations

    def reserve(self, mine: int, extent: int, budget: int, sweep: bool) -> Optional[int]:
        """Take *extent* more bytes (this process holds *mine*) if the device has them.

        None when reserved (our entry now says ``mine + extent``); otherwise the bytes the
        other processes hold. With *sweep*, dead processes' entries are cleared first.
        """
        with self._locked_file():
            entries = self._read()
            others = sum(self._others(entries, sweep).values())
            if mine + extent + others > budget:
                return others
            self._store(entries, mine + extent)
            return None

    def update(self, mine: int) -> None:
        """Record that this process now holds *mine* bytes on the device."""
        if mine == 0 and self._index is None:
            return
        with self._locked_file():
            self._store(self._read(), mine)

    def others(self, sweep: bool = True) -> int:
        """Bytes that live other processes hold on the device."""
        with self._locked_file():
            return sum(self._others(self._read(), sweep).values())

    def usage(self) -> dict[int, int]:
        """Bytes held per live process (PID), this one included."""
        with self._locked_file():
            entries = self._read()
            held = self._others(entries, True)
            result: dict[int, int] = {}
            for index, used in held.items():
                pid = entries[index][0]
                result[pid] = result.get(pid, 0) + used
            if self._index is not None and self._index < len(entries):
                result[self._owner.pid] = entries[self._index][2]
            return result


class _FileLock:
    """``with``: the thread lock, then the ``flock`` of a ledger file."""

    __slots__ = ("_fd", "_lock")

    def __init__(self, fd: int, lock: threading.Lock) -> None:
        self._fd = fd
        self._lock = lock

    def __enter__(self) -> None:
        self._lock.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()


class Machine:
    """This process's membership of one simulated machine (one state directory)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.dir_fd = open_dir(path)
        try:
            self.procs_fd = open_dir("procs", self.dir_fd)
        except BaseException:
            _close(self.dir_fd)
            raise
        self.pid = os.getpid()
        self.token = secrets.randbits(63) or 1
        final = self.proc_name(self.pid, self.token)
        # Locked before it gets its name, so no sweeper ever sees it unlocked.
        draft = f".{self.pid}.{self.token:x}"
        self._proc_fd = -1
        try:
            self._proc_fd = _open(self.procs_fd, draft)
            fcntl.flock(self._proc_fd, fcntl.LOCK_EX)  # held for life; dropped at death
            os.rename(draft, final, src_dir_fd=self.procs_fd, dst_dir_fd=self.procs_fd)
        except OSError as exc:
            for fd in (self._proc_fd, self.procs_fd, self.dir_fd):
                if fd >= 0:
                    _close(fd)
            if isinstance(exc, MachineError):
                raise
            where = os.path.join(path, "procs", final)
            raise MachineError(
                exc.errno, f"simulator state file {where!r} cannot be made: {exc.strerror}"
            ) from None
        self._ledgers: dict[int, DeviceLedger] = {}
        self._lock = threading.Lock()
        self._probes: dict[tuple[int, int], int] = {}  # open liveness files of others
        self._probe_lock = threading.Lock()
        _sweep_proc_files(self.procs_fd, final)

    def alive(self, pid: int, token: int) -> bool:
        """Whether process (*pid*, *token*) lives: its liveness file is still locked.

        The probe descriptor is kept open, so a later probe is one ``flock`` call.
        """
        key = (pid, token)
        name = self.proc_name(pid, token)
        with self._probe_lock:
            fd = self._probes.get(key)
            if fd is None:
                try:
                    fd = os.open(name, _PROBE_FLAGS, dir_fd=self.procs_fd)
                except FileNotFoundError:
                    return False
                except OSError:
                    return True  # cannot tell: count it, which is the safe side
                if _foreign(fd):
                    _close(fd)
                    return True  # not our file: never unlinked, counted
                if len(self._probes) >= _PROBES_KEPT:
                    self._close_probes()
                self._probes[key] = fd
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            del self._probes[key]  # we got the lock: its holder is dead
            try:
                os.unlink(name, dir_fd=self.procs_fd)
            except OSError:
                pass
            _close(fd)
            return False

    def _close_probes(self) -> None:
        for fd in self._probes.values():
            _close(fd)
        self._probes.clear()

    def proc_name(self, pid: int, token: int) -> str:
        """The name, in ``procs``, of the liveness file of the process (*pid*, *token*)."""
        return f"{pid}.{token:x}"

    def ledger(self, device: int) -> DeviceLedger:
        """The memory ledger of *device*, opened on first use."""
        ledger = self._ledgers.get(device)
        if ledger is None:
            with self._lock:
                ledger = self._ledgers.get(device)
                if ledger is None:
                    ledger = self._ledgers[device] = DeviceLedger(self, device)
        return ledger

    def forget(self) -> None:
        """In a forked child: close inherited descriptors without unlocking anything."""
        for ledger in self._ledgers.values():
            ledger.close()
        self._ledgers.clear()
        self._close_probes()
        for fd in (self._proc_fd, self.procs_fd, self.dir_fd):
            if fd >= 0:
                _close(fd)
        self._proc_fd = self.procs_fd = self.dir_fd = -1


def _sweep_proc_files(procs_fd: int, own: str) -> None:
    """Remove the liveness files of dead processes (once per process and machine)."""
    try:
        names = os.listdir(procs_fd)
    except OSError:
        return
    for name in names:
        if name != own and not name.startswith("."):  # "." files are being made
            _holder_alive(procs_fd, name)


_machines: dict[str, Machine] = {}
_machines_lock = threading.Lock()


def machine(path: str) -> Machine:
    """This process's :class:`Machine` for state directory *path* (made on first use)."""
    found = _machines.get(path)
    if found is not None:
        return found
    with _machines_lock:
        found = _machines.get(path)
        if found is None:
            found = _machines[path] = Machine(path)
        return found


def _after_fork_in_child() -> None:
    global _machines_lock
    _machines_lock = threading.Lock()
    for inherited in _machines.values():
        inherited.forget()
    _machines.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)

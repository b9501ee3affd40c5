"""Cross-process "slots" that cap how many processes use one Ascend device.

CANN allows only so many processes per device (63 on Atlas A2 / A3, 64 on other products, 32
inside a virtual machine); one more fails deep inside the runtime with an obscure error. Before
a process uses a device it takes a slot: a file ``dev<N>/slot<i>`` under :func:`slot_dir`,
locked with ``flock``. The kernel drops the lock when the holder dies, even by ``SIGKILL``, so
a crashed process never leaks its slot. When every slot is taken, :func:`acquire` raises
:class:`~ascend_safe.errors.ProcessLimitError` naming the device, the limit and the holders.

The files are ``dev<N>.slot<i>`` in one directory shared by every user's processes, built like
``/run/lock``. Threat model: another local user may create, rename and replace anything they
are allowed to in that directory and in world-writable directories above it (``/dev/shm``,
``/tmp``), and wants to make this process, possibly root, write to a file elsewhere or let more
processes onto a device than the limit. Defences:

- The path is walked one component at a time with ``O_NOFOLLOW | O_DIRECTORY`` relative to the
  directory already checked (``dir_fd``), so swapping a component for a symlink cannot redirect
  the walk. A symlink is followed only if root or this user owns it.
- Every directory on the way must belong to root or this user, and one writable by group or
  others must have the sticky bit; otherwise :class:`~ascend_safe.errors.SlotDirectoryError`
  names the path and the fix. A missing directory is created ``0755``, the slot directory
  itself ``01777`` (sticky: nobody but a file's owner, the directory's owner and root can delete
  or rename a slot file, so a held slot cannot be unlinked to let a second holder in).
- Slot files are created ``O_EXCL | O_NOFOLLOW`` with mode ``0644``: other users' processes
  lock them through a read-only descriptor, and only the creator can write the PID in them. An
  existing entry is used only if it is a regular file with a single link; a planted symlink,
  FIFO, directory or hard link is skipped and named in the limit error. Nothing but our own
  files is ever written, truncated or ``chmod``-ed.
- Holders are read from the kernel's lock table (``/proc/locks``), which no user can fake; the
  PID in the file is only a fallback.

What remains possible, and is out of scope: any user may hold slots (a denial of service that
the limit itself implies), and the directory's owner and root may delete slot files. When the
directory belongs to another non-root user it is refused: have root create it
(``install -d -m 1777 -o root <dir>``).

Fork: an ``flock`` lock belongs to the open file description, which a forked child shares with
its parent. The at-fork child hook therefore *closes* the inherited descriptors without
unlocking them, so the parent keeps its slot and the child does not pin it after the parent
exits. Descriptors are opened with ``O_CLOEXEC``, so ``exec``-ed children never inherit them.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import platform
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from types import TracebackType
from typing import NamedTuple, Optional

from . import _backend, _process, _validate
from .errors import ProcessLimitError, SlotDirectoryError, SlotWaitTimeoutError

__all__ = [
    "DeviceSlot",
    "SlotSurvey",
    "acquire",
    "detect_vm",
    "held_slots",
    "open_lock_file",
    "process_limit",
    "product_limit",
    "slot_dir",
    "survey",
]

#: Environment variable overriding the per-device process limit (a positive integer).
ENV_MAX_PROCS = _process.variable("ASCEND_SAFE_MAX_PROCS", "processes allowed per device")
#: Environment variable overriding virtual-machine detection (``0`` or ``1``).
ENV_VM = _process.variable("ASCEND_SAFE_VM", "running in a virtual machine: 0 or 1")
#: Environment variable choosing the directory that holds the slot files.
ENV_SLOT_DIR = _process.variable("ASCEND_SAFE_SLOT_DIR", "directory of the process-slot files")

#: Per-device process limits documented by CANN.
LIMIT_A2_A3 = 63
LIMIT_DEFAULT = 64
LIMIT_VM = 32

_A2_A3_SOC_PREFIXES = ("ascend910b", "ascend910_93")
_SLOT_DIR_NAME = "ascend_safe-slots"
_DMI_DIR = "/sys/class/dmi/id"
_CPUINFO = "/proc/cpuinfo"
_DETECT_VIRT_TIMEOUT = 2.0
_POLL_FIRST = 0.01
_POLL_MAX = 0.2
_PID_READ_SIZE = 32

# ---------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------


def product_limit(soc_name: str | None, *, vm: bool) -> int:
    """The CANN process limit per device for SoC *soc_name* (``None`` if unknown)."""
    if vm:
        return LIMIT_VM
    if soc_name and soc_name.strip().lower().startswith(_A2_A3_SOC_PREFIXES):
        return LIMIT_A2_A3
    return LIMIT_DEFAULT


def _vm_from_tool() -> Optional[bool]:
    """Ask ``systemd-detect-virt``; None when it is missing or could not run."""
    tool = shutil.which("systemd-detect-virt")
    if tool is None:
        return None
    try:
        done = subprocess.run(
            [tool, "--vm", "--quiet"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=_DETECT_VIRT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.returncode == 0


def _read_text(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def _dmi_says_vm(vendor: str, product: str) -> bool:
    """True when the DMI vendor / product strings name a known hypervisor or cloud VM."""
    vendor = vendor.lower()
    product = product.lower()
    both = f"{vendor} {product}"
    if "amazon ec2" in both:
        return not product.endswith(".metal")  # EC2 bare-metal instances are not VMs
    if "microsoft corporation" in vendor:
        return "virtual machine" in product
    markers = (
        "kvm",
        "qemu",
        "vmware",
        "virtualbox",
        "innotek",
        "xen",
        "bochs",
        "parallels",
        "openstack",
        "google compute engine",
        "alibaba cloud ecs",
    )
    return any(marker in both for marker in markers)


def _vm_from_dmi(dmi_dir: str = _DMI_DIR) -> Optional[bool]:
    """Judge from DMI; None when neither DMI file can be read."""
    vendor = _read_text(os.path.join(dmi_dir, "sys_vendor"))
    product = _read_text(os.path.join(dmi_dir, "product_name"))
    if vendor is None and product is None:
        return None
    return _dmi_says_vm(vendor or "", product or "")


def _vm_from_cpuinfo(path: str = _CPUINFO, machine: Optional[str] = None) -> Optional[bool]:
    """The x86 ``hypervisor`` CPU flag; None off x86 or when cpuinfo is unreadable."""
    machine = (machine if machine is not None else platform.machine()).lower()
    if machine not in ("x86_64", "amd64", "i386", "i486", "i586", "i686"):
        return None
    text = _read_text(path)
    if text is None:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            return "hypervisor" in value.split()
    return False


@functools.lru_cache(maxsize=1)
def _probe_vm() -> bool:
    """Probe once per process: systemd-detect-virt, else DMI, else the x86 CPU flag."""
    verdict = _vm_from_tool()
    if verdict is not None:
        return verdict
    if _vm_from_dmi():
        return True
    return bool(_vm_from_cpuinfo())


def detect_vm() -> bool:
    """True when this process runs inside a virtual machine (``ASCEND_SAFE_VM`` overrides)."""
    raw = os.environ.get(ENV_VM, "").strip().lower()
    if raw:
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{ENV_VM} must be 0 or 1, got {raw!r}")
    return _probe_vm()


def process_limit(soc_name: str | None) -> int:
    """Processes allowed per device: ``ASCEND_SAFE_MAX_PROCS``, else the product's CANN limit
    (on the simulator, the simulated machine's)."""
    raw = os.environ.get(ENV_MAX_PROCS, "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value <= 0:
            raise ValueError(f"{ENV_MAX_PROCS} must be a positive integer, got {raw!r}")
        return value
    simulated = _backend.simulated_process_limit()
    if simulated is not None:  # the simulated machine's product and VM flag, not the host's
        return simulated
    return product_limit(soc_name, vm=detect_vm())


# ---------------------------------------------------------------------------
# Slot files
# ---------------------------------------------------------------------------


def slot_dir() -> str:
    """Directory of the slot files: ``ASCEND_SAFE_SLOT_DIR``, else, on the simulator, one in
    the simulated machine's state directory, else one in /dev/shm or tmp.

    Only computes the path; :func:`acquire` creates and checks the directory when it needs it.
    """
    configured = os.environ.get(ENV_SLOT_DIR, "").strip()
    if configured:
        return configured
    simulated = _backend.simulated_slot_dir()
    if simulated is not None:
        return simulated
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK):
        return os.path.join(shm, _SLOT_DIR_NAME)
    return os.path.join(tempfile.gettempdir(), _SLOT_DIR_NAME)


#: Mode of the shared slot directory (like ``/run/lock``): every user may create slot files in
#: it, and the sticky bit lets only a file's owner (or the directory's owner, or root) delete it.
SHARED_DIR_MODE = 0o1777
#: Mode of the directories above it that this module creates for a configured path.
_PARENT_DIR_MODE = 0o755
#: Mode of a slot file: other users' processes need only read access to ``flock`` it, so only
#: its creator can write (no planted PIDs in someone else's file).
SLOT_FILE_MODE = 0o644
_DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_OPEN = os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
_MAX_SYMLINKS = 40
_PROC_LOCKS = "/proc/locks"


def _unsafe(path: str, problem: str, fix: str) -> SlotDirectoryError:
    return SlotDirectoryError(
        path,
        f"process-slot directory: {path} {problem}, so another user could tamper with the slot "
        f"files. To fix: {fix}; or set {ENV_SLOT_DIR} to a directory that only trusted users "
        "can write.",
    )


def _check_dir(fd: int, path: str, *, last: bool, repair: bool = True) -> None:
    """Trust the opened directory *path* only if no other user can swap its entries (with
    *repair*, our own shared directory that lost its sticky bit gets it back)."""
    st = os.fstat(fd)
    uid = os.geteuid()
    if st.st_uid not in (0, uid):
        fix = (
            f"have an administrator create it owned by root: "
            f"'sudo install -d -m 1777 -o root {path}'"
            if last
            else f"use a path whose directories belong to root or to uid {uid}"
        )
        raise _unsafe(path, f"belongs to uid {st.st_uid}, neither root nor this user", fix)
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        if repair and last and st.st_uid == uid:  # our own shared directory, no sticky bit
            os.fchmod(fd, stat.S_IMODE(st.st_mode) | stat.S_ISVTX)
            return
        raise _unsafe(
            path,
            f"is writable by other users (mode {stat.S_IMODE(st.st_mode):04o}) without the "
            "sticky bit, so they can rename or delete what it holds",
            f"'chmod +t {path}' (or 'chmod go-w {path}')",
        )


def _make_dir(parent_fd: int, name: str, path: str, last: bool) -> int:
    """Create the missing directory *name* with a safe mode and open it."""
    try:
        os.mkdir(name, SHARED_DIR_MODE if last else _PARENT_DIR_MODE, dir_fd=parent_fd)
    except FileExistsError:
        pass  # made meanwhile by another process: checked like any other
    except OSError as exc:
        raise SlotDirectoryError(
            path,
            f"cannot create the process-slot directory {path}: {exc.strerror}. To fix: create "
            f"it ('sudo install -d -m 1777 -o root {path}') or set {ENV_SLOT_DIR} to a "
            "writable directory.",
        ) from None
    fd = os.open(name, _DIR_OPEN, dir_fd=parent_fd)
    if last and os.fstat(fd).st_uid == os.geteuid():
        os.fchmod(fd, SHARED_DIR_MODE)  # the umask dropped the sticky and write bits
    return fd


def _not_a_dir(parent_fd: int, name: str, path: str, exc: OSError) -> SlotDirectoryError:
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except OSError:
        return SlotDirectoryError(
            path, f"cannot open the process-slot directory {path}: {exc.strerror}"
        )
    what = "a file" if stat.S_ISREG(st.st_mode) else "something that is not a directory"
    return SlotDirectoryError(
        path,
        f"process-slot directory: {path} is {what} (uid {st.st_uid}), not a directory. "
        f"To fix: remove it, or set {ENV_SLOT_DIR} to another path.",
    )


def _open_slot_dir(path: str, *, create: bool = True) -> int:
    """Open *path* one component at a time, never following a symlink another user could have
    planted, creating what is missing with safe modes; a descriptor of the checked directory.

    Each component is opened ``O_NOFOLLOW | O_DIRECTORY`` relative to the already checked one
    (``openat``), so renaming or replacing a component cannot redirect this walk. A symlink in
    the path is followed only if root or this user owns it. Without *create*, nothing is
    created or repaired: a missing component raises ``FileNotFoundError``.
    """
    if not os.path.isabs(path):
        raise SlotDirectoryError(
            path, f"{ENV_SLOT_DIR} must be an absolute path, got {path!r}"
        )
    fd = os.open("/", _DIR_OPEN)
    try:
        _check_dir(fd, "/", last=False, repair=create)
        pending = [n for n in reversed(path.split("/")) if n not in ("", ".")]
        here = "/"
        links = 0
        while pending:
            name = pending.pop()
            last = not pending
            step = os.path.normpath(os.path.join(here, name))
            try:
                child = os.open(name, _DIR_OPEN, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                child = _make_dir(fd, name, step, last)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise SlotDirectoryError(
                        step,
                        f"cannot open the process-slot directory {step}: {exc.strerror}. To "
                        f"fix: make it accessible, or set {ENV_SLOT_DIR} to another path.",
                    ) from None
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    raise _not_a_dir(fd, name, step, exc) from None
                if st.st_uid not in (0, os.geteuid()):
                    raise _unsafe(
                        step,
                        f"is a symbolic link owned by uid {st.st_uid}, neither root nor this "
                        "user (possibly planted to redirect the slot files)",
                        "remove it and check what created it; use a path without it",
                    ) from None
                links += 1
                if links > _MAX_SYMLINKS:
                    raise SlotDirectoryError(step, f"too many symbolic links in {path}") from None
                target = os.readlink(name, dir_fd=fd)
                pending.extend(n for n in reversed(target.split("/")) if n not in ("", "."))
                if target.startswith("/"):
                    os.close(fd)
                    fd = -1
                    fd = os.open("/", _DIR_OPEN)
                    here = "/"
                continue
            os.close(fd)
            fd = child
            here = step
            _check_dir(fd, path if last else step, last=last, repair=create)
        return fd
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise


def _slot_name(device: int, index: int) -> str:
    return f"dev{device}.slot{index}"


def _open_slot_file(
    dir_fd: int, name: str, directory: str
) -> tuple[Optional[int], Optional[str]]:
    """Open (creating) one slot file close-on-exec in the checked directory.

    ``(fd, None)`` for a usable slot file; ``(None, why)`` when the entry is something else (a
    planted symlink, FIFO, directory or hard link), ``(None, None)`` if it just vanished.
    """
    try:
        fd = os.open(name, _FILE_OPEN | os.O_RDWR | os.O_CREAT | os.O_EXCL, SLOT_FILE_MODE,
                     dir_fd=dir_fd)
    except FileExistsError:
        pass
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise SlotDirectoryError(
                directory,
                f"cannot create slot files in the process-slot directory {directory}: "
                f"{exc.strerror}. To fix: make it shared "
                f"('sudo install -d -m 1777 -o root {directory}'), or set {ENV_SLOT_DIR} to a "
                "directory this user can write.",
            ) from None
        raise
    else:
        os.fchmod(fd, SLOT_FILE_MODE)  # ours and brand new: exactly rw-r--r--, whatever the umask
        return fd, None
    try:
        fd = os.open(name, _FILE_OPEN | os.O_RDWR, dir_fd=dir_fd)
    except PermissionError:  # another user's slot file: locking needs only read access
        try:
            fd = os.open(name, _FILE_OPEN | os.O_RDONLY, dir_fd=dir_fd)
        except OSError as exc:
            return None, f"cannot be opened ({exc.strerror})"
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, "is a symbolic link"
        return None, f"is not a slot file ({exc.strerror})"
    st = os.fstat(fd)
    why = None
    if not stat.S_ISREG(st.st_mode):
        why = "is not a regular file"
    elif st.st_nlink != 1:
        why = f"has {st.st_nlink} hard links"
    if why is not None:
        os.close(fd)
        return None, why
    return fd, None


def _read_pid(fd: int) -> Optional[int]:
    try:
        text = os.pread(fd, _PID_READ_SIZE, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def _lock_owners() -> Optional[dict[tuple[int, int, int], int]]:
    """``(major, minor, inode) -> pid`` of every ``flock`` write lock, from the kernel's own
    table (which no other user can fake); None when it cannot be read."""
    try:
        with open(_PROC_LOCKS, encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    owners: dict[tuple[int, int, int], int] = {}
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK" or fields[3] != "WRITE":
            continue  # "->" marks a waiter; POSIX locks and read locks are not slots
        try:
            pid = int(fields[4])
            major, minor, inode = fields[5].split(":")
            owners[(int(major, 16), int(minor, 16), int(inode))] = pid
        except ValueError:
            continue
    return owners


def _holder(fd: int, owners: Optional[dict[tuple[int, int, int], int]]) -> Optional[int]:
    """The PID holding the slot open on *fd*: the kernel's lock table, else the file's text."""
    if owners is not None:
        st = os.fstat(fd)
        pid = owners.get((os.major(st.st_dev), os.minor(st.st_dev), st.st_ino))
        if pid is not None and pid > 0:
            return pid
    return _read_pid(fd)


# ---------------------------------------------------------------------------
# Registry (guarded by _lock, which fork waits for so a child never sees it half-updated)
# ---------------------------------------------------------------------------

_lock = threading.RLock()
_held: list[DeviceSlot] = []
#: Every slot descriptor this module has open, held or mid-scan.
_open_fds: set[int] = set()


def _close_fd(fd: int) -> None:
    _open_fds.discard(fd)
    try:
        os.close(fd)
    except OSError:
        pass


class DeviceSlot:
    """One held slot of a device: a locked slot file; the kernel frees it if we die."""

    __slots__ = ("_device", "_fd", "_index", "_path", "_pid", "_released")

    def __init__(self, device: int, index: int, fd: int, path: str) -> None:
        self._device = device
        self._index = index
        self._fd = fd
        self._path = path
        self._pid = os.getpid()
        self._released = False

    @property
    def device(self) -> int:
        """The device id."""
        return self._device

    @property
    def index(self) -> int:
        """Which slot (0 .. limit-1) this is."""
        return self._index

    @property
    def pid(self) -> int:
        """The PID of the process that acquired the slot."""
        return self._pid

    @property
    def path(self) -> str:
        """The slot file."""
        return self._path

    @property
    def released(self) -> bool:
        """True once released here (or in a forked child, which never owns the slot)."""
        return self._released

    def release(self) -> None:
        """Give the slot back; calling it again does nothing."""
        with _lock:
            if self._released:
                return
            self._released = True
            if self in _held:
                _held.remove(self)
            fd, self._fd = self._fd, -1
            if os.getpid() == self._pid:
                try:
                    if os.fstat(fd).st_uid == os.geteuid():  # only our own files are written
                        os.ftruncate(fd, 0)  # no stale PID for the next reader
                except OSError:
                    pass
                try:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                except OSError:
                    pass
            # In another process (a child that ran no fork hook) only close: unlocking would
            # free the owner's slot, which is shared through the open file description.
            _close_fd(fd)

    def _forget(self) -> None:
        """Forked child: drop the inherited descriptor without touching the parent's lock."""
        self._released = True
        fd, self._fd = self._fd, -1
        if fd >= 0:
            _close_fd(fd)

    def __enter__(self) -> DeviceSlot:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        status = "released" if self._released else "held"
        return f"<DeviceSlot device={self._device} index={self._index} pid={self._pid} {status}>"


def held_slots() -> list[DeviceSlot]:
    """The slots this process holds, oldest first."""
    with _lock:
        return list(_held)


def _try_once(device: int, limit: int) -> tuple[Optional[DeviceSlot], list[int], list[str]]:
    """One non-blocking pass over the slots: a slot, or the PIDs found holding them and the
    entries that are not slot files."""
    directory = slot_dir()
    holders: list[int] = []
    junk: list[str] = []
    owners: Optional[dict[tuple[int, int, int], int]] = None
    read_owners = False
    with _lock:
        dir_fd = _open_slot_dir(directory)
        try:
            for index in range(limit):
                name = _slot_name(device, index)
                path = os.path.join(directory, name)
                fd, why = _open_slot_file(dir_fd, name, directory)
                if fd is None:
                    if why is not None:
                        junk.append(f"{path} ({why})")
                    continue
                _open_fds.add(fd)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        _close_fd(fd)
                        raise
                    if not read_owners:
                        owners, read_owners = _lock_owners(), True
                    pid = _holder(fd, owners)
                    if pid is not None and pid not in holders:
                        holders.append(pid)
                    _close_fd(fd)
                    continue
                if os.fstat(fd).st_uid == os.geteuid():  # only ever write to our own files
                    try:
                        os.ftruncate(fd, 0)
                        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
                    except OSError:  # opened read-only: held all the same
                        pass
                slot = DeviceSlot(device, index, fd, path)
                _held.append(slot)
                return slot, holders, junk
        finally:
            os.close(dir_fd)
    return None, holders, junk


def _limit_message(
    device: int,
    limit: int,
    holders: list[int],
    directory: str,
    waited: Optional[float],
    junk: list[str],
) -> str:
    who = ", ".join(str(pid) for pid in holders) if holders else "unknown (PIDs not recorded)"
    wait = f" after waiting {waited:.2f} s" if waited else ""
    blocked = (
        f" Not slot files, each taking a slot's name (remove them): {'; '.join(junk)}."
        if junk
        else ""
    )
    return (
        f"device {device}: all {limit} process slots are taken{wait}, so this process may not "
        f"use it (CANN caps the processes per device; one more would fail with an obscure "
        f"runtime error). Held by PIDs: {who} (slot files in {directory}). "
        f"To fix: close some of those processes; or wait for a free slot by passing a timeout; "
        f"raise {ENV_MAX_PROCS} only if your product really allows more processes per device."
        f"{blocked}"
    )


def acquire(device: int, limit: int, *, timeout: float | None = 0.0) -> DeviceSlot:
    """Take a free slot of *device*, allowing at most *limit* holders at once.

    *timeout* is how long to wait for a slot to free up: 0 (default) fails at once, ``None``
    or ``math.inf`` wait forever. Raises :class:`ProcessLimitError` when no slot could be had.
    """
    if isinstance(device, bool) or not isinstance(device, int) or device < 0:
        raise ValueError(f"device must be a non-negative int, got {device!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive int, got {limit!r}")
    timeout = _validate.timeout(timeout, "timeout", maximum=None)
    start = time.monotonic()
    delay = _POLL_FIRST
    while True:
        slot, holders, junk = _try_once(device, limit)
        if slot is not None:
            return slot
        waited = time.monotonic() - start
        if timeout is not None and waited >= timeout:
            message = _limit_message(
                device, limit, holders, slot_dir(), waited if timeout else None, junk
            )
            cls = SlotWaitTimeoutError if timeout else ProcessLimitError
            raise cls(device, limit, tuple(holders), message)
        pause = delay if timeout is None else min(delay, timeout - waited)
        time.sleep(max(pause, 0.0))  # the lock is not held here: other threads may release
        delay = min(delay * 2, _POLL_MAX)


def open_lock_file(name: str) -> tuple[int, str]:
    """Open (creating) the lock file *name* in :func:`slot_dir`, with the slot files' defences
    (checked directory walk, ``O_EXCL | O_NOFOLLOW`` creation, read-only for another user's
    file, no symlink, FIFO or hard link), close-on-exec; ``(fd, path)``.

    The descriptor is closed in a forked child without being unlocked (like the slots'), so a
    child never pins a lock its parent holds. Raises :class:`SlotDirectoryError` when the
    directory or the entry cannot be trusted.
    """
    if not name or "/" in name or name in (".", "..") or _SLOT_NAME.fullmatch(name):
        raise ValueError(f"lock file name must be a plain name, not a slot's: {name!r}")
    directory = slot_dir()
    path = os.path.join(directory, name)
    with _lock:
        dir_fd = _open_slot_dir(directory)
        try:
            for _ in range(3):  # an entry that vanished between two opens: try again
                fd, why = _open_slot_file(dir_fd, name, directory)
                if fd is not None:
                    _open_fds.add(fd)
                    return fd, path
                if why is not None:
                    raise SlotDirectoryError(
                        directory,
                        f"lock file {path} {why}, so it cannot be used. To fix: remove it "
                        "(it is recreated on use) and check what created it.",
                    )
        finally:
            os.close(dir_fd)
    raise SlotDirectoryError(directory, f"lock file {path} keeps vanishing while opened")


# ---------------------------------------------------------------------------
# Survey (read-only, for diagnosis)
# ---------------------------------------------------------------------------

_SLOT_NAME = re.compile(r"dev(\d+)\.slot(\d+)")


class SlotSurvey(NamedTuple):
    """What the slot directory holds, seen without taking, creating or changing anything."""

    #: The directory looked at.
    directory: str
    #: False when it does not exist yet (it is created on first use).
    exists: bool
    #: Device id -> PIDs holding one of its slots (from the kernel's lock table).
    holders: dict[int, list[int]]
    #: Device id -> slot files nobody holds: left by processes that ended, reused as they are.
    unheld: dict[int, int]
    #: Entries with a slot file's name that are not slot files (each blocks a slot).
    junk: list[str]
    #: False when ``/proc/locks`` could not be read (holders then come from the files' text).
    locks_readable: bool


def survey(directory: Optional[str] = None) -> SlotSurvey:
    """Look at the slot directory (default :func:`slot_dir`): who holds which device's slots,
    which slot files nobody holds, which entries are not slot files.

    Checks the directory's safety like :func:`acquire` (raising :class:`SlotDirectoryError`)
    but creates, repairs, locks and writes nothing.
    """
    path = slot_dir() if directory is None else directory
    try:
        dir_fd = _open_slot_dir(path, create=False)
    except FileNotFoundError:
        return SlotSurvey(path, False, {}, {}, [], True)
    owners = _lock_owners()
    holders: dict[int, list[int]] = {}
    unheld: dict[int, int] = {}
    junk: list[str] = []
    try:
        for name in sorted(os.listdir(dir_fd)):
            match = _SLOT_NAME.fullmatch(name)
            if match is None:
                continue
            device = int(match.group(1))
            try:
                fd = os.open(name, _FILE_OPEN | os.O_RDONLY, dir_fd=dir_fd)
            except OSError as exc:
                junk.append(f"{os.path.join(path, name)} ({exc.strerror})")
                continue
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                    junk.append(f"{os.path.join(path, name)} (not a slot file)")
                    continue
                key = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
                pid = owners.get(key) if owners is not None else _read_pid(fd)
                if pid:
                    holders.setdefault(device, []).append(pid)
                else:
                    unheld[device] = unheld.get(device, 0) + 1
            finally:
                os.close(fd)
    finally:
        os.close(dir_fd)
    return SlotSurvey(path, True, holders, unheld, junk, owners is not None)


# ---------------------------------------------------------------------------
# Fork
# ---------------------------------------------------------------------------


def _after_fork_in_child() -> None:
    """Close inherited slot descriptors without unlocking them; the parent keeps its slots."""
    global _lock
    _lock = threading.RLock()  # the parent's lock may be held by a thread that is not here
    for slot in _held:
        slot._forget()
    _held.clear()
    for fd in list(_open_fds):
        _close_fd(fd)


def _before_fork() -> None:
    _lock.acquire()  # so no child is made mid-scan, with a locked fd not yet registered


def _after_fork_in_parent() -> None:
    _lock.release()


_process.on_fork_child(_after_fork_in_child)
os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent)

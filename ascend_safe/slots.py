"""Cross-process "slots" that cap how many processes use one Ascend device.

CANN allows only so many processes per device (63 on Atlas A2 / A3, 64 on other products, 32
inside a virtual machine); one more fails deep inside the runtime with an obscure error. Before
a process uses a device it takes a slot: a file ``dev<N>/slot<i>`` under :func:`slot_dir`,
locked with ``flock``. The kernel drops the lock when the holder dies, even by ``SIGKILL``, so
a crashed process never leaks its slot. When every slot is taken, :func:`acquire` raises
:class:`~ascend_safe.errors.ProcessLimitError` naming the device, the limit and the holders.

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
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from types import TracebackType
from typing import Optional

from . import _backend, _process
from .errors import ProcessLimitError

__all__ = [
    "DeviceSlot",
    "acquire",
    "detect_vm",
    "held_slots",
    "process_limit",
    "product_limit",
    "slot_dir",
]

#: Environment variable overriding the per-device process limit (a positive integer).
ENV_MAX_PROCS = "ASCEND_SAFE_MAX_PROCS"
#: Environment variable overriding virtual-machine detection (``0`` or ``1``).
ENV_VM = "ASCEND_SAFE_VM"
#: Environment variable choosing the directory that holds the slot files.
ENV_SLOT_DIR = "ASCEND_SAFE_SLOT_DIR"

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
    """Processes allowed per device: ``ASCEND_SAFE_MAX_PROCS`` or the product's CANN limit."""
    raw = os.environ.get(ENV_MAX_PROCS, "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value <= 0:
            raise ValueError(f"{ENV_MAX_PROCS} must be a positive integer, got {raw!r}")
        return value
    return product_limit(soc_name, vm=detect_vm())


# ---------------------------------------------------------------------------
# Slot files
# ---------------------------------------------------------------------------


def slot_dir() -> str:
    """Directory of the slot files: ``ASCEND_SAFE_SLOT_DIR``, else, on the simulator, one in
    the simulated machine's state directory, else one in /dev/shm or tmp.

    Only computes the path; :func:`acquire` creates the directories when it needs them.
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


def _make_shared_dir(path: str) -> None:
    """Create *path*; a directory we create is opened to all users so they share slots."""
    if os.path.isdir(path):
        return
    os.makedirs(path, exist_ok=True)
    try:
        os.chmod(path, 0o777)
    except OSError:  # created concurrently by another user: theirs to set
        pass


def _device_dir(device: int) -> str:
    base = slot_dir()
    _make_shared_dir(base)
    path = os.path.join(base, f"dev{device}")
    _make_shared_dir(path)
    return path


def _open_slot_file(path: str) -> Optional[int]:
    """Open (creating) one slot file close-on-exec; None when it is unusable."""
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o666)
    except PermissionError:
        # Created by another user without group/other write: lock it read-only.
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a planted symlink: never follow it
            return None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        os.fchmod(fd, 0o666)
    except OSError:  # fchmod of another user's file: harmless
        pass
    return fd


def _read_pid(fd: int) -> Optional[int]:
    try:
        text = os.pread(fd, _PID_READ_SIZE, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


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


def _try_once(device: int, limit: int) -> tuple[Optional[DeviceSlot], list[int]]:
    """One non-blocking pass over the slots: a slot, or the PIDs found in the held ones."""
    directory = _device_dir(device)
    holders: list[int] = []
    with _lock:
        for index in range(limit):
            path = os.path.join(directory, f"slot{index}")
            fd = _open_slot_file(path)
            if fd is None:
                continue
            _open_fds.add(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    _close_fd(fd)
                    raise
                pid = _read_pid(fd)
                if pid is not None and pid not in holders:
                    holders.append(pid)
                _close_fd(fd)
                continue
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
            except OSError:  # read-only slot file: held all the same, PID not listed
                pass
            slot = DeviceSlot(device, index, fd, path)
            _held.append(slot)
            return slot, holders
    return None, holders


def _limit_message(
    device: int, limit: int, holders: list[int], directory: str, waited: Optional[float]
) -> str:
    who = ", ".join(str(pid) for pid in holders) if holders else "unknown (PIDs not recorded)"
    wait = f" after waiting {waited:.2f} s" if waited else ""
    return (
        f"device {device}: all {limit} process slots are taken{wait}, so this process may not "
        f"use it (CANN caps the processes per device; one more would fail with an obscure "
        f"runtime error). Held by PIDs: {who} (slot files in {directory}). "
        f"To fix: close some of those processes; or wait for a free slot by passing a timeout; "
        f"raise {ENV_MAX_PROCS} only if your product really allows more processes per device."
    )


def acquire(device: int, limit: int, *, timeout: float | None = 0.0) -> DeviceSlot:
    """Take a free slot of *device*, allowing at most *limit* holders at once.

    *timeout* is how long to wait for a slot to free up: 0 (default) fails at once, ``None``
    waits forever. Raises :class:`ProcessLimitError` when no slot could be had.
    """
    if isinstance(device, bool) or not isinstance(device, int) or device < 0:
        raise ValueError(f"device must be a non-negative int, got {device!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive int, got {limit!r}")
    if timeout is not None and not timeout >= 0:  # also rejects NaN
        raise ValueError(f"timeout must be >= 0 seconds or None, got {timeout!r}")
    start = time.monotonic()
    delay = _POLL_FIRST
    while True:
        slot, holders = _try_once(device, limit)
        if slot is not None:
            return slot
        waited = time.monotonic() - start
        if timeout is not None and waited >= timeout:
            directory = os.path.join(slot_dir(), f"dev{device}")
            message = _limit_message(device, limit, holders, directory, waited if timeout else None)
            raise ProcessLimitError(device, limit, tuple(holders), message)
        pause = delay if timeout is None else min(delay, timeout - waited)
        time.sleep(max(pause, 0.0))  # the lock is not held here: other threads may release
        delay = min(delay * 2, _POLL_MAX)


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

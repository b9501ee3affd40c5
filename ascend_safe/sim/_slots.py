"""Cross-process per-device slots: one ``flock``-ed file per slot, freed by the kernel on death."""

from __future__ import annotations

import fcntl
import os
from typing import Optional

__all__ = ["acquire", "close_inherited", "release"]


def acquire(directory: str, device: int, limit: int) -> Optional[int]:
    """Lock a free slot file for *device*; its fd, or None when all *limit* slots are taken."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    for index in range(limit):
        path = os.path.join(directory, f"device{device}.slot{index}")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass
        return fd
    return None


def release(fd: int) -> None:
    """Give a slot back (closing the fd drops the lock)."""
    try:
        os.close(fd)
    except OSError:
        pass


def close_inherited(fds: list[int]) -> None:
    """In a forked child: close (never unlock) slot fds inherited from the parent."""
    for fd in fds:
        release(fd)

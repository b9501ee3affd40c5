"""Reusable page-locked buffers for async copies of pageable host data.

pyacl's ``memcpy_async`` needs pinned, 64-byte aligned host memory, and pinning is expensive,
so each device session keeps a few staging buffers (in power-of-two size classes, at most
:data:`MAX_POOLED_BYTES` idle) instead of allocating one per copy. A staging buffer is always
wholly overwritten by the copy before any byte of it reaches the user, so it needs no fill.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Protocol


class Pinned(Protocol):
    """A page-locked buffer as the pool sees it (the memory module's staging memory)."""

    @property
    def ptr(self) -> int: ...

    @property
    def size(self) -> int: ...

    @property
    def closed(self) -> bool: ...

    _users: Any

    def close(self) -> None: ...

__all__ = ["MAX_POOLED_BYTES", "Pinned", "StagingPool"]

#: Idle staging memory a device session keeps for reuse.
MAX_POOLED_BYTES = 64 << 20
_MIN_CLASS = 4096


_LARGE = 1 << 20


def _size_class(nbytes: int) -> int:
    """Powers of two up to 1 MiB; above that, whole MiBs (no doubling of large copies)."""
    if nbytes > _LARGE:
        return -(-nbytes // _LARGE) * _LARGE
    return max(_MIN_CLASS, 1 << (nbytes - 1).bit_length())


class StagingPool:
    """Idle staging buffers of one device session, by size class."""

    __slots__ = ("_allocate", "_idle", "_idle_bytes", "_lock")

    def __init__(self, allocate: Callable[[int], Pinned]) -> None:
        #: makes a new unfilled staging buffer of the given size (the device session's)
        self._allocate = allocate
        self._lock = threading.RLock()  # a finalizer may run while it is held
        self._idle: dict[int, list[Pinned]] = {}
        self._idle_bytes = 0

    def take(self, nbytes: int) -> Pinned:
        """A staging buffer of at least *nbytes*, reused if one is idle."""
        size = _size_class(nbytes)
        with self._lock:
            bucket = self._idle.get(size)
            while bucket:
                buffer = bucket.pop()
                self._idle_bytes -= size
                if not buffer.closed:  # a closing device may have freed it
                    return buffer
        return self._allocate(size)

    def give(self, buffer: Pinned) -> None:
        """Take *buffer* back once the copy that used it is known complete."""
        buffer._users = None  # its only user was that copy
        if buffer.closed:
            return
        size = buffer.size
        with self._lock:
            if size <= MAX_POOLED_BYTES // 4 and self._idle_bytes + size <= MAX_POOLED_BYTES:
                self._idle.setdefault(size, []).append(buffer)
                self._idle_bytes += size
                return
        buffer.close()

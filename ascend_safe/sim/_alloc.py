"""Simulated memory: the device address range, allocations with real backing bytes, lookup."""

from __future__ import annotations

import bisect
import ctypes
from typing import Optional

__all__ = [
    "DEVICE_BASE",
    "DEVICE_END",
    "DVPP_OFFSET",
    "GUARD",
    "PATTERN",
    "REGION",
    "Alloc",
    "RangeMap",
    "is_device_address",
    "round_size",
]

#: Device pointers live at and above 2**48, where no x86-64/arm64 user-space host address can be.
DEVICE_BASE = 1 << 48
#: Each device owns one region; its DVPP heap is the upper half.
REGION = 1 << 41
DVPP_OFFSET = 1 << 40
DEVICE_END = DEVICE_BASE + 64 * REGION
#: Gap left after every device allocation, so a pointer just past the end is caught as foreign.
GUARD = 4096
#: Garbage written into every fresh allocation, so a missing memset shows.
PATTERN = b"\xde\xad\xbe\xef"


def is_device_address(ptr: int) -> bool:
    """Whether *ptr* lies in the simulated device address range."""
    return DEVICE_BASE <= ptr < DEVICE_END


def round_size(size: int, plus32: bool = True) -> int:
    """Size as the runtime reserves it: a multiple of 32, plus 32 unless align32."""
    rounded = (size + 31) // 32 * 32
    return rounded + 32 if plus32 else rounded


class Alloc:
    """One allocation: its visible pointer, requested and reserved sizes, and real bytes."""

    __slots__ = (
        "anchor",
        "buf",
        "device",
        "extent",
        "freed",
        "kind",
        "pending",
        "ptr",
        "real",
        "size",
    )

    def __init__(self, kind: str, ptr: int, size: int, extent: int, device: int) -> None:
        self.kind = kind
        self.ptr = ptr
        self.size = size
        self.extent = extent
        self.device = device
        self.freed = False
        self.pending = 0
        self.buf: Optional[bytearray] = None
        self.anchor: Optional[ctypes.c_char] = None
        self.real = 0

    def back(self, nbytes: int, align: int = 1) -> None:
        """Give the allocation real, garbage-filled bytes (*align*-ed real address)."""
        total = nbytes + align
        total += -total % 4
        buf = bytearray(PATTERN) * (total // 4)
        anchor = ctypes.c_char.from_buffer(buf)
        addr = ctypes.addressof(anchor)
        self.buf = buf
        self.anchor = anchor
        self.real = (addr + align - 1) // align * align

    def drop(self) -> None:
        """Release the backing bytes (after free, once nothing may touch them)."""
        self.anchor = None
        self.buf = None

    @property
    def is_device(self) -> bool:
        """Device or DVPP memory (not host)."""
        return self.kind != "host_memory"


class RangeMap:
    """Allocations sorted by start address, found by any address inside their reserved extent."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._items: list[Alloc] = []

    def add(self, alloc: Alloc) -> None:
        """Insert *alloc*."""
        index = bisect.bisect_left(self._starts, alloc.ptr)
        self._starts.insert(index, alloc.ptr)
        self._items.insert(index, alloc)

    def remove(self, alloc: Alloc) -> None:
        """Remove *alloc* if present."""
        index = bisect.bisect_left(self._starts, alloc.ptr)
        while index < len(self._starts) and self._starts[index] == alloc.ptr:
            if self._items[index] is alloc:
                del self._starts[index]
                del self._items[index]
                return
            index += 1

    def find(self, ptr: int) -> Optional[Alloc]:
        """The allocation whose reserved extent contains *ptr*, if any."""
        index = bisect.bisect_right(self._starts, ptr) - 1
        if index >= 0:
            item = self._items[index]
            if ptr < item.ptr + item.extent:
                return item
        return None

    def clear(self) -> None:
        """Forget everything."""
        self._starts.clear()
        self._items.clear()

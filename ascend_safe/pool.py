"""A caching allocator of device memory: freed blocks are kept and handed out again.

``acl.rt.malloc`` and ``acl.rt.free`` are runtime calls (and a free synchronizes nothing: the
library must drain the streams using the memory first), so programs that allocate and free
buffers of the same sizes in a loop pay for them every time. A :class:`MemoryPool` keeps freed
blocks by size class and hands them out again:

- sizes are rounded up to a class: powers of two from 512 bytes to 1 MiB, then whole MiBs;
- every block handed out is zero-filled again (``memset_async`` on the stream it is allocated
  for, ``memset`` otherwise), so no request ever sees the data of a previous one;
- reuse is stream-aware: a block freed while streams still have work queued on it is handed
  out again only for one of those streams (stream order makes that safe), or once that work is
  known complete;
- :attr:`MemoryPool.stats` counts bytes in use, cached and at peak, hits and misses;
- *limit* caps the bytes the pool holds (in use plus cached); past it the cache is flushed and,
  if that is not enough, :class:`~ascend_safe.errors.PoolLimitError` is raised;
- on :class:`~ascend_safe.errors.OutOfDeviceMemoryError` the cache is flushed and the
  allocation tried once more; memory admission (:mod:`ascend_safe.admission`) also flushes it
  before it refuses or delays any other allocation on the device.

The cached blocks are :class:`~ascend_safe.memory.DeviceMemory` objects, children of the
device like any other: a device close (or the exit teardown) frees them in order, waiting for
their streams first, and a leak report lists them. A block handed out is a
:class:`PooledMemory`, a memory object like any other whose ``close()`` gives the block back.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any, NamedTuple

from . import _lifetime, admission
from .errors import OutOfDeviceMemoryError, PoolLimitError, ResourceClosedError
from .memory import UNINITIALIZED, DeviceMemory, Memory
from .stream import Stream

if TYPE_CHECKING:
    from .device import Device

__all__ = ["MemoryPool", "MemoryPoolStats", "PooledMemory", "size_class"]

_MIN_CLASS = 512
_LARGE = 1 << 20


def size_class(nbytes: int) -> int:
    """The block size the pool uses for a request of *nbytes*: powers of two from 512 bytes
    to 1 MiB, whole MiBs above (at most half of a small block, under 1 MiB of a large one,
    is unused)."""
    if nbytes > _LARGE:
        return -(-nbytes // _LARGE) * _LARGE
    return max(_MIN_CLASS, 1 << (nbytes - 1).bit_length())


class MemoryPoolStats(NamedTuple):
    """A snapshot of a pool's counters (sizes in bytes of whole blocks)."""

    in_use: int
    cached: int
    peak: int
    hits: int
    misses: int
    limit: int | None


class _Cached(NamedTuple):
    """A free block, and the streams that still had work queued on it when it was freed."""

    block: DeviceMemory
    streams: tuple[Stream, ...]


class PooledMemory(Memory):
    """Device memory handed out by a :class:`MemoryPool` (zero-filled, like any allocation).

    It is used like :class:`~ascend_safe.memory.DeviceMemory`; :attr:`size` is the size asked
    for. ``close()`` (or leaving its ``with`` block) gives the block back to the pool instead
    of freeing it; work still queued on it is not waited for, the pool keeps track of it.
    """

    kind = "pooled memory"
    __slots__ = ("_block", "_pool")

    def __init__(self, pool: MemoryPool, block: DeviceMemory, size: int) -> None:
        self._pool = pool
        self._block = block
        super().__init__(pool.device, size, fill=UNINITIALIZED)

    def _allocate(self, size: int, **alloc: Any) -> int:
        ptr: int = self._block.ptr  # the block's memory, from the pool
        return ptr

    def _release(self, handle: Any) -> None:
        self._pool._give_back(self._block, _queued_streams(self))

    @property
    def block_size(self) -> int:
        """Bytes of the block behind it (the request rounded up to its size class)."""
        return self._block.size

    def _describe(self) -> str:
        return f"{super()._describe()} block={self._block.size}"


def _queued_streams(memory: Memory) -> tuple[Stream, ...]:
    """The streams that may still have work queued on *memory* (read from the record the
    copy and fill operations keep for the wait before a free)."""
    streams: list[Stream] = []
    users = memory._users
    if not users:
        return ()
    for ref in list(users.values()):
        stream = ref()
        if stream is not None and not stream.closed and stream.busy:
            streams.append(stream)
    return tuple(streams)


def _done(streams: tuple[Stream, ...], stream: Stream | None) -> bool:
    """Whether a block freed with work on *streams* may be handed out for *stream*."""
    for other in streams:
        if other is stream or other.closed or not other.busy:
            continue
        try:
            if not other.query():
                return False
        except ResourceClosedError:
            continue  # closed meanwhile: its close drained it
    return True


class MemoryPool:
    """A caching allocator of device memory on *device* (see the module documentation).

    ``pool.malloc(size, stream=s)`` returns a zero-filled :class:`PooledMemory`; closing it
    returns the block for reuse. *limit* caps the bytes of blocks the pool holds. Use it as a
    context manager, or call :meth:`close`, to free the cached blocks when done; blocks still
    in use are freed when they are closed.
    """

    def __init__(self, device: Device, *, limit: int | None = None) -> None:
        if limit is not None and (not isinstance(limit, int) or limit <= 0):
            raise ValueError(f"MemoryPool limit must be a positive number of bytes, got {limit!r}")
        if device.closed:
            raise ResourceClosedError(f"MemoryPool needs an open device, got {device!r}")
        self._device = device
        self._limit = limit
        self._lock = threading.Lock()
        self._free: dict[int, list[_Cached]] = {}
        self._in_use = 0
        self._cached = 0
        self._peak = 0
        self._hits = 0
        self._misses = 0
        self._closed = False
        ref = weakref.ref(self)
        device_id = device.id

        def flush(dev: int, nbytes: int) -> int:
            pool = ref()
            if pool is None or dev != device_id:
                return 0
            return pool.release_cached()

        self._unregister = admission.on_release_cached(flush)

    # -- public ------------------------------------------------------------------------------

    @property
    def device(self) -> Device:
        """The device session the pool allocates on."""
        return self._device

    @property
    def limit(self) -> int | None:
        """The cap on bytes of blocks held (in use plus cached), or None."""
        return self._limit

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    @property
    def stats(self) -> MemoryPoolStats:
        """Bytes of blocks in use, cached and at peak; requests served from the cache (hits)
        and by a new allocation (misses)."""
        with self._lock:
            return MemoryPoolStats(
                self._in_use, self._cached, self._peak, self._hits, self._misses, self._limit
            )

    def malloc(self, size: int, *, stream: Stream | None = None) -> PooledMemory:
        """A zero-filled block of at least *size* bytes, for use on *stream* (or synchronous
        use when None): zeroed with ``memset_async`` on *stream*, else with ``memset``."""
        if self._closed:
            raise ResourceClosedError(f"{self!r} is closed; make a new MemoryPool")
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"MemoryPool.malloc size must be an int, not {type(size).__name__}")
        if size <= 0:
            raise ValueError(f"MemoryPool.malloc size must be > 0 bytes, got {size}")
        if stream is not None and not isinstance(stream, Stream):
            raise TypeError(f"stream must be a Stream or None, not {type(stream).__name__}")
        _lifetime.drain_deferred()  # blocks dropped without close() come back first
        block = self._take(size_class(size), stream)
        try:
            memory = PooledMemory(self, block, size)
        except BaseException:
            self._give_back(block, (), unless_cached=True)  # a failed open gave it back
            raise
        try:
            if stream is None:
                memory.fill(0)
            else:
                memory.fill(0, stream=stream)
        except BaseException:
            memory.close()
            raise
        return memory

    def release_cached(self) -> int:
        """Free every cached block (waiting first for streams still using them); returns the
        bytes freed. Blocks in use are not touched."""
        with self._lock:
            entries = [entry for bucket in self._free.values() for entry in bucket]
            self._free.clear()
            self._cached = 0
        freed = 0
        for entry in entries:
            freed += self._free_block(entry.block)
        return freed

    def close(self) -> None:
        """Free the cached blocks; blocks still in use are freed when they are closed."""
        if self._closed:
            return
        self._closed = True
        self._unregister()
        self.release_cached()

    def __enter__(self) -> MemoryPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self.stats
        state = "closed" if self._closed else "open"
        return (
            f"<MemoryPool device={self._device.id} in_use={s.in_use} cached={s.cached} "
            f"hits={s.hits} misses={s.misses} {state}>"
        )

    # -- blocks ------------------------------------------------------------------------------

    def _take(self, block_size: int, stream: Stream | None) -> DeviceMemory:
        with self._lock:
            bucket = self._free.get(block_size)
            if bucket:
                for index in range(len(bucket) - 1, -1, -1):
                    entry = bucket[index]
                    if entry.block.closed:  # the device freed it (closing)
                        del bucket[index]
                        self._cached -= block_size
                        continue
                    if _done(entry.streams, stream):
                        del bucket[index]
                        self._cached -= block_size
                        self._hits += 1
                        self._count_in_use(block_size)
                        return entry.block
            self._misses += 1
            if self._fits(block_size):
                self._count_in_use(block_size)  # reserved now: threads cannot overshoot
                reserved = True
            else:
                reserved = False
        if not reserved:
            self.release_cached()
            with self._lock:
                in_use = self._in_use
                if self._fits(block_size):
                    self._count_in_use(block_size)
                    reserved = True
            if not reserved:
                raise PoolLimitError(
                    f"{self!r}: a block of {block_size} bytes would take the pool past its "
                    f"limit of {self._limit} bytes ({in_use} in use); close blocks no longer "
                    "needed, or make the pool with a larger limit"
                )
        try:
            return self._new_block(block_size)
        except BaseException:
            with self._lock:
                self._in_use -= block_size
            raise

    def _fits(self, block_size: int) -> bool:
        limit = self._limit
        return limit is None or self._in_use + self._cached + block_size <= limit

    def _count_in_use(self, block_size: int) -> None:
        self._in_use += block_size
        held = self._in_use + self._cached
        if held > self._peak:
            self._peak = held

    def _new_block(self, block_size: int) -> DeviceMemory:
        try:
            return DeviceMemory(self._device, block_size, fill=UNINITIALIZED)
        except OutOfDeviceMemoryError:
            if not self.release_cached():
                raise
        return DeviceMemory(self._device, block_size, fill=UNINITIALIZED)

    def _give_back(
        self, block: DeviceMemory, streams: tuple[Stream, ...], *, unless_cached: bool = False
    ) -> None:
        """A block handed out is free again; *streams* may still have work queued on it."""
        size = block.size
        for stream in streams:  # the block's own free (a flush, the device close) waits
            block._add_user(stream)
        with self._lock:
            if unless_cached and any(e.block is block for e in self._free.get(size, ())):
                return
            self._in_use -= size
            keep = not self._closed and not block.closed
            if keep:
                self._free.setdefault(size, []).append(_Cached(block, streams))
                self._cached += size
        if not keep:
            self._free_block(block)

    @staticmethod
    def _free_block(block: DeviceMemory) -> int:
        if block.closed:
            return 0
        size = block.size
        block.close()
        return size

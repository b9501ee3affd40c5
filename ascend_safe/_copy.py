"""Moving bytes between memory objects and Python buffers, synchronously or on a stream.

Async copies from or to pageable host buffers (``bytes``, ``bytearray``, numpy arrays) are staged
through page-locked memory, as pyacl requires pinned, 64-byte aligned host memory for
``memcpy_async``; the Python object is kept alive until the stream is known complete.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from typing import Any, Callable, NamedTuple, Protocol

from . import _backend, _validate
from ._staging import Pinned, StagingPool
from .constants import MemcpyKind
from .errors import ResourceClosedError

__all__ = ["Endpoint", "Queue", "Ranged", "bytes_address", "copy", "host_endpoint"]

_ASYNC_ALIGNMENT = 64


class Ranged(Protocol):
    """A memory object as the copy engine sees it (the memory module's ``Memory``)."""

    @property
    def owner(self) -> Any: ...

    @property
    def device(self) -> Any: ...

    def _wait_idle(self) -> None: ...

    def _add_user(self, stream: Any) -> None: ...


class Queue(Protocol):
    """A stream as the copy engine sees it (the stream module's ``Stream``)."""

    @property
    def device(self) -> Any: ...

    def synchronize(self, timeout: float | None = None) -> None: ...

    def _submit(
        self,
        api: str,
        *args: Any,
        keepalive: tuple[object, ...] = (),
        on_retire: Callable[[], None] | None = None,
    ) -> int: ...


def _bytes_header() -> int | None:
    """Offset of a ``bytes`` object's data from its ``id()`` (CPython's layout), checked on
    samples against ctypes; None where it does not hold (then ctypes gives the address)."""
    if sys.implementation.name != "cpython":
        return None
    offset: int | None = None
    for sample in (b"\x01" * 7, b"\x02" * 4096, bytes(range(256))):
        address = ctypes.cast(ctypes.c_char_p(sample), ctypes.c_void_p).value or 0
        if offset is None:
            offset = address - id(sample)
        if address - id(sample) != offset:
            return None
    return offset


#: Offset of a ``bytes`` object's data from its ``id()``, or None (use :func:`bytes_address`).
BYTES_HEADER = _bytes_header()


def bytes_address(data: bytes) -> int:
    """The address of *data*'s bytes (valid while *data* lives; never written through)."""
    if BYTES_HEADER is not None and data.__class__ is bytes:
        return id(data) + BYTES_HEADER
    address = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value
    return address or 0


class Endpoint(NamedTuple):
    """One side of a copy: an address range, where it lives, and what keeps it valid."""

    addr: int
    nbytes: int
    on_device: bool
    memory: Ranged | None
    keep: object


def host_endpoint(obj: object, *, writable: bool, role: str) -> Endpoint:
    """Resolve a bytes-like object into an :class:`Endpoint` (memory objects resolve
    themselves)."""
    if obj is None:
        raise TypeError(f"copy {role} is None; pass bytes-like data or a memory object")
    if isinstance(obj, bytes):
        if writable:
            raise TypeError(f"copy {role} is read-only bytes; pass a bytearray or numpy array")
        return Endpoint(bytes_address(obj), len(obj), False, None, obj)
    try:
        view = memoryview(obj)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"copy {role} must be a memory object, bytes, bytearray, memoryview or numpy array, "
            f"not {type(obj).__name__}"
        ) from None
    _validate.plain_buffer(view.format, role)
    if not view.nbytes:  # before cast(), which refuses shapes with a zero in them
        if writable and view.readonly:
            raise TypeError(f"copy {role} is read-only; pass a writable buffer")
        return Endpoint(0, 0, False, None, obj)
    if not view.c_contiguous:
        if writable:
            raise ValueError(
                f"copy {role} is not C-contiguous; use numpy.ascontiguousarray() first"
            )
        data = view.tobytes()
        return Endpoint(bytes_address(data), len(data), False, None, data)
    flat = view.cast("B") if (view.format != "B" or view.ndim != 1) else view
    if flat.readonly:
        if writable:
            raise TypeError(f"copy {role} is read-only; pass a writable buffer")
        data = flat.tobytes()
        return Endpoint(bytes_address(data), len(data), False, None, data)
    window = (ctypes.c_char * flat.nbytes).from_buffer(flat)
    return Endpoint(ctypes.addressof(window), flat.nbytes, False, None, (obj, flat, window))


def _kind(src_on_device: bool, dst_on_device: bool) -> int:
    if src_on_device:
        return MemcpyKind.DEVICE_TO_DEVICE if dst_on_device else MemcpyKind.DEVICE_TO_HOST
    return MemcpyKind.HOST_TO_DEVICE if dst_on_device else MemcpyKind.HOST_TO_HOST


def copy(
    dst: Endpoint,
    dst_offset: int,
    src: Endpoint,
    src_offset: int,
    nbytes: int,
    stream: Queue | None,
    names: tuple[str, str] = ("dst_offset", "src_offset"),
) -> None:
    """Copy *nbytes* from ``src[src_offset:]`` to ``dst[dst_offset:]`` after checking bounds.

    *names* are what the caller calls the two offsets, for error messages.
    """
    if not (type(nbytes) is type(dst_offset) is type(src_offset) is int) or not (
        0 <= (nbytes | dst_offset | src_offset) <= _validate.ULONG_MAX
    ):
        _reject_counts(**{"nbytes": nbytes, names[0]: dst_offset, names[1]: src_offset})
    if src_offset + nbytes > src.nbytes:
        raise ValueError(
            f"cannot copy {nbytes} bytes from offset {src_offset} of a {src.nbytes}-byte source"
            f"{_which(src)}"
        )
    if dst_offset + nbytes > dst.nbytes:
        raise ValueError(
            f"cannot copy {nbytes} bytes to offset {dst_offset} of a {dst.nbytes}-byte "
            f"destination{_which(dst)}; allocate a larger buffer or copy fewer bytes"
        )
    memories = [m for m in (dst.memory, src.memory) if m is not None]
    if len(memories) == 2 and dst.on_device and src.on_device:
        _validate.same_device(memories[1], memories[0], "copy")
    if stream is not None:
        for m in memories:
            _validate.same_device(m, stream, "copy on a stream")
    if nbytes == 0:
        return
    dst_addr = dst.addr + dst_offset
    src_addr = src.addr + src_offset
    kind = _kind(src.on_device, dst.on_device)
    owner = memories[0].owner
    if stream is None or not (src.on_device or dst.on_device):
        for m in memories:
            m._wait_idle()
        if stream is not None:
            stream.synchronize()
        owner.make_current()
        _backend.call(
            "rt.memcpy", dst_addr, dst.nbytes - dst_offset, src_addr, nbytes, kind,
            resource=memories[0],
        )
        return
    _copy_async(dst, dst_addr, dst_offset, src, src_addr, nbytes, kind, stream, memories)


def _copy_async(
    dst: Endpoint,
    dst_addr: int,
    dst_offset: int,
    src: Endpoint,
    src_addr: int,
    nbytes: int,
    kind: int,
    stream: Queue,
    memories: list[Ranged],
) -> None:
    for end, addr in ((dst, dst_addr), (src, src_addr)):
        if end.memory is not None and addr % _ASYNC_ALIGNMENT:
            raise ValueError(
                f"async copies need 64-byte aligned addresses; offset {addr - end.addr} of "
                f"{end.memory!r} is not (use a multiple of 64, or omit the stream)"
            )
    on_retire: Any = None
    keepalive: tuple[object, ...] = (dst.keep, src.keep)
    staging: Pinned | None = None
    pool: StagingPool = stream.device._staging  # the session's pinned buffers
    if src.memory is None:  # pageable host -> device: stage through pinned memory now
        staging = _take_staging(pool, nbytes, stream)
        ctypes.memmove(staging.ptr, src_addr, nbytes)
        src_addr = staging.ptr
        keepalive += (staging,)
        on_retire = functools.partial(pool.give, staging)
    elif dst.memory is None:  # device -> pageable host: land in pinned memory, copy out later
        staging = _take_staging(pool, nbytes, stream)
        target = dst_addr
        final = staging

        def _deliver() -> None:
            ctypes.memmove(target, final.ptr, nbytes)
            pool.give(final)

        keepalive += (staging,)
        on_retire = _deliver
        dst_addr = staging.ptr
    dst_max = nbytes if dst.memory is None else dst.nbytes - dst_offset
    users: list[Any] = [*memories, staging] if staging is not None else memories
    for m in users:  # before the submit: a close from now on waits for this stream
        m._add_user(stream)
    try:
        stream._submit(
            "rt.memcpy_async", dst_addr, dst_max, src_addr, nbytes, kind,
            keepalive=keepalive, on_retire=on_retire,
        )
    except BaseException:
        if staging is not None:
            pool.give(staging)
        raise


def _take_staging(pool: StagingPool, nbytes: int, stream: Queue) -> Pinned:
    try:
        return pool.take(nbytes)
    except ResourceClosedError as exc:
        raise ResourceClosedError(f"cannot start an async copy on {stream!r}: {exc}") from None


def remaining(end: Endpoint, offset: int, role: str) -> int:
    """Bytes of *end* from *offset* on (the default copy size)."""
    if type(offset) is int and 0 <= offset <= end.nbytes:
        return end.nbytes - offset
    _reject_counts(**{f"{role} offset": offset})
    raise ValueError(
        f"{role} offset {offset} is past the end of the {end.nbytes}-byte {role}{_which(end)}"
    )


def _reject_counts(**values: object) -> None:
    """Raise for the first count or offset that is not an int in pyacl's 0..2**64-1."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        _validate.size(value, name)


def check_range(end: Endpoint, offset: int, nbytes: object, role: str) -> int:
    """*nbytes* as a checked count that fits *end* from *offset* (already checked)."""
    count = _validate.size(nbytes, "nbytes")
    if offset + count > end.nbytes:
        raise ValueError(
            f"cannot copy {count} bytes from offset {offset} of a {end.nbytes}-byte {role}"
            f"{_which(end)}; copy fewer bytes"
        )
    return count


def _which(end: Endpoint) -> str:
    return f" ({end.memory!r})" if end.memory is not None else ""

"""Device, host (page-locked) and DVPP memory, filled before it is handed out.

Every allocation is zero-filled, or filled with ``fill=`` (a byte value); ``fill=UNINITIALIZED``
is the explicit opt-out. Freeing waits for streams that may still use the memory, since pyacl's
free is immediate.
"""

from __future__ import annotations

import ctypes
import weakref
from typing import TYPE_CHECKING, Any, ClassVar, Union

from typing_extensions import Self

from . import _backend, _copy, _lifetime, _validate, admission
from ._interrupts import critical
from .constants import MallocPolicy, MemcpyKind
from .context import ContextOwner, InContext, this_thread
from .errors import LiveViewError
from .stream import Stream

if TYPE_CHECKING:
    import numpy
    from numpy import ndarray as _NDArray  # inside HostMemory, "numpy" is its method


__all__ = ["UNINITIALIZED", "DeviceMemory", "DvppMemory", "Fill", "HostMemory", "Memory"]

_OMITTED: Any = object()
_enter = critical.__enter__
_exit = critical.__exit__
_bytes_address = _copy.bytes_address
_HEADER = _copy.BYTES_HEADER
_window = ctypes.c_char.from_buffer  # holds the buffer (no resize) while the copy runs
_addressof = ctypes.addressof
_deferred = _lifetime._deferred
_H2D = int(MemcpyKind.HOST_TO_DEVICE)
_H2H = int(MemcpyKind.HOST_TO_HOST)
_D2H = int(MemcpyKind.DEVICE_TO_HOST)


class _Uninitialized:
    """Type of :data:`UNINITIALIZED`."""

    _instance: ClassVar[_Uninitialized | None] = None

    def __new__(cls) -> _Uninitialized:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ascend_safe.UNINITIALIZED"

    def __reduce__(self) -> str:
        return "UNINITIALIZED"


#: Pass as ``fill=`` to skip the fill and get memory with whatever it held before.
UNINITIALIZED = _Uninitialized()
#: A byte value 0..255, or :data:`UNINITIALIZED`.
Fill = Union[int, _Uninitialized]


class Memory(InContext):
    """Base of the memory kinds: allocation, fill, copies and the wait before free."""

    kind = "memory"
    teardown_rank = 2
    #: Whether the memory lives on the device (for the copy direction).
    on_device: ClassVar[bool] = True
    _free_api: ClassVar[str]
    #: The pyacl call that takes this memory from the device budget (memory admission decides
    #: before it; see :mod:`ascend_safe.admission`), or None for host memory.
    alloc_api: ClassVar[str | None] = None
    __slots__ = ("_size", "_users")

    def __init__(self, owner: ContextOwner, size: int, *, fill: Fill = 0, **alloc: Any) -> None:
        size = _validate.index(size, f"{type(self).__name__} size")
        if size <= 0:
            raise ValueError(f"{type(self).__name__} size must be > 0 bytes, got {size}")
        _validate.size(size, f"{type(self).__name__} size")  # pyacl would wrap it past 2**64-1
        fill_byte = _check_fill(fill)
        super().__init__(owner)
        self._size = size
        #: serial -> stream that may still have queued work on this memory (weakly: a dropped
        #: stream is released, after draining, at the next safe point); None until one queues
        self._users: dict[int, weakref.ref[Any]] | None = None
        self._construct(lambda: self._create(fill_byte, alloc))

    def _create(self, fill_byte: int | None, alloc: dict[str, Any]) -> int:
        self._owner.make_current()
        ptr = admission.allocate(
            self.alloc_api,
            self._owner.device,
            self._size,
            lambda: self._allocate(self._size, **alloc),
            malloc_policy=alloc.get("policy", 0),
            resource=self,
        )
        if fill_byte is not None:
            try:
                _backend.call("rt.memset", ptr, self._size, fill_byte, self._size, resource=self)
            except BaseException:
                self._free_after_failure(ptr)
                raise
        return ptr

    def _allocate(self, size: int, **alloc: Any) -> int:
        raise NotImplementedError

    def _free_after_failure(self, ptr: int) -> None:
        try:
            _backend.call(self._free_api, ptr, resource=self)
        except Exception:
            pass  # the original error is the one to report

    # -- identity -----------------------------------------------------------------------------

    @property
    def ptr(self) -> int:
        """The raw address (raises once closed)."""
        ptr: int = self._checked_handle()
        return ptr

    @property
    def size(self) -> int:
        """Usable size in bytes (what was asked for)."""
        return self._size

    @property
    def nbytes(self) -> int:
        """Same as :attr:`size`."""
        return self._size

    def __len__(self) -> int:
        return self._size

    # -- data ---------------------------------------------------------------------------------

    def copy_from(
        self,
        src: object,
        *,
        stream: Stream = _OMITTED,
        nbytes: int | None = None,
        offset: int = 0,
        src_offset: int = 0,
    ) -> None:
        """Copy *src* (bytes-like, numpy array or memory) into this memory at *offset*.

        With *stream*, the copy is queued on it and done once the stream is synchronized; the
        source object is kept alive until then. Omit *stream* for a synchronous copy.
        """
        if (
            stream is _OMITTED
            and nbytes is None
            and (src.__class__ is bytes or src.__class__ is bytearray)
            and offset.__class__ is int
            and src_offset.__class__ is int
            and src_offset == 0
        ):  # the common synchronous upload, flat: the same checks as the general path
            count = len(src)
            if count and offset >= 0 and offset + count <= self._size:
                _enter()
                try:
                    ptr = self._begin_use()
                    try:
                        if self._users or _deferred:
                            self._wait_idle()
                        owner = self._owner
                        if this_thread.current != owner._serial:
                            owner.make_current()
                        if src.__class__ is bytearray:  # held (no resize) during the copy
                            window: Any = _window(src)
                            address = _addressof(window)
                        elif _HEADER is not None:
                            address = id(src) + _HEADER
                        else:
                            address = _bytes_address(src)  # type: ignore[arg-type]
                        _backend.call(
                            "rt.memcpy", ptr + offset, self._size - offset, address, count,
                            _H2D if self.on_device else _H2H, resource=self,
                        )
                    finally:
                        self._end_use()
                finally:
                    _exit()
                return
        stream_obj = _stream_arg(stream)
        other = src if isinstance(src, Memory) else None
        with _lifetime.using(self, other, stream_obj):
            dst = self._endpoint()
            src_end = _endpoint_of(src, writable=False, role="source")
            count = _copy.remaining(src_end, src_offset, "source") if nbytes is None else nbytes
            _copy.copy(
                dst, offset, src_end, src_offset, count, stream_obj, ("offset", "src_offset")
            )

    def copy_to(
        self,
        dst: object,
        *,
        stream: Stream = _OMITTED,
        nbytes: int | None = None,
        offset: int = 0,
        dst_offset: int = 0,
    ) -> None:
        """Copy from this memory at *offset* into *dst* (writable buffer or memory).

        Copies the whole memory unless *nbytes* is given. With *stream*, *dst* holds the data
        only after the stream (or an event recorded after the copy) is synchronized.
        """
        if (
            stream is _OMITTED
            and dst.__class__ is bytearray
            and offset.__class__ is int
            and dst_offset.__class__ is int
            and dst_offset == 0
            and (nbytes is None or nbytes.__class__ is int)
        ):  # the common synchronous download, flat: the same checks as the general path
            size = self._size
            count = size - offset if nbytes is None else nbytes
            if 0 < count <= len(dst) and offset >= 0 and offset + count <= size:
                self._download(dst, offset, count)
                return
        stream_obj = _stream_arg(stream)
        other = dst if isinstance(dst, Memory) else None
        with _lifetime.using(self, other, stream_obj):
            src = self._endpoint()
            dst_end = _endpoint_of(dst, writable=True, role="destination")
            count = _copy.remaining(src, offset, "source") if nbytes is None else nbytes
            _copy.copy(
                dst_end, dst_offset, src, offset, count, stream_obj, ("dst_offset", "offset")
            )

    def _download(self, out: bytearray, offset: int, count: int) -> None:
        """Synchronous copy of ``[offset, offset + count)`` (checked) into *out*."""
        _enter()
        try:
            ptr = self._begin_use()
            try:
                if self._users or _deferred:
                    self._wait_idle()
                window = _window(out)
                owner = self._owner
                if this_thread.current != owner._serial:
                    owner.make_current()
                _backend.call(
                    "rt.memcpy", _addressof(window), len(out), ptr + offset, count,
                    _D2H if self.on_device else _H2H, resource=self,
                )
                del window
            finally:
                self._end_use()
        finally:
            _exit()

    def _endpoint(self) -> _copy.Endpoint:
        return _copy.Endpoint(self._checked_handle(), self._size, self.on_device, self, self)

    def to_bytes(self, nbytes: int | None = None, *, offset: int = 0) -> bytes:
        """A copy of the contents (waits for streams still writing here first)."""
        size = self._size
        if nbytes is None and offset.__class__ is int and 0 <= offset < size:
            out = bytearray(size - offset)
            self._download(out, offset, size - offset)
            return bytes(out)
        src = self._endpoint()
        available = _copy.remaining(src, offset, "source")
        count = available if nbytes is None else _copy.check_range(src, offset, nbytes, "source")
        out = bytearray(count)  # only once the range is known to fit this memory
        self.copy_to(out, nbytes=count, offset=offset)
        return bytes(out)

    def to_numpy(self, dtype: Any = "uint8", shape: tuple[int, ...] | None = None) -> numpy.ndarray:
        """A numpy array holding a copy of the contents (needs numpy)."""
        import numpy as np

        dt, count, dims = _layout(self, dtype, shape, "to_numpy()")
        out = np.empty(count, dtype=dt)
        self.copy_to(out, nbytes=out.nbytes)
        return out if dims is None else out.reshape(dims)

    @classmethod
    def from_numpy(cls, owner: ContextOwner, array: Any) -> Self:
        """New memory in *owner* holding a copy of *array*'s bytes (C order; needs numpy).

        The memory has exactly ``array.nbytes`` bytes; read it back with
        ``to_numpy(array.dtype, array.shape)`` (or, for host memory, view it with ``numpy()``).
        """
        import numpy as np

        arr = np.asarray(array)
        _validate.plain_dtype(arr.dtype, "from_numpy() dtype")
        if not arr.nbytes:
            raise ValueError(
                f"from_numpy() got an empty array (shape {arr.shape}, {arr.dtype}); memory must "
                "hold at least one byte"
            )
        memory = cls(owner, arr.nbytes, fill=UNINITIALIZED)
        try:
            memory.copy_from(arr)
        except BaseException:
            memory.close()
            raise
        return memory

    def fill(self, value: int, *, stream: Stream = _OMITTED) -> None:
        """Set every byte to *value* (on *stream* if given)."""
        byte = _check_fill(value)
        if byte is None:
            raise TypeError("fill() needs a byte value 0..255")
        stream_obj = _stream_arg(stream)
        with _lifetime.using(self, stream_obj):
            ptr = self._checked_handle()
            if stream_obj is None:
                self._wait_idle()
                self._owner.make_current()
                _backend.call("rt.memset", ptr, self._size, byte, self._size, resource=self)
                return
            _validate.same_device(self, stream_obj, "fill on a stream")
            self._add_user(stream_obj)
            stream_obj._submit(
                "rt.memset_async", ptr, self._size, byte, self._size, keepalive=(self,)
            )

    # -- lifetime -----------------------------------------------------------------------------

    def _add_user(self, stream: Stream) -> None:
        """*stream* is about to queue work on this memory: a free waits for it from now on."""
        users = self._users
        if users is None:
            users = self._users = {}
        users[stream._serial] = stream._ref

    def _wait_idle(self) -> None:
        """Synchronize the streams that still have queued work on this memory."""
        if _lifetime._deferred:  # dropped streams still draining are released (drained) first
            _lifetime.drain_deferred()
        users = self._users
        if not users:
            return
        for key, ref in list(users.items()):
            stream = ref()
            if stream is None:
                users.pop(key, None)
                continue
            stream._drain_if_busy()  # if this raises, the stream stays listed for a retry
            if not stream.busy:  # a copy on another thread may have queued more meanwhile
                users.pop(key, None)

    def _release(self, handle: Any) -> None:
        self._wait_idle()
        self._owner.make_current()
        _backend.call(self._free_api, handle, resource=self)
        if self.alloc_api is not None:
            admission.freed(self._owner.device.id)  # wake allocations waiting for memory

    def _describe(self) -> str:
        return f" device={self._owner.device.id} size={self._size}"


class DeviceMemory(Memory):
    """Device memory from ``acl.rt.malloc`` (freed with ``acl.rt.free``)."""

    kind = "device memory"
    _free_api = "rt.free"
    alloc_api = "rt.malloc"
    __slots__ = ()

    def __init__(
        self,
        owner: ContextOwner,
        size: int,
        *,
        fill: Fill = 0,
        policy: MallocPolicy | int = MallocPolicy.HUGE_FIRST,
    ) -> None:
        policy = _validate.member(policy, MallocPolicy, "malloc policy")
        super().__init__(owner, size, fill=fill, policy=policy)

    def _allocate(self, size: int, **alloc: Any) -> int:
        ptr: int = _backend.call("rt.malloc", size, alloc["policy"], resource=self)
        return ptr


class HostMemory(Memory):
    """Page-locked host memory from ``acl.rt.malloc_host`` (freed with ``acl.rt.free_host``).

    :meth:`numpy` (and ``np.asarray(mem)``) gives a zero-copy numpy view. A view keeps the
    memory alive; closing the memory (or its device) while a view is alive raises
    :class:`LiveViewError` and leaves it open, so the view never reads freed memory. Only the
    exit teardown frees it regardless, as the process ends.
    """

    kind = "host memory"
    on_device = False
    _free_api = "rt.free_host"
    __slots__ = ("_views",)

    def __init__(self, owner: ContextOwner, size: int, *, fill: Fill = 0) -> None:
        #: The live exporters of numpy views (see :meth:`numpy`); None until one is made.
        self._views: weakref.WeakSet[_HostView] | None = None
        super().__init__(owner, size, fill=fill)

    def numpy(
        self, dtype: Any = "uint8", shape: int | tuple[int, ...] | None = None
    ) -> _NDArray:
        """A zero-copy numpy view of this memory (needs numpy): writes through it are writes
        to the memory, and the other way round.

        *dtype* (default bytes) and *shape* (default: as many whole elements as fit) say how to
        read it. Streams still writing here are waited for first; work queued later is not:
        synchronize its stream before reading. The view keeps the memory alive, and closing
        the memory while it is alive raises :class:`LiveViewError` (see the class doc).
        """
        import numpy as np

        dt, count, dims = _layout(self, dtype, shape, "numpy()")
        with self._using():
            self._wait_idle()
            exporter = _HostView(self, self._checked_handle(), count * dt.itemsize)
            views = self._views
            if views is None:
                views = self._views = weakref.WeakSet()
            views.add(exporter)
        flat: _NDArray = np.asarray(exporter).view(dt)
        return flat if dims is None else flat.reshape(dims)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> _NDArray:
        """``np.asarray(mem)``: the zero-copy byte view of :meth:`numpy` (a copy if asked)."""
        view = self.numpy()
        if dtype is not None:
            view = view.view(dtype)
        return view.copy() if copy else view

    def __dlpack__(self, *, stream: Any = None, **options: Any) -> Any:
        """DLPack export of the bytes (a 1-D ``uint8`` tensor on ``kDLCPU``), made by the
        :meth:`numpy` view: the capsule holds that view, so it counts as one (needs numpy)."""
        if stream is not None:
            raise BufferError(
                f"{self!r} is host memory (kDLCPU): DLPack takes no stream for it, got {stream!r}"
            )
        return self.numpy().__dlpack__(stream=None, **options)

    def __dlpack_device__(self) -> tuple[int, int]:
        """``(kDLCPU, 0)``: pinned host memory is ordinary CPU memory to a DLPack consumer."""
        return (1, 0)

    def _release(self, handle: Any) -> None:
        views = self._views
        live = len(views) if views else 0
        if live and _lifetime.flags.close_timeout is None:  # set by the exit teardown only
            raise LiveViewError(
                f"cannot close {self!r}: {live} numpy view(s) of it are still alive, and "
                "freeing the memory would leave them reading freed memory. Delete the arrays "
                "(and arrays sliced from them) first, or take copies with to_numpy()"
            )
        super()._release(handle)

    def _allocate(self, size: int, **alloc: Any) -> int:
        ptr: int = _backend.call("rt.malloc_host", size, resource=self)
        return ptr


class _HostView:
    """The object a numpy view of :class:`HostMemory` is made from: it holds the memory, so the
    memory outlives every array over it, and exports the bytes by ``__array_interface__``."""

    __slots__ = ("__array_interface__", "__weakref__", "memory")

    def __init__(self, memory: HostMemory, ptr: int, nbytes: int) -> None:
        self.memory = memory
        self.__array_interface__ = {
            "version": 3,
            "data": (ptr, False),
            "typestr": "|u1",
            "shape": (nbytes,),
        }


class StagingMemory(HostMemory):
    """Page-locked memory an async copy stages pageable host data through.

    Internal: released when the copy is known complete, so it is not listed among the live
    resources the user owns.
    """

    kind = "staging memory"
    tracked = False
    __slots__ = ()


class DvppMemory(Memory):
    """Media (DVPP) memory from ``acl.media.dvpp_malloc`` (freed with ``dvpp_free``)."""

    kind = "DVPP memory"
    _free_api = "media.dvpp_free"
    alloc_api = "media.dvpp_malloc"
    __slots__ = ()

    def _allocate(self, size: int, **alloc: Any) -> int:
        ptr: int = _backend.call("media.dvpp_malloc", size, resource=self)
        return ptr


def _endpoint_of(obj: object, *, writable: bool, role: str) -> _copy.Endpoint:
    """A copy endpoint for a memory object or a bytes-like object."""
    if isinstance(obj, Memory):
        return obj._endpoint()
    return _copy.host_endpoint(obj, writable=writable, role=role)


def _layout(
    memory: Memory, dtype: Any, shape: object, name: str
) -> tuple[Any, int, tuple[int, ...] | None]:
    """``(dtype, element count, shape or None)`` of an array over *memory*, checked to fit."""
    import numpy as np

    dt = np.dtype(dtype)
    _validate.plain_dtype(dt, f"{name} dtype")
    if not dt.itemsize:
        raise ValueError(f"{name} dtype {dt!r} has no size; give a sized dtype")
    if shape is None:
        return dt, memory.size // dt.itemsize, None
    entries = shape if isinstance(shape, (tuple, list)) else (shape,)
    dims = tuple(_validate.index(n, f"{name} shape entry", minimum=0) for n in entries)
    count = 1
    for n in dims:
        count *= n
    if count * dt.itemsize > memory.size:
        raise ValueError(
            f"{name} shape {dims} of {dt} needs {count * dt.itemsize} bytes but "
            f"{memory!r} holds {memory.size}; pass a smaller shape"
        )
    return dt, count, dims


def _check_fill(fill: object) -> int | None:
    if fill is UNINITIALIZED:
        return None
    if isinstance(fill, bool) or not isinstance(fill, int):
        raise TypeError(
            f"fill must be a byte value 0..255 or ascend_safe.UNINITIALIZED, not {fill!r}"
        )
    if not 0 <= fill <= 255:
        raise ValueError(f"fill must be a byte value 0..255, got {fill}")
    return fill


def _stream_arg(stream: object) -> Stream | None:
    if stream is _OMITTED:
        return None
    if not isinstance(stream, Stream):
        raise TypeError(
            f"stream must be a Stream, not {type(stream).__name__}: omit it for a synchronous "
            "copy, or pass device.default_stream explicitly"
        )
    return stream

"""Data buffers: pyacl's descriptor of a memory range (``acl.create_data_buffer``)."""

from __future__ import annotations

from typing import Any

from . import _backend, _validate
from ._lifetime import Resource
from .memory import Memory

__all__ = ["DataBuffer"]


class DataBuffer(Resource):
    """Describes (part of) a memory object for model inputs and outputs.

    It keeps the memory alive; destroying it never frees the memory. Closing the memory closes
    its data buffers first.
    """

    kind = "data buffer"
    teardown_rank = 0
    __slots__ = ("_memory", "_size")

    def __init__(self, memory: Memory, size: int | None = None) -> None:
        if not isinstance(memory, Memory):
            raise TypeError(f"DataBuffer() takes a memory object, not {type(memory).__name__}")
        size = memory.size if size is None else _validate.size(size, "data buffer size")
        if not 0 < size <= memory.size:
            raise ValueError(
                f"data buffer size must be 1..{memory.size} bytes for {memory!r}, got {size}"
            )
        super().__init__(memory)
        self._memory = memory
        self._size = size
        self._construct(self._create)

    def _create(self) -> int:
        handle: int = _backend.call_value(
            "create_data_buffer", self._memory.ptr, self._size, resource=self
        )
        return handle

    @property
    def memory(self) -> Memory:
        """The memory this buffer describes."""
        return self._memory

    @property
    def ptr(self) -> int:
        """Address of the described memory."""
        self._checked_handle()
        return self._memory.ptr

    @property
    def size(self) -> int:
        """Size in bytes the buffer describes."""
        return self._size

    def _release(self, handle: Any) -> None:
        _backend.call("destroy_data_buffer", handle, resource=self)

    def _describe(self) -> str:
        return f" size={self._size}"

"""Data buffers: descriptions of memory the caller owns (pyACL data buffer calls)."""

from __future__ import annotations

from typing import Optional

from ._codes import INVALID_PARAM
from ._core import Core, Fail
from ._objects import DataBuffer

__all__ = ["BufferDomain"]


class BufferDomain(Core):
    """Data buffers: descriptions of memory the caller owns (pyACL data buffer calls)."""

    def api_create_data_buffer(self, ptr: int, size: int) -> int:
        buf = DataBuffer(self.new_handle(), ptr, size)
        self.buffers[buf.handle] = buf
        return buf.handle

    def api_destroy_data_buffer(self, handle: int) -> tuple[()]:
        buf = self._lookup(self.buffers, handle, "data_buffer", destroy=True, code=INVALID_PARAM)
        del self.buffers[buf.handle]
        self.dead[buf.handle] = "data_buffer"
        return ()

    def _buffer_value(self, handle: int) -> Optional[DataBuffer]:
        try:
            return self._lookup(self.buffers, handle, "data_buffer", code=INVALID_PARAM)
        except Fail as failure:
            self.tls.error = f"acl.{self.tls.api}: {failure.message}"
            return None

    def api_get_data_buffer_addr(self, handle: int) -> int:
        buf = self._buffer_value(handle)
        return 0 if buf is None else buf.ptr

    def api_get_data_buffer_size(self, handle: int) -> int:
        buf = self._buffer_value(handle)
        return 0 if buf is None else buf.size & 0xFFFFFFFF

    def api_get_data_buffer_size_v2(self, handle: int) -> int:
        buf = self._buffer_value(handle)
        return 0 if buf is None else buf.size

    def api_update_data_buffer(self, handle: int, ptr: int, size: int) -> tuple[()]:
        buf = self._lookup(self.buffers, handle, "data_buffer", code=INVALID_PARAM)
        buf.ptr = ptr
        buf.size = size
        return ()

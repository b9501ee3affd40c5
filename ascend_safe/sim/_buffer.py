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

    # ----------------------------------------------------------------- data type sizes

    def api_data_type_size(self, data_type: int) -> int:
        """aclDataTypeSize (src/acl/aclrt_impl/data_buffer.cpp): bytes per element."""
        return _TYPE_SIZES.get(data_type, 8)


#: aclDataType -> size in bytes, as aclDataTypeSize gives it; any other value (the enum's
#: sub-byte float types included) falls into its ``default: sizeof(int64_t)`` branch.
_TYPE_SIZES = {
    -1: 0,  # ACL_DT_UNDEFINED
    13: 0,  # ACL_STRING
    29: 1,  # ACL_INT4
    30: 1,  # ACL_UINT1
    2: 1,  # ACL_INT8
    4: 1,  # ACL_UINT8
    12: 1,  # ACL_BOOL
    34: 1,  # ACL_HIFLOAT8
    35: 1,  # ACL_FLOAT8_E5M2
    36: 1,  # ACL_FLOAT8_E4M3FN
    37: 1,  # ACL_FLOAT8_E8M0
    1: 2,  # ACL_FLOAT16
    6: 2,  # ACL_INT16
    7: 2,  # ACL_UINT16
    27: 2,  # ACL_BF16
    0: 4,  # ACL_FLOAT
    3: 4,  # ACL_INT32
    8: 4,  # ACL_UINT32
    33: 4,  # ACL_COMPLEX32
    17: 16,  # ACL_COMPLEX128
    9: 8,  # ACL_INT64
    10: 8,  # ACL_UINT64
    11: 8,  # ACL_DOUBLE
    16: 8,  # ACL_COMPLEX64
}

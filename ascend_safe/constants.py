"""pyacl's enumerations as ``IntEnum``s (pyacl itself exports no constants).

Values follow CANN's ``acl_rt.h`` / ``acl_base.h``. Note the two opposite status polarities:
:class:`EventStatus` (``query_event``) and :class:`EventRecordedStatus` (``query_event_status``).
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

__all__ = [
    "DataType",
    "EventFlag",
    "EventRecordedStatus",
    "EventStatus",
    "EventWaitStatus",
    "MallocPolicy",
    "MemAttr",
    "MemcpyKind",
    "RunMode",
    "StreamFlag",
    "StreamStatus",
]


class RunMode(IntEnum):
    """Where the software stack runs (``acl.rt.get_run_mode``)."""

    DEVICE = 0  # RC / Control-CPU form: the app runs on the device
    HOST = 1  # EP form: the app runs on a host with PCIe-attached devices


class MemcpyKind(IntEnum):
    """Copy direction for ``memcpy``/``memcpy_async`` (9.x infers it from the addresses)."""

    HOST_TO_HOST = 0
    HOST_TO_DEVICE = 1
    DEVICE_TO_HOST = 2
    DEVICE_TO_DEVICE = 3
    DEFAULT = 4
    HOST_TO_BUF_TO_DEVICE = 5
    INNER_DEVICE_TO_DEVICE = 6
    INTER_DEVICE_TO_DEVICE = 7


class MallocPolicy(IntEnum):
    """Page policy for ``acl.rt.malloc`` (one value, not an OR of several)."""

    HUGE_FIRST = 0
    HUGE_ONLY = 1
    NORMAL_ONLY = 2
    HUGE_FIRST_P2P = 3
    HUGE_ONLY_P2P = 4
    NORMAL_ONLY_P2P = 5
    HUGE1G_ONLY = 6
    HUGE1G_ONLY_P2P = 7
    TYPE_LOW_BAND_WIDTH = 0x100
    TYPE_HIGH_BAND_WIDTH = 0x1000
    ACCESS_USER_SPACE_READONLY = 0x100000


class MemAttr(IntEnum):
    """Memory kind queried by ``acl.rt.get_mem_info``."""

    DDR_MEM = 0
    HBM_MEM = 1
    DDR_MEM_HUGE = 2
    DDR_MEM_NORMAL = 3
    HBM_MEM_HUGE = 4
    HBM_MEM_NORMAL = 5
    DDR_MEM_P2P_HUGE = 6
    DDR_MEM_P2P_NORMAL = 7
    HBM_MEM_P2P_HUGE = 8
    HBM_MEM_P2P_NORMAL = 9
    HBM_MEM_HUGE1G = 10
    HBM_MEM_P2P_HUGE1G = 11
    MEM_NORMAL = 12
    MEM_HUGE = 13
    MEM_HUGE1G = 14
    MEM_P2P_NORMAL = 15
    MEM_P2P_HUGE = 16
    MEM_P2P_HUGE1G = 17


class EventStatus(IntEnum):
    """``acl.rt.query_event`` (deprecated): COMPLETE is 0."""

    COMPLETE = 0
    NOT_READY = 1
    RESERVED = 2


class EventRecordedStatus(IntEnum):
    """``acl.rt.query_event_status``: the reverse polarity, COMPLETE is 1."""

    NOT_READY = 0
    COMPLETE = 1


class EventWaitStatus(IntEnum):
    """``acl.rt.query_event_wait_status``."""

    COMPLETE = 0
    NOT_READY = 1
    RESERVED = 0xFFFF


class StreamStatus(IntEnum):
    """``acl.rt.stream_query``."""

    COMPLETE = 0
    NOT_READY = 1
    RESERVED = 0xFFFF


class EventFlag(IntFlag):
    """Flags for ``acl.rt.create_event_with_flag``."""

    SYNC = 0x1
    CAPTURE_STREAM_PROGRESS = 0x2
    TIME_LINE = 0x8
    DEVICE_USE_ONLY = 0x10
    EXTERNAL = 0x20
    IPC = 0x40


class StreamFlag(IntFlag):
    """Flags for ``acl.rt.create_stream_with_config``."""

    FAST_LAUNCH = 0x1
    FAST_SYNC = 0x2
    PERSISTENT = 0x4
    HUGE = 0x8
    CPU_SCHEDULE = 0x10
    DEVICE_USE_ONLY = 0x20


class DataType(IntEnum):
    """``aclDataType`` (common values)."""

    DT_UNDEFINED = -1
    FLOAT = 0
    FLOAT16 = 1
    INT8 = 2
    INT32 = 3
    UINT8 = 4
    INT16 = 6
    UINT16 = 7
    UINT32 = 8
    INT64 = 9
    UINT64 = 10
    DOUBLE = 11
    BOOL = 12
    STRING = 13
    COMPLEX64 = 16
    COMPLEX128 = 17
    BF16 = 27

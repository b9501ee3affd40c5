"""ascend_safe: safe-by-construction resource management for Huawei Ascend NPUs over pyacl.

Devices, contexts, streams, events, memory, data buffers, models, datasets and every other
pyacl create/destroy pair are objects with ``with`` blocks and
ordered teardown; allocations are zero-filled; closed objects raise instead of passing stale
handles. Without pyacl, the built-in simulator (:mod:`ascend_safe.sim`) stands in for it.
"""

from __future__ import annotations

from ._backend import backend_name
from ._lifetime import Resource, leak_report, live_resources
from .admission import OOM_POLICIES, get_oom_policy, set_oom_policy
from .buffer import DataBuffer
from .constants import (
    DataType,
    EventFlag,
    EventRecordedStatus,
    EventStatus,
    EventWaitStatus,
    MallocPolicy,
    MemAttr,
    MemcpyKind,
    RunMode,
    StreamFlag,
    StreamStatus,
)
from .device import Context, Device
from .errors import (
    AclError,
    AclInternalError,
    AclParameterError,
    AclResourceError,
    AclTimeoutError,
    AscendSafeError,
    AsyncOperationsPendingError,
    BackendFallbackWarning,
    BackendUnavailableError,
    EventNotCompleteError,
    ForkSafetyError,
    LiveViewError,
    MemoryWaitTimeoutError,
    OutOfDeviceMemoryError,
    PoolLimitError,
    ProcessLimitError,
    ResourceClosedError,
    ResourceLeakError,
    ResourceLeakWarning,
    SlotDirectoryError,
    SlotWaitTimeoutError,
    StreamLimitError,
    SuspendError,
    WorkCancelledError,
)
from .event import Event
from .fork import FORK_POLICIES, get_fork_policy, guard_process_creation, set_fork_policy
from .handles import Handle
from .handles import create as create_handle
from .memory import UNINITIALIZED, DeviceMemory, DvppMemory, HostMemory, Memory
from .model import Dataset, Model, TensorInfo
from .pool import MemoryPool, MemoryPoolStats, PooledMemory
from .stream import DefaultStream, Stream
from .suspend import SuspendCoordinator
from .workers import (
    WorkerLeak,
    WorkerPool,
    WorkerPoolStats,
    close_worker_sessions,
    current_device,
    keep,
    worker,
    worker_mp_pool,
    worker_pool,
)

guard_process_creation()

__version__ = "0.1.0"

__all__ = [
    "FORK_POLICIES",
    "OOM_POLICIES",
    "UNINITIALIZED",
    "AclError",
    "AclInternalError",
    "AclParameterError",
    "AclResourceError",
    "AclTimeoutError",
    "AscendSafeError",
    "AsyncOperationsPendingError",
    "BackendFallbackWarning",
    "BackendUnavailableError",
    "Context",
    "DataBuffer",
    "DataType",
    "Dataset",
    "DefaultStream",
    "Device",
    "DeviceMemory",
    "DvppMemory",
    "Event",
    "EventFlag",
    "EventNotCompleteError",
    "EventRecordedStatus",
    "EventStatus",
    "EventWaitStatus",
    "ForkSafetyError",
    "Handle",
    "HostMemory",
    "LiveViewError",
    "MallocPolicy",
    "MemAttr",
    "MemcpyKind",
    "Memory",
    "MemoryPool",
    "MemoryPoolStats",
    "MemoryWaitTimeoutError",
    "Model",
    "OutOfDeviceMemoryError",
    "PoolLimitError",
    "PooledMemory",
    "ProcessLimitError",
    "Resource",
    "ResourceClosedError",
    "ResourceLeakError",
    "ResourceLeakWarning",
    "RunMode",
    "SlotDirectoryError",
    "SlotWaitTimeoutError",
    "Stream",
    "StreamFlag",
    "StreamLimitError",
    "StreamStatus",
    "SuspendCoordinator",
    "SuspendError",
    "TensorInfo",
    "WorkCancelledError",
    "WorkerLeak",
    "WorkerPool",
    "WorkerPoolStats",
    "__version__",
    "backend_name",
    "close_worker_sessions",
    "create_handle",
    "current_device",
    "get_fork_policy",
    "get_oom_policy",
    "keep",
    "leak_report",
    "live_resources",
    "set_fork_policy",
    "set_oom_policy",
    "worker",
    "worker_mp_pool",
    "worker_pool",
]

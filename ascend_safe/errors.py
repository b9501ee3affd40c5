"""Error codes and exception types for ascend_safe.

pyacl never raises for a failed ACL call: it hands back an integer ``aclError``
(``ret``).  This module turns those integers into something readable:

* :data:`CODES` is the complete ``aclError`` table of the project reference
  (``pyacl-api.md`` section 13): ACL-layer codes, the runtime 107xxx / 207xxx /
  507xxx family and the GE codes that model calls return.
* :func:`describe` explains any integer, including codes missing from the table.
* :class:`AclError` and its subclasses are what the library raises when a pyacl
  call fails; :func:`make_acl_error` picks the right subclass for a code.
* A few library-level errors (closed resources, fork safety, process limits,
  missing backend) share the common base :class:`AscendSafeError`.

Code-range rules (reference section 13): 1xxxxx is a caller or environment error,
2xxxxx a resource shortage or hardware mismatch, 3xxxxx a business error (queue
full or empty), 5xxxxx an internal error.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

__all__ = [
    "CODES",
    "CODE_BY_NAME",
    "OOM_CODES",
    "SUCCESS",
    "SYNC_TIMEOUT_CODES",
    "AclError",
    "AclInternalError",
    "AclParameterError",
    "AclResourceError",
    "AclTimeoutError",
    "AscendSafeError",
    "AsyncOperationsPendingError",
    "BackendFallbackWarning",
    "BackendUnavailableError",
    "ErrorCategory",
    "ErrorInfo",
    "EventNotCompleteError",
    "ForkSafetyError",
    "LiveViewError",
    "MemoryWaitTimeoutError",
    "OutOfDeviceMemoryError",
    "PoolLimitError",
    "ProcessLimitError",
    "ResourceClosedError",
    "ResourceLeakError",
    "ResourceLeakWarning",
    "SlotDirectoryError",
    "SlotWaitTimeoutError",
    "StreamLimitError",
    "SuspendError",
    "WorkCancelledError",
    "category_for",
    "describe",
    "error_class_for",
    "hint_for",
    "make_acl_error",
]

#: The value every successful pyacl call returns (``ACL_SUCCESS``).
SUCCESS = 0


class ErrorCategory(str, enum.Enum):
    """Broad class of an ``aclError``, derived from the code-range rules."""

    SUCCESS = "success"
    PARAMETER = "parameter"  # 1xxxxx: caller or environment error
    RESOURCE = "resource"  # 2xxxxx: resource shortage or hardware mismatch
    BUSINESS = "business"  # 3xxxxx: business error (queue full/empty, storage limit)
    INTERNAL = "internal"  # 5xxxxx and anything outside the known ranges


@dataclass(frozen=True)
class ErrorInfo:
    """One ``aclError`` value: its number, constant name, meaning and category."""

    code: int
    name: str
    meaning: str
    category: ErrorCategory

    @property
    def known(self) -> bool:
        """True if the code is in :data:`CODES`."""
        return self.code in CODES


def category_for(code: int) -> ErrorCategory:
    """Category of ``code`` from the range rules alone (table membership is not needed)."""
    if code == SUCCESS:
        return ErrorCategory.SUCCESS
    if 100000 <= code <= 999999:
        leading = code // 100000
        if leading == 1:
            return ErrorCategory.PARAMETER
        if leading == 2:
            return ErrorCategory.RESOURCE
        if leading == 3:
            return ErrorCategory.BUSINESS
    return ErrorCategory.INTERNAL


# ---------------------------------------------------------------------------
# The table.  Order follows reference section 13: ACL layer (1/148/2/3/5xxxxx),
# then the runtime family (107/207/507xxx), then the GE codes.
# ---------------------------------------------------------------------------

_TABLE: tuple[tuple[int, str, str], ...] = (
    (0, "ACL_SUCCESS", "success; also spelled ACL_ERROR_NONE, deprecated, and ACL_RT_SUCCESS"),
    # --- ACL layer, 1xxxxx: caller / environment -------------------------------------------
    (100000, "ACL_ERROR_INVALID_PARAM", "parameter check failed: null handle, size 0, ..."),
    (100001, "ACL_ERROR_UNINITIALIZE", "ACL is not initialised: acl.init was not called"),
    (100002, "ACL_ERROR_REPEAT_INITIALIZE", "repeated initialisation or repeated load"),
    (100003, "ACL_ERROR_INVALID_FILE", "invalid file"),
    (100004, "ACL_ERROR_WRITE_FILE", "writing a file failed"),
    (100005, "ACL_ERROR_INVALID_FILE_SIZE", "invalid file size"),
    (100006, "ACL_ERROR_PARSE_FILE", "parsing a file failed"),
    (100007, "ACL_ERROR_FILE_MISSING_ATTR", "file is missing an attribute"),
    (100008, "ACL_ERROR_FILE_ATTR_INVALID", "file attribute is invalid"),
    (100009, "ACL_ERROR_INVALID_DUMP_CONFIG", "invalid dump configuration"),
    (100010, "ACL_ERROR_INVALID_PROFILING_CONFIG", "invalid profiling configuration"),
    (100011, "ACL_ERROR_INVALID_MODEL_ID", "bad model id"),
    (100012, "ACL_ERROR_DESERIALIZE_MODEL", "model deserialisation failed"),
    (100013, "ACL_ERROR_PARSE_MODEL", "model parsing failed"),
    (100014, "ACL_ERROR_READ_MODEL_FAILURE", "reading the model failed"),
    (100015, "ACL_ERROR_MODEL_SIZE_INVALID", "invalid model size"),
    (100016, "ACL_ERROR_MODEL_MISSING_ATTR", "model is missing an attribute"),
    (100017, "ACL_ERROR_MODEL_INPUT_NOT_MATCH", "model input does not match"),
    (100018, "ACL_ERROR_MODEL_OUTPUT_NOT_MATCH", "model output does not match"),
    (100019, "ACL_ERROR_MODEL_NOT_DYNAMIC", "model is not a dynamic-shape model"),
    (100020, "ACL_ERROR_OP_TYPE_NOT_MATCH", "single-op type does not match"),
    (100021, "ACL_ERROR_OP_INPUT_NOT_MATCH", "single-op input does not match"),
    (100022, "ACL_ERROR_OP_OUTPUT_NOT_MATCH", "single-op output does not match"),
    (100023, "ACL_ERROR_OP_ATTR_NOT_MATCH", "single-op attribute does not match"),
    (100024, "ACL_ERROR_OP_NOT_FOUND", "single op not found"),
    (100025, "ACL_ERROR_OP_LOAD_FAILED", "loading a single op failed"),
    (100026, "ACL_ERROR_UNSUPPORTED_DATA_TYPE", "unsupported data type"),
    (100027, "ACL_ERROR_FORMAT_NOT_MATCH", "format mismatch"),
    (100028, "ACL_ERROR_BIN_SELECTOR_NOT_REGISTERED", "op-compile bin selector not registered"),
    (100029, "ACL_ERROR_KERNEL_NOT_FOUND", "op-compile kernel not found"),
    (100030, "ACL_ERROR_BIN_SELECTOR_ALREADY_REGISTERED", "bin selector registered twice"),
    (100031, "ACL_ERROR_KERNEL_ALREADY_REGISTERED", "op-compile kernel registered twice"),
    (100032, "ACL_ERROR_INVALID_QUEUE_ID", "bad queue id"),
    (100033, "ACL_ERROR_REPEAT_SUBSCRIBE", "repeated subscribe"),
    (100034, "ACL_ERROR_STREAM_NOT_SUBSCRIBE", "stream not subscribed; deprecated, see 107015"),
    (100035, "ACL_ERROR_THREAD_NOT_SUBSCRIBE", "thread not subscribed; deprecated, see 107012"),
    (100036, "ACL_ERROR_WAIT_CALLBACK_TIMEOUT", "callback wait timed out; deprecated, see 507012"),
    (100037, "ACL_ERROR_REPEAT_FINALIZE", "repeated finalize"),
    (100038, "ACL_ERROR_NOT_STATIC_AIPP", "no static AIPP configuration; deprecated"),
    (100039, "ACL_ERROR_COMPILING_STUB_MODE", "linked against the stub libraries"),
    (100040, "ACL_ERROR_GROUP_NOT_SET", "group not set"),
    (100041, "ACL_ERROR_GROUP_NOT_CREATE", "group not created"),
    (100042, "ACL_ERROR_PROF_ALREADY_RUN", "profiling is already running"),
    (100043, "ACL_ERROR_PROF_NOT_RUN", "profiling is not running"),
    (100044, "ACL_ERROR_DUMP_ALREADY_RUN", "dump is already running"),
    (100045, "ACL_ERROR_DUMP_NOT_RUN", "dump is not running"),
    (148046, "ACL_ERROR_PROF_REPEAT_SUBSCRIBE", "repeated profiling subscribe"),
    (148047, "ACL_ERROR_PROF_API_CONFLICT", "conflicting profiling APIs used together"),
    (148048, "ACL_ERROR_INVALID_MAX_OPQUEUE_NUM_CONFIG", "bad max_opqueue_num configuration"),
    (148049, "ACL_ERROR_INVALID_OPP_PATH", "ASCEND_OPP_PATH unset or wrong"),
    (148050, "ACL_ERROR_OP_UNSUPPORTED_DYNAMIC", "op does not support dynamic shape"),
    (148051, "ACL_ERROR_RELATIVE_RESOURCE_NOT_CLEARED", "a related resource was not released"),
    (148052, "ACL_ERROR_UNSUPPORTED_JPEG", "JPEG encoding unsupported"),
    (148053, "ACL_ERROR_INVALID_BUNDLE_MODEL_ID", "bad bundle model id"),
    # --- ACL layer, 2xxxxx: resources ----------------------------------------------------
    (200000, "ACL_ERROR_BAD_ALLOC", "memory allocation failed in the ACL layer"),
    (200001, "ACL_ERROR_API_NOT_SUPPORT", "API not supported"),
    (200002, "ACL_ERROR_INVALID_DEVICE", "invalid device; deprecated, see 107001"),
    (200003, "ACL_ERROR_MEMORY_ADDRESS_UNALIGNED", "unaligned memory address"),
    (200004, "ACL_ERROR_RESOURCE_NOT_MATCH", "stream/context mismatch"),
    (200005, "ACL_ERROR_INVALID_RESOURCE_HANDLE", "handle destroyed or invalid"),
    (200006, "ACL_ERROR_FEATURE_UNSUPPORTED", "feature unsupported"),
    (200007, "ACL_ERROR_PROF_MODULES_UNSUPPORTED", "bad profiling modules"),
    # --- ACL layer, 3xxxxx: business -----------------------------------------------------
    (300000, "ACL_ERROR_STORAGE_OVER_LIMIT", "storage over limit"),
    # --- ACL layer, 5xxxxx: internal -----------------------------------------------------
    (500000, "ACL_ERROR_INTERNAL_ERROR", "unknown internal error"),
    (500001, "ACL_ERROR_FAILURE", "internal ACL error"),
    (500002, "ACL_ERROR_GE_FAILURE", "internal GE error"),
    (500003, "ACL_ERROR_RT_FAILURE", "internal runtime error"),
    (500004, "ACL_ERROR_DRV_FAILURE", "internal driver error"),
    (500005, "ACL_ERROR_PROFILING_FAILURE", "internal profiling error"),
    # --- runtime, 107xxx: caller / parameter -----------------------------------------------
    (107000, "ACL_ERROR_RT_PARAM_INVALID", "runtime parameter invalid"),
    (107001, "ACL_ERROR_RT_INVALID_DEVICEID", "invalid device id"),
    (107002, "ACL_ERROR_RT_CONTEXT_NULL", "no current context in the calling thread"),
    (107003, "ACL_ERROR_RT_STREAM_CONTEXT", "stream not in current context"),
    (107004, "ACL_ERROR_RT_MODEL_CONTEXT", "model not in current context"),
    (107005, "ACL_ERROR_RT_STREAM_MODEL", "stream not in model"),
    (107006, "ACL_ERROR_RT_EVENT_TIMESTAMP_INVALID", "event timestamp invalid"),
    (107007, "ACL_ERROR_RT_EVENT_TIMESTAMP_REVERSAL", "event timestamps reversed"),
    (107008, "ACL_ERROR_RT_ADDR_UNALIGNED", "memory address unaligned"),
    (107009, "ACL_ERROR_RT_FILE_OPEN", "opening a file failed"),
    (107010, "ACL_ERROR_RT_FILE_WRITE", "writing a file failed"),
    (107011, "ACL_ERROR_RT_STREAM_SUBSCRIBE", "stream subscribe error"),
    (107012, "ACL_ERROR_RT_THREAD_SUBSCRIBE", "thread subscribe error"),
    (107013, "ACL_ERROR_RT_GROUP_NOT_SET", "group not set"),
    (107014, "ACL_ERROR_RT_GROUP_NOT_CREATE", "group not created"),
    (107015, "ACL_ERROR_RT_STREAM_NO_CB_REG", "callback stream not registered"),
    (107016, "ACL_ERROR_RT_INVALID_MEMORY_TYPE", "invalid memory type"),
    (107017, "ACL_ERROR_RT_INVALID_HANDLE", "invalid handle"),
    (107018, "ACL_ERROR_RT_INVALID_MALLOC_TYPE", "invalid malloc type"),
    (107019, "ACL_ERROR_RT_WAIT_TIMEOUT", "wait timed out"),
    (107020, "ACL_ERROR_RT_TASK_TIMEOUT", "task timed out"),
    (107021, "ACL_ERROR_RT_SYSPARAMOPT_NOT_SET", "system parameter of the context not set"),
    (107022, "ACL_ERROR_RT_DEVICE_TASK_ABORT", "conflicts with a running device_task_abort"),
    (107023, "ACL_ERROR_RT_STREAM_ABORT", "stream is aborting its tasks"),
    (107024, "ACL_ERROR_RT_CAPTURE_DEPENDENCY", "capture: event wait has no matching record"),
    (107025, "ACL_ERROR_RT_STREAM_UNJOINED", "capture: a forked stream was never joined back"),
    (107026, "ACL_ERROR_RT_MODEL_CAPTURED", "capture: model is being captured"),
    (107027, "ACL_ERROR_RT_STREAM_CAPTURED", "capture: stream is being captured"),
    (107028, "ACL_ERROR_RT_EVENT_CAPTURED", "capture: event is being captured"),
    (107029, "ACL_ERROR_RT_STREAM_NOT_CAPTURED", "capture: stream is not capturing"),
    (107030, "ACL_ERROR_RT_CAPTURE_MODE_NOT_SUPPORT", "capture: call not allowed in this mode"),
    (107031, "ACL_ERROR_RT_STREAM_CAPTURE_IMPLICIT", "capture: implicit default-stream dependency"),
    (107032, "ACL_ERROR_STREAM_CAPTURE_CONFLICT", "capture: dependent streams began together"),
    (107033, "ACL_ERROR_STREAM_TASK_GROUP_STATUS", "task group status error"),
    (107034, "ACL_ERROR_STREAM_TASK_GROUP_INTR", "task group interrupted"),
    (107035, "ACL_ERROR_RT_TASK_ABORT_STOP", "device task abort stopped before post-processing"),
    (107036, "ACL_ERROR_RT_STREAM_CAPTURE_UNMATCHED", "capture: not begun on this stream"),
    (107037, "ACL_ERROR_RT_MODEL_RUNNING", "model is still running"),
    (107038, "ACL_ERROR_RT_STREAM_CAPTURE_WRONG_THREAD", "capture: ended on another thread"),
    (107039, "ACL_ERROR_RT_INSUFFICIENT_INPUT_ARRAY", "input array capacity insufficient"),
    (107040, "ACL_ERROR_RT_MODEL_UPDATE_FAILED", "model update failed"),
    (107041, "ACL_ERROR_RT_CAPTURE_MODE_BLOCK_ASYNC", "capture: async call made sync, refused"),
    (107042, "ACL_ERROR_RT_SYMBOL_NOT_FOUND", "kernel symbol not found"),
    (107043, "ACL_ERROR_RT_INVALID_SYMBOL", "invalid kernel symbol"),
    (107044, "ACL_ERROR_RT_INVALID_DEVICE_FUNCTION", "invalid device function"),
    (107045, "ACL_ERROR_RT_SUB_ACLGRAPH_IS_CAPTURING", "capture: a sub-graph is still capturing"),
    # --- runtime, 207xxx: resources ------------------------------------------------------
    (207000, "ACL_ERROR_RT_FEATURE_NOT_SUPPORT", "feature not supported"),
    (207001, "ACL_ERROR_RT_MEMORY_ALLOCATION", "device out of memory"),
    (207002, "ACL_ERROR_RT_MEMORY_FREE", "memory free failed"),
    (207003, "ACL_ERROR_RT_AICORE_OVER_FLOW", "AI Core overflow"),
    (207004, "ACL_ERROR_RT_NO_DEVICE", "device unavailable"),
    (207005, "ACL_ERROR_RT_RESOURCE_ALLOC_FAIL", "resource allocation failed"),
    (207006, "ACL_ERROR_RT_NO_PERMISSION", "no permission"),
    (207007, "ACL_ERROR_RT_NO_EVENT_RESOURCE", "out of event resources"),
    (207008, "ACL_ERROR_RT_NO_STREAM_RESOURCE", "out of stream resources"),
    (207009, "ACL_ERROR_RT_NO_NOTIFY_RESOURCE", "out of notify resources"),
    (207010, "ACL_ERROR_RT_NO_MODEL_RESOURCE", "out of model resources"),
    (207011, "ACL_ERROR_RT_NO_CDQ_RESOURCE", "out of CDQ resources"),
    (207012, "ACL_ERROR_RT_OVER_LIMIT", "over limit, e.g. too many queues"),
    (207013, "ACL_ERROR_RT_QUEUE_EMPTY", "queue is empty"),
    (207014, "ACL_ERROR_RT_QUEUE_FULL", "queue is full"),
    (207015, "ACL_ERROR_RT_REPEATED_INIT", "repeated initialisation, e.g. of a queue"),
    (207016, "ACL_ERROR_RT_AIVEC_OVER_FLOW", "AI Vector overflow"),
    (207017, "ACL_ERROR_RT_OVER_FLOW", "overflow"),
    (207018, "ACL_ERROR_RT_DEVICE_OOM", "device-side memory exhausted"),
    (207019, "ACL_ERROR_RT_FEATURE_NOT_SUPPORT_UPDATE_OP", "driver cannot update this op"),
    (207020, "ACL_ERROR_RT_TIMEOUT", "driver timeout"),
    (207021, "ACL_ERROR_RT_LINK_TYPE_NOT_SUPPORTED", "link type not supported"),
    # --- runtime, 507xxx: internal / device faults ----------------------------------------
    (507000, "ACL_ERROR_RT_INTERNAL_ERROR", "runtime internal error"),
    (507001, "ACL_ERROR_RT_TS_ERROR", "task scheduler error"),
    (507002, "ACL_ERROR_RT_STREAM_TASK_FULL", "stream task queue full"),
    (507003, "ACL_ERROR_RT_STREAM_TASK_EMPTY", "stream task queue empty"),
    (507004, "ACL_ERROR_RT_STREAM_NOT_COMPLETE", "stream not complete"),
    (507005, "ACL_ERROR_RT_END_OF_SEQUENCE", "end of sequence"),
    (507006, "ACL_ERROR_RT_EVENT_NOT_COMPLETE", "event not complete"),
    (507007, "ACL_ERROR_RT_CONTEXT_RELEASE_ERROR", "context release failed"),
    (507008, "ACL_ERROR_RT_SOC_VERSION", "SoC version error"),
    (507009, "ACL_ERROR_RT_TASK_TYPE_NOT_SUPPORT", "task type unsupported"),
    (507010, "ACL_ERROR_RT_LOST_HEARTBEAT", "task scheduler lost heartbeat"),
    (507011, "ACL_ERROR_RT_MODEL_EXECUTE", "model execution failed"),
    (507012, "ACL_ERROR_RT_REPORT_TIMEOUT", "report timed out"),
    (507013, "ACL_ERROR_RT_SYS_DMA", "system DMA error"),
    (507014, "ACL_ERROR_RT_AICORE_TIMEOUT", "AI Core timeout"),
    (507015, "ACL_ERROR_RT_AICORE_EXCEPTION", "AI Core exception"),
    (507016, "ACL_ERROR_RT_AICORE_TRAP_EXCEPTION", "AI Core trap exception"),
    (507017, "ACL_ERROR_RT_AICPU_TIMEOUT", "AI CPU timeout"),
    (507018, "ACL_ERROR_RT_AICPU_EXCEPTION", "AI CPU exception"),
    (507019, "ACL_ERROR_RT_AICPU_DATADUMP_RSP_ERR", "AI CPU data-dump response error"),
    (507020, "ACL_ERROR_RT_AICPU_MODEL_RSP_ERR", "AI CPU model-operation response error"),
    (507021, "ACL_ERROR_RT_PROFILING_ERROR", "profiling error"),
    (507022, "ACL_ERROR_RT_IPC_ERROR", "IPC error"),
    (507023, "ACL_ERROR_RT_MODEL_ABORT_NORMAL", "model aborted normally"),
    (507024, "ACL_ERROR_RT_KERNEL_UNREGISTERING", "kernel is being unregistered"),
    (507025, "ACL_ERROR_RT_RINGBUFFER_NOT_INIT", "ring buffer not initialised"),
    (507026, "ACL_ERROR_RT_RINGBUFFER_NO_DATA", "ring buffer has no data"),
    (507027, "ACL_ERROR_RT_KERNEL_LOOKUP", "kernel lookup failed"),
    (507028, "ACL_ERROR_RT_KERNEL_DUPLICATE", "kernel registered twice"),
    (507029, "ACL_ERROR_RT_DEBUG_REGISTER_FAIL", "debug register failed"),
    (507030, "ACL_ERROR_RT_DEBUG_UNREGISTER_FAIL", "debug unregister failed"),
    (507031, "ACL_ERROR_RT_LABEL_CONTEXT", "label not in current context"),
    (507032, "ACL_ERROR_RT_PROGRAM_USE_OUT", "program registrations used up"),
    (507033, "ACL_ERROR_RT_DEV_SETUP_ERROR", "device setup failed"),
    (507034, "ACL_ERROR_RT_VECTOR_CORE_TIMEOUT", "vector core timeout"),
    (507035, "ACL_ERROR_RT_VECTOR_CORE_EXCEPTION", "vector core exception"),
    (507036, "ACL_ERROR_RT_VECTOR_CORE_TRAP_EXCEPTION", "vector core trap exception"),
    (507037, "ACL_ERROR_RT_CDQ_BATCH_ABNORMAL", "CDQ batch allocation abnormal"),
    (507038, "ACL_ERROR_RT_DIE_MODE_CHANGE_ERROR", "die mode cannot be changed"),
    (507039, "ACL_ERROR_RT_DIE_SET_ERROR", "die cannot be set in single-die mode"),
    (507040, "ACL_ERROR_RT_INVALID_DIEID", "invalid die id"),
    (507041, "ACL_ERROR_RT_DIE_MODE_NOT_SET", "die mode not set"),
    (507042, "ACL_ERROR_RT_AICORE_TRAP_READ_OVERFLOW", "AI Core trap: read overflow"),
    (507043, "ACL_ERROR_RT_AICORE_TRAP_WRITE_OVERFLOW", "AI Core trap: write overflow"),
    (507044, "ACL_ERROR_RT_VECTOR_CORE_TRAP_READ_OVERFLOW", "vector core trap: read overflow"),
    (507045, "ACL_ERROR_RT_VECTOR_CORE_TRAP_WRITE_OVERFLOW", "vector core trap: write overflow"),
    (507046, "ACL_ERROR_RT_STREAM_SYNC_TIMEOUT", "synchronize_stream_with_timeout expired"),
    (507047, "ACL_ERROR_RT_EVENT_SYNC_TIMEOUT", "synchronize_event_with_timeout expired"),
    (507048, "ACL_ERROR_RT_FFTS_PLUS_TIMEOUT", "FFTS+ task timeout"),
    (507049, "ACL_ERROR_RT_FFTS_PLUS_EXCEPTION", "FFTS+ task exception"),
    (507050, "ACL_ERROR_RT_FFTS_PLUS_TRAP_EXCEPTION", "FFTS+ task trap exception"),
    (507051, "ACL_ERROR_RT_SEND_MSG", "HDC message send failed"),
    (507052, "ACL_ERROR_RT_COPY_DATA", "data copy failed"),
    (507053, "ACL_ERROR_RT_DEVICE_MEM_ERROR", "device memory uncorrectable error, UCE"),
    (507054, "ACL_ERROR_RT_HBM_MULTI_BIT_ECC_ERROR", "HBM multi-bit ECC error"),
    (507055, "ACL_ERROR_RT_SUSPECT_DEVICE_MEM_ERROR", "suspected peer memory UCE"),
    (507056, "ACL_ERROR_RT_LINK_ERROR", "inter-device link down"),
    (507057, "ACL_ERROR_RT_SUSPECT_REMOTE_ERROR", "suspected remote error"),
    (507899, "ACL_ERROR_RT_DRV_INTERNAL_ERROR", "driver internal error"),
    (507900, "ACL_ERROR_RT_AICPU_INTERNAL_ERROR", "AI CPU internal error"),
    (507901, "ACL_ERROR_RT_SOCKET_CLOSE", "HDC connection closed"),
    (507902, "ACL_ERROR_RT_AICPU_INFO_LOAD_RSP_ERR", "AI CPU info-load response error"),
    (507903, "ACL_ERROR_RT_STREAM_CAPTURE_INVALIDATED", "stream capture was invalidated"),
    (507904, "ACL_ERROR_RT_COMM_OP_RETRY_FAIL", "HCCL operation retry failed"),
    (507905, "ACL_ERROR_SNAPSHOT_LOCK_TIMEOUT", "snapshot: process lock timed out"),
    (507906, "ACL_ERROR_SNAPSHOT_LOCK_FAILED", "snapshot: process lock failed"),
    (507907, "ACL_ERROR_SNAPSHOT_UNLOCK_FAILED", "snapshot: process unlock failed"),
    (507908, "ACL_ERROR_SNAPSHOT_BACKUP_FAILED", "snapshot: backup failed"),
    (507909, "ACL_ERROR_SNAPSHOT_RESTORE_FAILED", "snapshot: restore failed"),
    (507910, "ACL_ERROR_HOST_MEMORY_ALREADY_REGISTERED", "host memory already registered"),
    (507911, "ACL_ERROR_HOST_MEMORY_NOT_REGISTERED", "host memory was never registered"),
    (507912, "ACL_ERROR_SNAPSHOT_CALLBACK_FAILED", "snapshot: callback failed"),
    (507913, "ACL_ERROR_SNAPSHOT_REGISTER_CALLBACK_FAILED", "snapshot: callback register failed"),
    (507914, "ACL_ERROR_RT_L3_PORT_ERROR", "L3 / UB port memory error"),
    (507915, "ACL_ERROR_RT_CCU_TIMEOUT", "CCU timeout"),
    (507916, "ACL_ERROR_RT_CCU_EXCEPTION", "CCU exception"),
    # --- GE codes returned by model calls -------------------------------------------------
    (145000, "ACL_ERROR_GE_PARAM_INVALID", "GE: parameter invalid"),
    (145001, "ACL_ERROR_GE_EXEC_NOT_INIT", "GE: executor not initialised"),
    (145002, "ACL_ERROR_GE_EXEC_MODEL_PATH_INVALID", "GE: model file path invalid"),
    (145003, "ACL_ERROR_GE_EXEC_MODEL_ID_INVALID", "GE: model id invalid"),
    (145006, "ACL_ERROR_GE_EXEC_MODEL_DATA_SIZE_INVALID", "GE: model data size invalid"),
    (145007, "ACL_ERROR_GE_EXEC_MODEL_ADDR_INVALID", "GE: model address invalid"),
    (145008, "ACL_ERROR_GE_EXEC_MODEL_QUEUE_ID_INVALID", "GE: model queue id invalid"),
    (145009, "ACL_ERROR_GE_EXEC_LOAD_MODEL_REPEATED", "GE: model loaded repeatedly"),
    (145011, "ACL_ERROR_GE_DYNAMIC_INPUT_ADDR_INVALID", "GE: dynamic input address invalid"),
    (145012, "ACL_ERROR_GE_DYNAMIC_INPUT_LENGTH_INVALID", "GE: dynamic input length invalid"),
    (145013, "ACL_ERROR_GE_DYNAMIC_BATCH_SIZE_INVALID", "GE: dynamic batch size invalid"),
    (145014, "ACL_ERROR_GE_AIPP_BATCH_EMPTY", "GE: AIPP batch parameter empty"),
    (145015, "ACL_ERROR_GE_AIPP_NOT_EXIST", "GE: AIPP parameter does not exist"),
    (145016, "ACL_ERROR_GE_AIPP_MODE_INVALID", "GE: AIPP mode invalid"),
    (145017, "ACL_ERROR_GE_OP_TASK_TYPE_INVALID", "GE: op task type invalid"),
    (145018, "ACL_ERROR_GE_OP_KERNEL_TYPE_INVALID", "GE: op kernel type invalid"),
    (145019, "ACL_ERROR_GE_PLGMGR_PATH_INVALID", "GE: plugin path invalid"),
    (145020, "ACL_ERROR_GE_FORMAT_INVALID", "GE: format invalid"),
    (145021, "ACL_ERROR_GE_SHAPE_INVALID", "GE: shape invalid"),
    (145022, "ACL_ERROR_GE_DATATYPE_INVALID", "GE: data type invalid"),
    (245000, "ACL_ERROR_GE_MEMORY_ALLOCATION", "GE: memory allocation failed"),
    (245001, "ACL_ERROR_GE_MEMORY_OPERATE_FAILED", "GE: memory operation failed"),
    (245002, "ACL_ERROR_GE_DEVICE_MEMORY_ALLOCATION_FAILED", "GE: device memory allocation failed"),
    (545000, "ACL_ERROR_GE_INTERNAL_ERROR", "GE: internal error"),
    (545001, "ACL_ERROR_GE_LOAD_MODEL", "GE: model load failed"),
    (545002, "ACL_ERROR_GE_EXEC_LOAD_MODEL_PARTITION_FAILED", "GE: model partition load failed"),
    (545003, "ACL_ERROR_GE_EXEC_LOAD_WEIGHT_PARTITION_FAILED", "GE: weight partition load failed"),
    (545004, "ACL_ERROR_GE_EXEC_LOAD_TASK_PARTITION_FAILED", "GE: task partition load failed"),
    (545005, "ACL_ERROR_GE_EXEC_LOAD_KERNEL_PARTITION_FAILED", "GE: kernel partition load failed"),
    (545006, "ACL_ERROR_GE_EXEC_RELEASE_MODEL_DATA", "GE: releasing model data failed"),
    (545007, "ACL_ERROR_GE_COMMAND_HANDLE", "GE: command handling failed"),
    (545008, "ACL_ERROR_GE_GET_TENSOR_INFO", "GE: getting tensor info failed"),
    (545009, "ACL_ERROR_GE_UNLOAD_MODEL", "GE: model unload failed"),
    (545601, "ACL_ERROR_GE_MODEL_EXECUTE_TIMEOUT", "GE: model execution timed out"),
)


def _build_codes() -> Mapping[int, ErrorInfo]:
    table: dict[int, ErrorInfo] = {}
    for code, name, meaning in _TABLE:
        if code in table:  # pragma: no cover - guarded by the tests
            raise RuntimeError(f"duplicate aclError code {code} in the table")
        table[code] = ErrorInfo(code, name, meaning, category_for(code))
    return types.MappingProxyType(table)


#: Every ``aclError`` of reference section 13, in table order, keyed by number.
CODES: Mapping[int, ErrorInfo] = _build_codes()

#: Reverse lookup: constant name -> number.
CODE_BY_NAME: Mapping[str, int] = types.MappingProxyType(
    {info.name: code for code, info in CODES.items()}
)

#: Codes that mean "device (or allocation) memory exhausted".
OOM_CODES: frozenset[int] = frozenset({200000, 207001, 207018, 245002})

_OOM_HINT = "free device memory or use a smaller allocation"
_NO_CONTEXT_HINT = (
    "no current context in this thread; call acl.rt.set_device or acl.rt.set_context here first"
)
_HINTS: Mapping[int, str] = types.MappingProxyType(
    {
        100001: "call acl.init / open a Device first",
        100002: "acl.init was already called in this process",
        100037: "acl.finalize was already called",
        100039: "the process is linked against stub libraries; use a real CANN install",
        148049: "set ASCEND_OPP_PATH (source the CANN set_env.sh)",
        200000: _OOM_HINT,
        200002: "check the device id against acl.rt.get_device_count()",
        200004: "the stream belongs to another context; make its context current",
        200005: "the handle was already destroyed or never created",
        107001: "check the device id against acl.rt.get_device_count()",
        107002: _NO_CONTEXT_HINT,
        107003: "the stream belongs to another context; make its context current",
        107017: "the handle was already destroyed or never created",
        107019: "retry the call, or raise the timeout",
        207001: _OOM_HINT,
        207004: "the device is unavailable; check npu-smi and the device id",
        207006: "no permission; check device node permissions and the user's groups",
        207008: "too many streams; destroy unused streams",
        207007: "too many events; destroy unused events",
        207018: _OOM_HINT,
        245002: _OOM_HINT,
        507046: "the stream did not finish in time; raise the timeout or check the kernels",
        507047: "the event did not complete in time; raise the timeout or check the kernels",
    }
)


def describe(code: int) -> ErrorInfo:
    """Return the :class:`ErrorInfo` for ``code``; unknown codes get a synthetic entry."""
    info = CODES.get(code)
    if info is not None:
        return info
    category = category_for(code)
    return ErrorInfo(
        code=code,
        name=f"UNKNOWN_ERROR_{code}",
        meaning=f"unknown aclError ({category.value} range)",
        category=category,
    )


def hint_for(code: int) -> Optional[str]:
    """Short advice on what to do about ``code``, or None if there is nothing useful to say."""
    return _HINTS.get(code)


# ---------------------------------------------------------------------------
# Exceptions
# ---------------------------------------------------------------------------


class AscendSafeError(Exception):
    """Base class of every exception that ascend_safe raises."""


class AclError(AscendSafeError):
    """A pyacl call returned a non-zero ``aclError``."""

    code: int
    name: str
    meaning: str
    category: ErrorCategory
    api: str
    recent_message: Optional[str]
    resource: Optional[str]
    hint: Optional[str]

    def __init__(
        self,
        code: int,
        api: str,
        recent_message: Optional[str] = None,
        resource: Optional[str] = None,
    ) -> None:
        info = describe(code)
        self.code = code
        self.name = info.name
        self.meaning = info.meaning
        self.category = info.category
        self.api = api
        if recent_message is not None and not recent_message.strip():
            recent_message = None
        self.recent_message = recent_message
        self.resource = resource
        self.hint = hint_for(code)
        super().__init__(self._format())

    @property
    def info(self) -> ErrorInfo:
        """The table entry (or synthetic entry) for :attr:`code`."""
        return describe(self.code)

    def _format(self) -> str:
        text = f"{self.api} failed with {self.code} {self.name} ({self.meaning})"
        if self.resource:
            text += f" [resource: {self.resource}]"
        if self.hint:
            text += f" [hint: {self.hint}]"
        if self.recent_message:
            text += f": {self.recent_message.strip()}"
        return text

    def __str__(self) -> str:
        return self._format()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, api={self.api!r}, "
            f"recent_message={self.recent_message!r}, resource={self.resource!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.code, self.api, self.recent_message, self.resource))


class AclParameterError(AclError):
    """A caller or parameter error (1xxxxx, including 107xxx runtime and 145xxx GE codes)."""


class AclResourceError(AclError):
    """A resource shortage or business error (2xxxxx / 207xxx / 245xxx and 3xxxxx)."""


class OutOfDeviceMemoryError(AclResourceError):
    """Memory is exhausted (200000, 207001, 207018 or 245002).

    Raised by pyacl's own failure, or by memory admission before a call that would not fit (in
    RC mode such a call hangs). Where known, :attr:`details` says which device, the bytes
    requested (and with pyacl's padding), the free and total bytes, and the largest live
    allocations of this process.
    """

    #: ``device requested padded free total largest decision`` when known, else {}.
    details: dict[str, Any]

    def __init__(
        self,
        code: int,
        api: str,
        recent_message: Optional[str] = None,
        resource: Optional[str] = None,
        details: Optional[Mapping[str, Any]] = None,
    ) -> None:
        self.details = dict(details or {})
        super().__init__(code, api, recent_message, resource)

    def add_details(self, details: Mapping[str, Any]) -> None:
        """Attach what the allocation asked for and what the device had (updates the message)."""
        self.details.update(details)
        self.args = (self._format(),)

    @property
    def requested(self) -> Optional[int]:
        """Bytes the failed allocation asked for, if known."""
        value = self.details.get("requested")
        return value if isinstance(value, int) else None

    @property
    def free(self) -> Optional[int]:
        """Free bytes on the device when the allocation was decided (-1: unreadable)."""
        value = self.details.get("free")
        return value if isinstance(value, int) else None

    @property
    def total(self) -> Optional[int]:
        """Total bytes of the device memory kind (0: the device does not report it)."""
        value = self.details.get("total")
        return value if isinstance(value, int) else None

    @property
    def largest(self) -> list[tuple[str, int]]:
        """``(repr, bytes)`` of this process's largest live allocations on the device."""
        return list(self.details.get("largest") or [])

    def _format(self) -> str:
        text = super()._format()
        d = getattr(self, "details", None)
        if not d:
            return text
        parts = []
        if d.get("decision"):
            parts.append(str(d["decision"]))
        if "requested" in d:
            asked = f"{d['requested']} bytes requested"
            if d.get("padded", d["requested"]) != d["requested"]:
                asked += f" ({d['padded']} with pyacl's padding)"
            if "device" in d:
                asked += f" on device {d['device']}"
            parts.append(asked)
        free, total = d.get("free"), d.get("total")
        if isinstance(free, int) and free >= 0 and isinstance(total, int) and total > 0:
            parts.append(f"{free} of {total} bytes free")
        elif "free" in d:
            parts.append("free memory unknown (get_mem_info reported nothing)")
        largest = d.get("largest")
        if largest:
            items = ", ".join(f"{text} ({n} bytes)" for text, n in largest)
            parts.append(f"largest live allocations of this process: {items}")
        elif "largest" in d:
            parts.append("this process holds no live device allocation there")
        parts.append(
            "free memory (close allocations you no longer need), allocate less, or choose "
            "another OOM policy (ascend_safe.set_oom_policy: 'wait' waits for memory)"
        )
        return text + "; " + "; ".join(parts)

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.code, self.api, self.recent_message, self.resource, self.details),
        )


class AclInternalError(AclError):
    """An internal ACL, runtime, driver or GE failure (5xxxxx) or a code of no known range."""


class AclTimeoutError(AclInternalError, TimeoutError):
    """A synchronize with a timeout expired (507046 stream, 507047 event): the work is still
    running. Also a :class:`TimeoutError`, so ``except TimeoutError`` catches it."""


#: Codes of a synchronize that timed out (:class:`AclTimeoutError`).
SYNC_TIMEOUT_CODES = frozenset({507046, 507047})


def error_class_for(code: int) -> type[AclError]:
    """The :class:`AclError` subclass that represents ``code``."""
    if code in OOM_CODES:
        return OutOfDeviceMemoryError
    if code in SYNC_TIMEOUT_CODES:
        return AclTimeoutError
    category = category_for(code)
    if category is ErrorCategory.PARAMETER:
        return AclParameterError
    if category in (ErrorCategory.RESOURCE, ErrorCategory.BUSINESS):
        return AclResourceError
    if category is ErrorCategory.SUCCESS:
        return AclError
    return AclInternalError


def make_acl_error(
    code: int,
    api: str,
    recent_message: Optional[str] = None,
    resource: Optional[str] = None,
) -> AclError:
    """Build the right :class:`AclError` subclass for ``code`` returned by ``api``."""
    return error_class_for(code)(code, api, recent_message, resource)


class ResourceClosedError(AscendSafeError, RuntimeError):
    """A resource was used after it was closed or released."""


class ForkSafetyError(AscendSafeError, RuntimeError):
    """pyacl was used in a forked child that inherited the parent's ACL state."""


class AsyncOperationsPendingError(AscendSafeError, RuntimeError):
    """An operation needs asynchronous work to finish first, but some is still pending."""


class EventNotCompleteError(AsyncOperationsPendingError):
    """An event's recorded work has not completed yet (``Event.elapsed_time`` before the end
    event completed): synchronize the event (or its stream) first."""


class LiveViewError(AscendSafeError, BufferError):
    """Host memory was closed (directly or with its device) while numpy views of it were still
    alive: it stays open, so the views never read freed memory. Delete the arrays first."""


class MemoryWaitTimeoutError(OutOfDeviceMemoryError, TimeoutError):
    """Under the ``'wait'`` OOM policy, memory did not come free within the timeout.

    An :class:`OutOfDeviceMemoryError` and a :class:`TimeoutError`."""


class PoolLimitError(AscendSafeError, MemoryError):
    """A :class:`~ascend_safe.pool.MemoryPool` would hold more than its limit, even with its
    cache flushed (no pyacl call failed: the pool refused before allocating)."""


class ProcessLimitError(AscendSafeError, RuntimeError):
    """Opening a device would exceed the number of processes allowed on it."""

    device: int
    limit: int
    holders: tuple[int, ...]

    def __init__(
        self,
        device: int,
        limit: int,
        holders: tuple[int, ...] = (),
        message: Optional[str] = None,
    ) -> None:
        self.device = device
        self.limit = limit
        self.holders = tuple(holders)
        if message is None:
            message = (
                f"device {device} already has {len(self.holders)} of {limit} allowed processes"
            )
            if self.holders:
                message += " (pids: " + ", ".join(str(pid) for pid in self.holders) + ")"
        self.message = message
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.device, self.limit, self.holders, self.message))


class SlotWaitTimeoutError(ProcessLimitError, TimeoutError):
    """No process slot of the device came free within the *slot_timeout* given (a
    :class:`ProcessLimitError` and a :class:`TimeoutError`). Without a timeout (0, the default)
    a full device raises :class:`ProcessLimitError` itself, at once."""


class StreamLimitError(AscendSafeError, RuntimeError):
    """Creating a stream would exceed the cap on streams per device (see ``max_streams``)."""

    device: int
    limit: int
    open: int

    def __init__(self, device: int, limit: int, open: int, message: str) -> None:
        self.device = device
        self.limit = limit
        self.open = open
        self.message = message
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.device, self.limit, self.open, self.message))


class BackendUnavailableError(AscendSafeError, ImportError):
    """The requested backend (real pyacl or the simulator) cannot be imported or used."""


class BackendFallbackWarning(UserWarning):
    """``ASCEND_SAFE_BACKEND=auto`` found no pyacl and uses the simulator. Issued once per
    program: the decision is passed to child processes through the environment
    (``ASCEND_SAFE_BACKEND=sim``). Silence it with ``ASCEND_SAFE_BACKEND=sim``, with
    ``warnings.filterwarnings("ignore", category=ascend_safe.BackendFallbackWarning)``, or on
    the command line with ``-W "ignore:pyacl (import acl) is not available"`` (``-W`` accepts
    only built-in categories, so match the message)."""


class ResourceLeakError(AscendSafeError, RuntimeError):
    """A worker call left resources open (they were released); raised when asked to."""


class ResourceLeakWarning(UserWarning):
    """A worker call left resources open (they were released): ``@worker(leaks="warn")``.

    A :class:`UserWarning`, so it is shown by default (unlike ``ResourceWarning``); turn it
    into an error with ``warnings.simplefilter("error", ascend_safe.ResourceLeakWarning)``."""


class SlotDirectoryError(AscendSafeError, OSError):
    """The directory of the process-slot files is unsafe or unusable.

    Raised instead of trusting a directory another user could tamper with (wrong owner, writable
    by others without the sticky bit, a symlink planted in the path, not a directory). ``path``
    names the offending path; the message says how to fix it.
    """

    path: str

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return self.message


class SuspendError(AscendSafeError, RuntimeError):
    """Device work is stopped for a system sleep, or the resume after it failed.

    Raised to a unit of work waiting at a :class:`~ascend_safe.SuspendCoordinator` whose resume
    failed (the gate stays closed until a later ``resume()`` succeeds), and by ``resume()``
    itself; the cause is chained.
    """


class WorkCancelledError(SuspendError):
    """A unit of device work was still running when a suspend's drain timeout ran out.

    Its streams were synchronized and its device resources released under it before the system
    was allowed to sleep, so its results cannot be trusted: run it again after the resume.
    """

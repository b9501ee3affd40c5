"""Tests for ascend_safe.errors: the aclError table and the exception hierarchy."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Iterable

import pytest

from ascend_safe import errors
from ascend_safe.errors import (
    CODE_BY_NAME,
    CODES,
    OOM_CODES,
    AclError,
    AclInternalError,
    AclParameterError,
    AclResourceError,
    AclTimeoutError,
    AscendSafeError,
    AsyncOperationsPendingError,
    BackendUnavailableError,
    ErrorCategory,
    ErrorInfo,
    ForkSafetyError,
    OutOfDeviceMemoryError,
    ProcessLimitError,
    ResourceClosedError,
    describe,
    error_class_for,
    make_acl_error,
)


def _span(first: int, last: int) -> set[int]:
    return set(range(first, last + 1))


# Families exactly as reference section 13 lays them out.
FAMILIES: dict[str, set[int]] = {
    "acl_1xxxxx": _span(100000, 100045),
    "acl_148xxx": _span(148046, 148053),
    "acl_2xxxxx": _span(200000, 200007),
    "acl_3xxxxx": {300000},
    "acl_5xxxxx": _span(500000, 500005),
    "rt_107xxx": _span(107000, 107045),
    "rt_207xxx": _span(207000, 207021),
    "rt_507xxx": _span(507000, 507057),
    "rt_5079xx": _span(507899, 507916),
    "ge_145xxx": _span(145000, 145003) | _span(145006, 145009) | _span(145011, 145022),
    "ge_245xxx": _span(245000, 245002),
    "ge_545xxx": _span(545000, 545009) | {545601},
}


def _in_family(codes: Iterable[int], first: int, last: int) -> set[int]:
    return {c for c in codes if first <= c <= last}


# --------------------------------------------------------------------------- table shape


def test_table_is_exactly_the_reference_families() -> None:
    expected: set[int] = {0}
    for family in FAMILIES.values():
        assert not (expected & family), "families overlap"
        expected |= family
    assert set(CODES) == expected
    assert len(CODES) == 248


@pytest.mark.parametrize(
    ("family", "first", "last"),
    [
        ("acl_1xxxxx", 100000, 100999),
        ("acl_148xxx", 148000, 148999),
        ("acl_2xxxxx", 200000, 200999),
        ("acl_3xxxxx", 300000, 300999),
        ("acl_5xxxxx", 500000, 500999),
        ("rt_107xxx", 107000, 107999),
        ("rt_207xxx", 207000, 207999),
        ("rt_507xxx", 507000, 507898),
        ("rt_5079xx", 507899, 507999),
        ("ge_145xxx", 145000, 145999),
        ("ge_245xxx", 245000, 245999),
        ("ge_545xxx", 545000, 545999),
    ],
)
def test_family_counts(family: str, first: int, last: int) -> None:
    got = _in_family(CODES, first, last)
    assert got == FAMILIES[family]
    assert len(got) == len(FAMILIES[family])


def test_family_sizes_match_reference_ranges() -> None:
    sizes = {name: len(codes) for name, codes in FAMILIES.items()}
    assert sizes == {
        "acl_1xxxxx": 46,
        "acl_148xxx": 8,
        "acl_2xxxxx": 8,
        "acl_3xxxxx": 1,
        "acl_5xxxxx": 6,
        "rt_107xxx": 46,
        "rt_207xxx": 22,
        "rt_507xxx": 58,
        "rt_5079xx": 18,
        "ge_145xxx": 20,
        "ge_245xxx": 3,
        "ge_545xxx": 11,
    }


def test_table_order_follows_reference() -> None:
    keys = list(CODES)
    assert keys[0] == 0
    # Block order of the reference: ACL layer, runtime family, then GE.
    assert keys.index(500005) < keys.index(107000) < keys.index(507916) < keys.index(145000)
    # Inside each family the codes ascend.
    for family in FAMILIES.values():
        ordered = [c for c in keys if c in family]
        assert ordered == sorted(ordered)


def test_codes_mapping_is_immutable() -> None:
    with pytest.raises(TypeError):
        CODES[1] = CODES[0]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        CODES[0].name = "X"  # type: ignore[misc]


def test_names_unique_and_well_formed() -> None:
    names = [info.name for info in CODES.values()]
    assert len(names) == len(set(names))
    for code, info in CODES.items():
        assert info.code == code
        assert info.name.startswith("ACL_")
        assert info.name == info.name.upper()
        assert "UNKNOWN" not in info.name
        assert info.meaning and "\n" not in info.meaning
        assert CODE_BY_NAME[info.name] == code


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (0, "ACL_SUCCESS"),
        (100000, "ACL_ERROR_INVALID_PARAM"),
        (100001, "ACL_ERROR_UNINITIALIZE"),
        (100003, "ACL_ERROR_INVALID_FILE"),
        (100010, "ACL_ERROR_INVALID_PROFILING_CONFIG"),
        (100019, "ACL_ERROR_MODEL_NOT_DYNAMIC"),
        (100025, "ACL_ERROR_OP_LOAD_FAILED"),
        (100031, "ACL_ERROR_KERNEL_ALREADY_REGISTERED"),
        (100045, "ACL_ERROR_DUMP_NOT_RUN"),
        (148046, "ACL_ERROR_PROF_REPEAT_SUBSCRIBE"),
        (148053, "ACL_ERROR_INVALID_BUNDLE_MODEL_ID"),
        (200000, "ACL_ERROR_BAD_ALLOC"),
        (300000, "ACL_ERROR_STORAGE_OVER_LIMIT"),
        (500000, "ACL_ERROR_INTERNAL_ERROR"),
        (500005, "ACL_ERROR_PROFILING_FAILURE"),
        (107000, "ACL_ERROR_RT_PARAM_INVALID"),
        (107002, "ACL_ERROR_RT_CONTEXT_NULL"),
        (107024, "ACL_ERROR_RT_CAPTURE_DEPENDENCY"),
        (107032, "ACL_ERROR_STREAM_CAPTURE_CONFLICT"),
        (107034, "ACL_ERROR_STREAM_TASK_GROUP_INTR"),
        (107041, "ACL_ERROR_RT_CAPTURE_MODE_BLOCK_ASYNC"),
        (107045, "ACL_ERROR_RT_SUB_ACLGRAPH_IS_CAPTURING"),
        (207001, "ACL_ERROR_RT_MEMORY_ALLOCATION"),
        (207018, "ACL_ERROR_RT_DEVICE_OOM"),
        (207021, "ACL_ERROR_RT_LINK_TYPE_NOT_SUPPORTED"),
        (507000, "ACL_ERROR_RT_INTERNAL_ERROR"),
        (507013, "ACL_ERROR_RT_SYS_DMA"),
        (507022, "ACL_ERROR_RT_IPC_ERROR"),
        (507023, "ACL_ERROR_RT_MODEL_ABORT_NORMAL"),
        (507033, "ACL_ERROR_RT_DEV_SETUP_ERROR"),
        (507045, "ACL_ERROR_RT_VECTOR_CORE_TRAP_WRITE_OVERFLOW"),
        (507046, "ACL_ERROR_RT_STREAM_SYNC_TIMEOUT"),
        (507047, "ACL_ERROR_RT_EVENT_SYNC_TIMEOUT"),
        (507057, "ACL_ERROR_RT_SUSPECT_REMOTE_ERROR"),
        (507899, "ACL_ERROR_RT_DRV_INTERNAL_ERROR"),
        (507904, "ACL_ERROR_RT_COMM_OP_RETRY_FAIL"),
        (507905, "ACL_ERROR_SNAPSHOT_LOCK_TIMEOUT"),
        (507910, "ACL_ERROR_HOST_MEMORY_ALREADY_REGISTERED"),
        (507911, "ACL_ERROR_HOST_MEMORY_NOT_REGISTERED"),
        (507914, "ACL_ERROR_RT_L3_PORT_ERROR"),
        (507916, "ACL_ERROR_RT_CCU_EXCEPTION"),
        (145000, "ACL_ERROR_GE_PARAM_INVALID"),
        (145001, "ACL_ERROR_GE_EXEC_NOT_INIT"),
        (145022, "ACL_ERROR_GE_DATATYPE_INVALID"),
        (245002, "ACL_ERROR_GE_DEVICE_MEMORY_ALLOCATION_FAILED"),
        (545000, "ACL_ERROR_GE_INTERNAL_ERROR"),
        (545009, "ACL_ERROR_GE_UNLOAD_MODEL"),
        (545601, "ACL_ERROR_GE_MODEL_EXECUTE_TIMEOUT"),
    ],
)
def test_spot_checks(code: int, name: str) -> None:
    assert CODES[code].name == name
    assert describe(code) is CODES[code]


def test_codes_missing_from_the_reference_are_absent() -> None:
    for code in (145004, 145005, 145010, 100046, 207022, 507058, 507898, 507917, 545010):
        assert code not in CODES


# --------------------------------------------------------------------------- categories


def _expected_class(code: int) -> type[AclError]:
    if code in {200000, 207001, 207018, 245002}:
        return OutOfDeviceMemoryError
    if code == 0:
        return AclError
    if code in {507046, 507047}:  # synchronize with a timeout expired
        return AclTimeoutError
    leading = code // 100000
    if leading == 1:  # 1xxxxx, 107xxx, 145xxx, 148xxx
        return AclParameterError
    if leading in (2, 3):  # 2xxxxx, 207xxx, 245xxx, 3xxxxx
        return AclResourceError
    return AclInternalError  # 5xxxxx, 507xxx, 545xxx


@pytest.mark.parametrize("code", list(CODES))
def test_every_code_maps_to_the_right_class(code: int) -> None:
    expected = _expected_class(code)
    assert error_class_for(code) is expected
    err = make_acl_error(code, "acl.rt.test")
    assert type(err) is expected
    assert isinstance(err, AclError)
    assert isinstance(err, AscendSafeError)
    assert err.code == code
    assert err.name == CODES[code].name
    assert err.meaning == CODES[code].meaning


def test_category_values() -> None:
    assert CODES[0].category is ErrorCategory.SUCCESS
    assert CODES[100000].category is ErrorCategory.PARAMETER
    assert CODES[107002].category is ErrorCategory.PARAMETER
    assert CODES[145000].category is ErrorCategory.PARAMETER
    assert CODES[148053].category is ErrorCategory.PARAMETER
    assert CODES[207001].category is ErrorCategory.RESOURCE
    assert CODES[245001].category is ErrorCategory.RESOURCE
    assert CODES[300000].category is ErrorCategory.BUSINESS
    assert CODES[507046].category is ErrorCategory.INTERNAL
    assert CODES[545601].category is ErrorCategory.INTERNAL


def test_oom_set() -> None:
    assert frozenset({200000, 207001, 207018, 245002}) == OOM_CODES
    for code in OOM_CODES:
        assert issubclass(error_class_for(code), AclResourceError)
    assert issubclass(OutOfDeviceMemoryError, AclResourceError)
    # Other resource codes are not OOM.
    assert error_class_for(207002) is AclResourceError
    assert error_class_for(245000) is AclResourceError


@pytest.mark.parametrize("code", [123456, 999999, -1, 1, 42, 107999, 207999, 399999, 2**31])
def test_unknown_codes(code: int) -> None:
    assert code not in CODES
    info = describe(code)
    assert isinstance(info, ErrorInfo)
    assert info.code == code
    assert info.name == f"UNKNOWN_ERROR_{code}"
    assert not info.known
    err = make_acl_error(code, "acl.rt.malloc", "boom")
    assert isinstance(err, AclError)
    assert err.code == code
    assert err.name == f"UNKNOWN_ERROR_{code}"
    assert str(code) in str(err)


def test_unknown_code_categories_follow_range_rules() -> None:
    assert describe(123456).category is ErrorCategory.PARAMETER
    assert describe(207999).category is ErrorCategory.RESOURCE
    assert describe(399999).category is ErrorCategory.BUSINESS
    assert describe(599999).category is ErrorCategory.INTERNAL
    for code in (999999, -1, 42, 1_000_000, 699999):
        assert describe(code).category is ErrorCategory.INTERNAL
        assert type(make_acl_error(code, "acl.x")) is AclInternalError
    assert type(make_acl_error(123456, "acl.x")) is AclParameterError


# --------------------------------------------------------------------------- message


def test_str_contains_everything() -> None:
    err = make_acl_error(
        207001,
        "acl.rt.malloc",
        recent_message="EE1001: out of memory on device 0",
        resource="DeviceMemory(device=0, size=1024)",
    )
    text = str(err)
    assert text.startswith(
        "acl.rt.malloc failed with 207001 ACL_ERROR_RT_MEMORY_ALLOCATION (device out of memory)"
    )
    assert "[resource: DeviceMemory(device=0, size=1024)]" in text
    assert text.endswith(": EE1001: out of memory on device 0")
    assert "free" in text and "smaller allocation" in text
    assert err.api == "acl.rt.malloc"
    assert err.recent_message == "EE1001: out of memory on device 0"
    assert err.resource == "DeviceMemory(device=0, size=1024)"
    assert err.hint is not None


def test_str_without_optional_parts() -> None:
    err = make_acl_error(500000, "acl.rt.synchronize_device")
    assert str(err) == (
        "acl.rt.synchronize_device failed with 500000 ACL_ERROR_INTERNAL_ERROR "
        "(unknown internal error)"
    )
    assert err.recent_message is None
    assert err.resource is None


def test_blank_recent_message_is_dropped() -> None:
    err = make_acl_error(100000, "acl.rt.free", recent_message="  \n")
    assert err.recent_message is None
    assert not str(err).rstrip().endswith(":")


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        (100001, "acl.init"),
        (107002, "no current context in this thread"),
        (207001, "smaller allocation"),
    ],
)
def test_hints(code: int, fragment: str) -> None:
    assert fragment in str(make_acl_error(code, "acl.rt.x"))


def test_repr_mentions_class_and_code() -> None:
    r = repr(make_acl_error(107002, "acl.rt.create_stream"))
    assert r.startswith("AclParameterError(")
    assert "107002" in r and "acl.rt.create_stream" in r


# --------------------------------------------------------------------------- pickling


@pytest.mark.parametrize("code", [100000, 107002, 207001, 245002, 300000, 507046, 545601, 123456])
@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_acl_error_pickles(code: int, protocol: int) -> None:
    err = make_acl_error(code, "acl.rt.memcpy", "recent text", "Stream(handle=0x1)")
    back = pickle.loads(pickle.dumps(err, protocol=protocol))
    assert type(back) is type(err)
    for attr in ("code", "name", "meaning", "api", "recent_message", "resource", "hint"):
        assert getattr(back, attr) == getattr(err, attr)
    assert str(back) == str(err)


def test_base_acl_error_pickles() -> None:
    err = AclError(207001, "acl.rt.malloc")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is AclError
    assert back.code == 207001


def test_process_limit_error_pickles() -> None:
    err = ProcessLimitError(device=3, limit=64, holders=(101, 202, 303))
    assert err.device == 3 and err.limit == 64 and err.holders == (101, 202, 303)
    assert isinstance(err, RuntimeError) and isinstance(err, AscendSafeError)
    assert "3" in str(err) and "64" in str(err) and "202" in str(err)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ProcessLimitError
    assert (back.device, back.limit, back.holders) == (3, 64, (101, 202, 303))
    assert str(back) == str(err)

    custom = ProcessLimitError(0, 1, [7], message="custom text")  # type: ignore[arg-type]
    assert custom.holders == (7,)
    again = pickle.loads(pickle.dumps(custom))
    assert str(again) == "custom text" and again.holders == (7,)


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (ResourceClosedError, RuntimeError),
        (ForkSafetyError, RuntimeError),
        (AsyncOperationsPendingError, RuntimeError),
        (BackendUnavailableError, ImportError),
    ],
)
def test_library_errors(cls: type[AscendSafeError], builtin: type[Exception]) -> None:
    assert issubclass(cls, AscendSafeError)
    assert issubclass(cls, builtin)
    assert cls.__doc__
    err = cls("some message")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls
    assert str(back) == "some message"


def test_error_info_pickles() -> None:
    info = CODES[507046]
    assert pickle.loads(pickle.dumps(info)) == info
    unknown = describe(999999)
    assert pickle.loads(pickle.dumps(unknown)) == unknown


# --------------------------------------------------------------------------- public API


def test_all_is_complete() -> None:
    for name in errors.__all__:
        assert hasattr(errors, name), name
    for name in (
        "AscendSafeError",
        "AclError",
        "AclParameterError",
        "AclResourceError",
        "AclInternalError",
        "OutOfDeviceMemoryError",
        "ResourceClosedError",
        "ForkSafetyError",
        "AsyncOperationsPendingError",
        "ProcessLimitError",
        "BackendUnavailableError",
        "CODES",
        "ErrorInfo",
        "describe",
        "error_class_for",
        "make_acl_error",
    ):
        assert name in errors.__all__

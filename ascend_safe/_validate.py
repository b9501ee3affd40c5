"""Argument checks shared by the public API: they run before any pyacl call and say what is
wrong with which argument.

pyacl parses sizes, offsets, counts and handles with ``PyArg_ParseTuple``'s ``k`` format
(C ``unsigned long``, 64 bits on the Linux targets CANN supports), which converts *without*
overflow checking: 2**64 + 64 silently becomes 64. Small enumerations and timeouts in
milliseconds use ``i`` (C ``int``), which raises a bare ``TypeError``. Every number bound for one
of them is therefore range-checked here first, against the C type it will be parsed into.

User buffers are checked to hold plain data: writing device bytes over the ``PyObject*``
pointers of an object array (format ``O``) would crash the interpreter.
"""

from __future__ import annotations

import enum
import math
import numbers
import operator
import re
from typing import Any, Protocol

__all__ = [
    "INT_MAX",
    "MAX_TIMEOUT",
    "ULONG_MAX",
    "flags",
    "index",
    "member",
    "plain_buffer",
    "plain_dtype",
    "same_device",
    "size",
    "timeout",
    "timeout_ms",
]

#: Largest value of pyacl's ``k`` format (C ``unsigned long`` on LP64 Linux).
ULONG_MAX = (1 << 64) - 1
#: Largest value of pyacl's ``i`` format (C ``int``).
INT_MAX = (1 << 31) - 1
#: Longest finite timeout, in seconds, that fits pyacl's ``int`` milliseconds (about 24.8 days).
MAX_TIMEOUT = INT_MAX / 1000


def index(
    value: object, name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """*value* as an ``int`` (bools refused), within *minimum*..*maximum* if given."""
    if type(value) is int:
        number: int = value
    else:
        if isinstance(value, bool):
            raise TypeError(f"{name} must be an int, not bool")
        try:
            number = operator.index(value)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(f"{name} must be an int, not {type(value).__name__}") from None
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        if maximum is None:
            raise ValueError(f"{name} must be >= {minimum}, got {number}")
        low = "" if minimum is None else f"{minimum}.."
        raise ValueError(f"{name} must be {low}{maximum}, got {number}")
    return number


def size(value: object, name: str, *, minimum: int = 0) -> int:
    """A byte size, offset or count pyacl parses as ``unsigned long`` (``minimum``..2**64-1)."""
    if type(value) is int and minimum <= value <= ULONG_MAX:  # the common case, cheaply
        return value
    number = index(value, name)
    if number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {number}")
    if number > ULONG_MAX:
        raise ValueError(
            f"{name} must be at most 2**64-1 ({ULONG_MAX}), the largest size pyacl can pass on "
            f"without wrapping; got {number}"
        )
    return number


def timeout(
    value: object,
    name: str,
    *,
    maximum: float | None = MAX_TIMEOUT,
    positive: bool = False,
) -> float | None:
    """A timeout in seconds; ``None`` or ``math.inf`` mean "wait forever" and return ``None``.

    A finite timeout must be >= 0 (> 0 if *positive*) and at most *maximum* (by default what
    pyacl's ``int`` milliseconds can hold). NaN, strings and bools are refused.
    """
    if value is None:
        return None
    if type(value) is not float and type(value) is not int and (
        isinstance(value, bool) or not isinstance(value, numbers.Real)
    ):
        raise TypeError(
            f"{name} must be a number of seconds, or None or math.inf to wait forever; "
            f"not {type(value).__name__}"
        )
    seconds = float(value)
    if seconds == math.inf:
        return None
    ok = seconds > 0.0 if positive else seconds >= 0.0  # NaN fails both
    if ok and (maximum is None or seconds <= maximum):
        return seconds
    above = "> 0" if positive else ">= 0"
    bound = "" if maximum is None else f" and at most {maximum}"
    raise ValueError(
        f"{name} must be {above}{bound} seconds, or None or math.inf to wait forever; "
        f"got {value!r}"
    )


def timeout_ms(seconds: float | None) -> int | None:
    """A checked timeout in whole milliseconds for pyacl's ``int`` (rounded up, since 0 only
    polls); None (forever) stays None and a value past the C range waits forever too."""
    if seconds is None or seconds == math.inf:
        return None
    ms = math.ceil(seconds * 1000) if seconds > 0 else 0
    return ms if ms <= INT_MAX else None


# Struct-module field names sit between colons (``T{<i:a:<O:b:}``); only codes outside them
# matter. Formats numpy and the standard library export for plain data are the usual ones.
_FIELD_NAMES = re.compile(r":[^:]*:")
_PLAIN_FORMATS = frozenset(
    a + c for a in ("", "<", ">", "=", "@", "!") for c in "bBhHiIlLqQnNefdgc?xs"
)


def plain_buffer(fmt: str, role: str) -> None:
    """Refuse a buffer format that holds Python object pointers (``O``), alone or in a struct."""
    if fmt in _PLAIN_FORMATS or "O" not in fmt:
        return
    if "O" in _FIELD_NAMES.sub("::", fmt):
        raise TypeError(
            f"copy {role} holds Python objects (buffer format {fmt!r}); only plain data can be "
            "copied to or from a device: use a numeric, bytes or record dtype without object "
            "fields"
        )


def plain_dtype(dtype: Any, name: str) -> None:
    """Refuse a numpy dtype that has object fields anywhere in it."""
    if getattr(dtype, "hasobject", False):
        raise TypeError(
            f"{name} {dtype!r} holds Python objects; device bytes can only fill plain data "
            "(numeric, bytes or record dtypes without object fields)"
        )


_KNOWN_FLAGS: dict[type[enum.IntFlag], tuple[int, str]] = {}


def _known(kind: type[enum.IntFlag]) -> tuple[int, str]:
    entry = _KNOWN_FLAGS.get(kind)
    if entry is None:
        known = 0
        for flag in kind:
            known |= int(flag)
        names = ", ".join(f"{f.name}=0x{int(f):x}" for f in kind)
        entry = _KNOWN_FLAGS[kind] = (known, names)
    return entry


def flags(value: object, kind: type[enum.IntFlag], name: str) -> int:
    """A bitmask made only of *kind*'s flags."""
    mask = index(value, name, minimum=0)
    known, names = _known(kind)
    if mask & ~known:
        raise ValueError(f"{name} 0x{mask:x} has unknown bits; known flags: {names}")
    return mask


class _OnDevice(Protocol):
    @property
    def device(self) -> Any: ...


def same_device(first: _OnDevice, second: _OnDevice, action: str) -> None:
    """Refuse to *action* across two devices (say which resources and which devices)."""
    a, b = first.device.id, second.device.id
    if a != b:
        raise ValueError(
            f"cannot {action} across devices: {first!r} is on device {a}, {second!r} on "
            f"device {b}; use resources of one device"
        )


_MEMBERS: dict[type[enum.IntEnum], frozenset[int]] = {}


def member(value: object, kind: type[enum.IntEnum], name: str) -> int:
    """One of *kind*'s values."""
    number = index(value, name)
    values = _MEMBERS.get(kind)
    if values is None:
        values = _MEMBERS[kind] = frozenset(int(m) for m in kind)
    if number in values:
        return number
    names = ", ".join(f"{m.name}={int(m)}" for m in kind)
    raise ValueError(f"{name} {number} is not one of {names}")

"""Argument checks shared by the public API: they run before any pyacl call and say what is
wrong with which argument."""

from __future__ import annotations

import enum
import operator
from typing import Any, Protocol

__all__ = ["flags", "index", "member", "same_device"]


def index(value: object, name: str, *, minimum: int | None = None) -> int:
    """*value* as an ``int`` (bools refused), at least *minimum* if given."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not bool")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}") from None
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {number}")
    return number


def flags(value: object, kind: type[enum.IntFlag], name: str) -> int:
    """A bitmask made only of *kind*'s flags."""
    mask = index(value, name, minimum=0)
    known = 0
    for flag in kind:
        known |= int(flag)
    if mask & ~known:
        names = ", ".join(f"{f.name}=0x{int(f):x}" for f in kind)
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


def member(value: object, kind: type[enum.IntEnum], name: str) -> int:
    """One of *kind*'s values."""
    number = index(value, name)
    try:
        return int(kind(number))
    except ValueError:
        names = ", ".join(f"{m.name}={int(m)}" for m in kind)
        raise ValueError(f"{name} {number} is not one of {names}") from None

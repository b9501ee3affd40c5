"""The streams with async work in flight, process-wide.

A stream lists itself here when its first submission that must be tracked is queued, and leaves
once all of them are known complete. The fork guard, a closing context and the exit teardown
consult it; they sit below or beside the streams, so the registry lives under all of them and
holds the streams weakly (a stream the program drops is released like any other dropped
object).
"""

from __future__ import annotations

import weakref
from typing import Any, Protocol

__all__ = ["InFlight", "busy", "busy_streams"]


class InFlight(Protocol):
    """What the registry's users need of a stream."""

    @property
    def owner(self) -> Any: ...

    @property
    def closed(self) -> bool: ...

    def synchronize(self, timeout: float | None = None) -> None: ...

    def _drain_if_busy(self) -> None: ...


#: serial -> weak reference, for every stream with submissions not yet known complete. Its
#: truthiness is the fork guard's whole fast path.
busy: dict[int, weakref.ref[Any]] = {}


def busy_streams() -> list[InFlight]:
    """Streams with async work in flight (in this process)."""
    return [s for s in (ref() for ref in list(busy.values())) if s is not None]

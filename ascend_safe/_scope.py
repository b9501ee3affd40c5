"""The device sessions whose ``with`` blocks (or worker calls) are open in each thread.

``with Device(0) as dev:`` makes *dev* the thread's current session until the block ends, which
is what :func:`ascend_safe.current_device` returns; blocks nest, the innermost wins. A stack per
thread, so threads never see each other's sessions.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["enter", "exit", "innermost"]

_local = threading.local()  # .stack: sessions entered in this thread, innermost last


def enter(session: Any) -> None:
    """*session*'s block begins in this thread."""
    stack: list[Any] | None = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    stack.append(session)


def exit(session: Any) -> None:
    """*session*'s block ends in this thread (its innermost entry is removed)."""
    stack: list[Any] = getattr(_local, "stack", [])
    for i in range(len(stack) - 1, -1, -1):
        if stack[i] is session:
            del stack[i]
            return


def innermost() -> Any:
    """The innermost entered session of this thread that is still open, or None."""
    stack: list[Any] = getattr(_local, "stack", [])
    for session in reversed(stack):
        if not session.closed:
            return session
    return None

"""Test-only: an ``acl`` module that forwards to another, except for one changed behaviour.

The kit must report ``differ`` for exactly the case that observes the change. The ``wrap_*``
functions are the ``--wrap module:function`` hooks for kit children.
"""

from __future__ import annotations

import os
import signal
import time
import types
from typing import Any, Callable

Change = Callable[[Callable[..., Any]], Callable[..., Any]]


class AclProxy:
    """Forwards attribute access down an ``acl`` module tree; *changes* maps a dotted name
    (``"rt.malloc"``) to a function that receives the original and returns its replacement."""

    def __init__(self, target: Any, changes: dict[str, Change], prefix: str = "") -> None:
        self._target = target
        self._changes = changes
        self._prefix = prefix

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        full = self._prefix + name
        change = self._changes.get(full)
        if change is not None:
            return change(value)
        if isinstance(value, types.ModuleType):
            return AclProxy(value, self._changes, full + ".")
        return value


def wrap_forked_child_sees_five_devices(acl: Any) -> AclProxy:
    """In a process forked from this one, get_device_count succeeds with 5 devices."""
    parent = os.getpid()

    def change(original: Callable[..., Any]) -> Callable[..., Any]:
        return lambda: original() if os.getpid() == parent else (5, 0)

    return AclProxy(acl, {"rt.get_device_count": change})


def wrap_free_host_kills_process(acl: Any) -> AclProxy:
    """free_host kills the calling process (a crash inside pyacl)."""

    def change(original: Callable[..., Any]) -> Callable[..., Any]:
        def crash(*args: Any) -> Any:
            os.kill(os.getpid(), signal.SIGKILL)
            return original(*args)

        return crash

    return AclProxy(acl, {"rt.free_host": change})


def wrap_destroy_stream_hangs(acl: Any) -> AclProxy:
    """destroy_stream never returns (a hang inside pyacl)."""

    def change(original: Callable[..., Any]) -> Callable[..., Any]:
        def hang(*args: Any) -> Any:
            time.sleep(3600)
            return original(*args)

        return hang

    return AclProxy(acl, {"rt.destroy_stream": change})

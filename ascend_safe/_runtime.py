"""Process-wide pyacl state: ``acl.init`` on first need, and the exit teardown.

``acl.finalize`` is called at exit only if ascend_safe itself called ``acl.init``; code that
initialised pyacl on its own keeps working (a repeated init, code 100002, is tolerated).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from . import _backend, _lifetime
from .errors import AclError

__all__ = ["ensure_initialized", "exit_teardown"]

_REPEAT_INITIALIZE = 100002
_SYNC_TIMEOUT_MS = 10_000

_log = logging.getLogger("ascend_safe")
_lock = threading.Lock()


class _InitState:
    initialized = False
    owned = False  # ascend_safe's own acl.init succeeded, so it finalizes at exit
    hooked = False


_init = _InitState()


def ensure_initialized() -> None:
    """Call ``acl.init`` once per process (tolerating an init done by the caller)."""
    if _init.initialized:
        return
    with _lock:
        if _init.initialized:
            return
        if not _init.hooked:
            _backend.exit_hooks.append(exit_teardown)
            _init.hooked = True
        try:
            _backend.call("init")
            _init.owned = True
        except AclError as exc:
            if exc.code != _REPEAT_INITIALIZE:
                raise
        _init.initialized = True


def forget_initialization() -> None:
    """Forget that pyacl was initialised (after the backend itself was reset, e.g. in tests)."""
    with _lock:
        _init.initialized = False
        _init.owned = False


def exit_teardown() -> None:
    """Synchronize, destroy everything in dependency order, reset devices, finalize if owned."""
    from .stream import busy_streams

    if _lifetime.flags.disarmed:
        return
    try:
        _lifetime.drain_deferred()
        left = _lifetime.live_resources()
        if left:
            _log.warning(
                "ascend_safe: releasing at exit what was left open: %s",
                _lifetime.leak_report(left),
            )
        for stream in busy_streams():  # default streams included
            _quietly(stream.synchronize, _SYNC_TIMEOUT_MS / 1000)
        for root in _lifetime.roots():
            _quietly(root.close)
        if _init.owned and _init.initialized:
            _quietly(_backend.call, "finalize")
        _init.initialized = False
    finally:
        _lifetime.flags.disarmed = True


def _quietly(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Exception as exc:
        _log.warning("ascend_safe exit teardown: %s", exc)

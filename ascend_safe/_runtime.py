"""Process-wide pyacl state: ``acl.init`` on first need, and the exit teardown.

``acl.finalize`` is called at exit only if ascend_safe itself called ``acl.init``; code that
initialised pyacl on its own keeps working (a repeated init, code 100002, is tolerated).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from . import _backend, _inflight, _lifetime, _process
from .errors import AclError

__all__ = ["ensure_initialized", "exit_teardown", "release_everything"]

_REPEAT_INITIALIZE = 100002
_REPEAT_FINALIZE = 100037  # ACL_ERROR_REPEAT_FINALIZE
ENV_EXIT_TIMEOUT = _process.variable(
    "ASCEND_SAFE_EXIT_TIMEOUT", "seconds the exit teardown waits for streams"
)

_log = logging.getLogger("ascend_safe")
_lock = threading.Lock()


class _InitState:
    initialized = False
    owned = False  # ascend_safe's own acl.init succeeded, so it finalizes at exit
    pid = 0  # the process that initialised
    hooked = False


_init = _InitState()


def ensure_initialized(*, check_environment: bool = True) -> None:
    """Call ``acl.init`` once per process (tolerating an init done by the caller). Before it,
    raise ``ValueError`` for bad ``ASCEND_SAFE_*`` values met at import (unless
    *check_environment* is false: the doctor reports them itself)."""
    if _init.initialized:
        return
    with _lock:
        if _init.initialized:
            return
        if check_environment:
            _process.raise_config_errors()
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
        _init.pid = _process.state.pid


def forget_initialization() -> None:
    """Forget that pyacl was initialised (after the backend itself was reset, e.g. in tests)."""
    with _lock:
        _init.initialized = False
        _init.owned = False


def _exit_timeout() -> float:
    raw = os.environ.get(ENV_EXIT_TIMEOUT, "10")
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        _log.warning("ASCEND_SAFE_EXIT_TIMEOUT=%r is not a positive number: using 10", raw)
        seconds = 10.0
    return seconds


def exit_teardown() -> None:
    """Synchronize, destroy everything in dependency order, reset devices, finalize if owned."""
    if _lifetime.flags.disarmed:
        return
    if _process.state.forked_after_use or (_init.pid and _process.state.is_foreign(_init.pid)):
        _lifetime.flags.disarmed = True  # a forked child: everything here is the parent's
        return
    _lifetime.flags.close_timeout = _exit_timeout()
    try:
        release_everything("at exit")
    finally:
        _lifetime.flags.disarmed = True


def release_everything(when: str, *, finalize: bool = True) -> list[_lifetime.Resource]:
    """Synchronize busy streams, close every device session (and so everything created on it,
    in dependency order), then ``acl.finalize`` if ascend_safe initialised pyacl.

    Shared by the exit teardown and the suspend coordinator; waits are bounded by
    ``_lifetime.flags.close_timeout``. Returns what could not be released (then finalize is
    skipped); afterwards the next device session initialises pyacl again.
    """
    _lifetime.drain_deferred()
    left = _lifetime.live_resources()
    if left and when == "at exit":
        _log.warning(
            "ascend_safe: releasing at exit what was left open: %s", _lifetime.leak_report(left)
        )
    for stream in _inflight.busy_streams():  # default streams included
        if not _quietly(stream.synchronize, _lifetime.flags.close_timeout):
            _lifetime.flags.close_timeout = 0.0  # stuck: from now on close paths only poll
    for root in _lifetime.roots():
        _quietly(root.close)
    stuck = _lifetime.roots()
    if stuck:  # finalize would wait for the stuck work too; process exit frees the device
        _log.warning(
            "ascend_safe: %s could not be released %s; acl.finalize skipped",
            ", ".join(repr(r) for r in stuck),
            when,
        )
        if when == "at exit":
            _init.initialized = False
        return stuck
    with _lock:
        if finalize and _init.owned and _init.initialized:
            _quietly(_finalize)
            _init.initialized = False
            _init.owned = False
        elif when == "at exit":
            _init.initialized = False
    return stuck


def _finalize() -> None:
    """``acl.finalize``; 100037 means pyacl was finalized already (by the program's own raw
    call): nothing is left to do, so it is not reported."""
    try:
        _backend.call("finalize")
    except AclError as exc:
        if exc.code != _REPEAT_FINALIZE:
            raise


def _quietly(fn: Any, *args: Any) -> bool:
    try:
        fn(*args)
    except Exception as exc:
        _log.warning("ascend_safe exit teardown: %s", exc)
        return False
    return True

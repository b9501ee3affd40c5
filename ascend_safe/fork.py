"""Process creation while async memory work is in flight, and forks after pyacl use.

CANN forbids creating processes (``fork``, ``system``, ``posix_spawn`` and what wraps them)
while ``memcpy_async``/``memset_async`` work is in flight. An audit hook sees ``os.fork``,
``os.forkpty``, ``os.system``, ``os.posix_spawn(p)``, ``os.spawn*`` and ``subprocess.Popen``
(which ``os.popen`` uses), including calls through names imported before the guard existed,
and can veto them by raising. multiprocessing's ``spawn`` and ``forkserver`` launchers go through
``multiprocessing.util.spawnv_passfds``, which raises no audit event: that one is wrapped.

Policies (``set_fork_policy`` or ``ASCEND_SAFE_FORK_POLICY``): ``sync`` (default) synchronizes
the busy streams first, bounded by a timeout; ``raise`` refuses with
:class:`AsyncOperationsPendingError` and creates no process; ``warn`` warns; ``off`` does nothing.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import threading
import time
import warnings
from typing import Any

from . import _inflight, _process, _validate
from .errors import AsyncOperationsPendingError

__all__ = [
    "FORK_POLICIES",
    "get_fork_policy",
    "guard_process_creation",
    "set_fork_policy",
]

FORK_POLICIES = ("sync", "raise", "warn", "off")
ENV_POLICY = _process.variable("ASCEND_SAFE_FORK_POLICY", "the fork policy: sync, raise, warn, off")
#: Audit events that create a process.
_PROCESS_EVENTS = frozenset(
    {"os.fork", "os.forkpty", "os.system", "os.posix_spawn", "os.spawn", "subprocess.Popen"}
)
_DEFAULT_SYNC_TIMEOUT = 30.0


class _Settings:
    policy = "sync"
    sync_timeout = _DEFAULT_SYNC_TIMEOUT
    installed = False


_settings = _Settings()
_busy = _inflight.busy  # the live dict: truthiness is the whole fast path
_local = threading.local()


def set_fork_policy(policy: str, *, sync_timeout: float | None = None) -> None:
    """Choose what happens when a process is created with async work in flight.

    *sync_timeout* bounds the ``sync`` policy's wait (seconds, > 0 and at most about 24.8 days;
    ``math.inf`` waits as long as it takes); past it the creation is refused.
    """
    if policy not in FORK_POLICIES:
        raise ValueError(f"fork policy must be one of {', '.join(FORK_POLICIES)}, not {policy!r}")
    if sync_timeout is not None:
        seconds = _validate.timeout(sync_timeout, "sync_timeout", positive=True)
        _settings.sync_timeout = math.inf if seconds is None else seconds
    _settings.policy = policy


def get_fork_policy() -> str:
    """The policy in force: ``"sync"``, ``"raise"``, ``"warn"`` or ``"off"``."""
    return _settings.policy


def _apply_policy(what: str) -> None:
    """Called just before a process is created."""
    if not _busy or getattr(_local, "active", False):
        return
    policy = _settings.policy
    if policy == "off":
        return
    streams = _inflight.busy_streams()
    if not streams:
        return
    names = ", ".join(repr(s) for s in streams[:4]) + (" ..." if len(streams) > 4 else "")
    if policy == "raise":
        raise AsyncOperationsPendingError(
            f"{what} refused: async memory work is in flight on {names}. CANN forbids creating "
            "processes meanwhile; synchronize those streams first, or "
            "set_fork_policy('sync') to have it done for you"
        )
    if policy == "warn":
        warnings.warn(
            f"{what} while async memory work is in flight on {names}: CANN documents errors or "
            "hangs for this; synchronize first",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    _local.active = True
    try:
        deadline = time.monotonic() + _settings.sync_timeout
        for s in streams:
            left = deadline - time.monotonic()
            try:
                s.synchronize(timeout=max(left, 0.001))
            except Exception as exc:
                if s.closed:
                    continue
                raise AsyncOperationsPendingError(
                    f"{what} refused: could not drain {s!r} within "
                    f"{_settings.sync_timeout:g} s ({exc})"
                ) from exc
    finally:
        _local.active = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _busy and event in _PROCESS_EVENTS:
        _apply_policy(event)


def _before_fork() -> None:
    # A before-fork hook cannot veto (exceptions are swallowed); the audit hook already applied
    # the policy for os.fork, this covers forks made from C through PyOS_BeforeFork.
    if _busy and _settings.policy == "sync":
        try:
            _apply_policy("fork")
        except Exception:
            pass


def _wrap_spawnv_passfds() -> None:
    import multiprocessing.util as mp_util

    original = mp_util.spawnv_passfds
    if getattr(original, "__ascend_safe_guard__", False):
        return

    @functools.wraps(original)
    def spawnv_passfds(path: Any, args: Any, passfds: Any) -> Any:
        if _busy:
            _apply_policy("multiprocessing process start")
        return original(path, args, passfds)

    spawnv_passfds.__ascend_safe_guard__ = True  # type: ignore[attr-defined]
    mp_util.spawnv_passfds = spawnv_passfds


def guard_process_creation() -> None:
    """Install the guard (idempotent); done when ascend_safe is imported."""
    if _settings.installed:
        return
    _settings.installed = True
    env = os.environ.get(ENV_POLICY, "").strip().lower()
    if env in FORK_POLICIES:
        set_fork_policy(env)
    elif env:  # not raised here: the import must work for 'python -m ascend_safe doctor'
        _process.config_error(
            f"ASCEND_SAFE_FORK_POLICY={env!r} is not valid: use one of "
            f"{', '.join(FORK_POLICIES)}"
        )
    sys.addaudithook(_audit)
    os.register_at_fork(before=_before_fork)
    _wrap_spawnv_passfds()

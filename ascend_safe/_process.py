"""Which process we are in, kept cheap for hot paths.

``os.getpid()`` is a system call, so hot paths compare a resource's PID stamp with
:data:`state.pid`, which the at-fork child hook refreshes. Cleanup paths also check the live
``os.getpid()`` (a child made by ``clone`` runs no hook).
"""

from __future__ import annotations

import os
from typing import Callable

__all__ = [
    "FORK_ADVICE",
    "VARIABLES",
    "ProcessState",
    "config_error",
    "on_fork_child",
    "raise_config_errors",
    "state",
    "variable",
]

#: What to do instead, said by every error about pyacl use across a fork.
FORK_ADVICE = (
    "pyacl cannot be used in a process forked from one that already used it (CANN forbids it: "
    "calls fail or hang). Start workers with the 'spawn' start method "
    "(multiprocessing.get_context('spawn')) or decorate the worker function with "
    "@ascend_safe.worker(device=...)."
)


class ProcessState:
    """Per-process facts the library consults on every call."""

    __slots__ = ("acl_used", "forked_after_use", "pid")

    def __init__(self) -> None:
        self.pid = os.getpid()
        #: This process has called pyacl through the library.
        self.acl_used = False
        #: This process is a forked child of a process that had used pyacl.
        self.forked_after_use = False

    def is_foreign(self, owner_pid: int) -> bool:
        """True when an object stamped with *owner_pid* belongs to another process (live check)."""
        if owner_pid != self.pid:
            return True
        live = os.getpid()
        if live != self.pid:  # a clone()-made child, where no at-fork hook ran
            self._became_child(live)
            return True
        return False

    def _became_child(self, pid: int) -> None:
        self.pid = pid
        if self.acl_used:
            self.forked_after_use = True
            self.acl_used = False


state = ProcessState()
_child_hooks: list[Callable[[], None]] = []


def on_fork_child(hook: Callable[[], None]) -> None:
    """Run *hook* in every forked child, after the library's own state is flipped."""
    _child_hooks.append(hook)


def _after_fork_in_child() -> None:
    # Only flips flags and runs the registered hooks; never calls pyacl.
    state._became_child(os.getpid())
    for hook in _child_hooks:
        try:
            hook()
        except Exception:  # a hook must not break the child
            pass


os.register_at_fork(after_in_child=_after_fork_in_child)


#: Every ``ASCEND_SAFE_*`` variable the library reads (name -> what it sets), registered by the
#: module that reads it (:func:`variable`); the doctor's list of known names comes from here.
VARIABLES: dict[str, str] = {}


def variable(name: str, what: str) -> str:
    """Register the environment variable *name* (what it sets: *what*); returns *name*."""
    VARIABLES[name] = what
    return name


#: Bad ``ASCEND_SAFE_*`` values met while importing the library: the import goes on (so
#: ``python -m ascend_safe doctor`` can report them), and the first use raises.
_config_errors: list[str] = []


def config_error(message: str) -> None:
    """Record a bad environment setting found at import, raised at the first use."""
    if message not in _config_errors:
        _config_errors.append(message)


def raise_config_errors() -> None:
    """Raise ``ValueError`` naming every bad setting recorded at import, if any."""
    if _config_errors:
        raise ValueError(
            "ascend_safe cannot be used with this environment: "
            + "; ".join(_config_errors)
            + ". Correct or unset the variable ('python -m ascend_safe doctor' checks them all)."
        )

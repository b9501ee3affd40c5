"""Python signal handlers deferred while the main thread is inside a simulated pyacl call.

Real pyacl is C: a signal arriving during ``acl.rt.memcpy`` only sets a flag, and its Python
handler (``KeyboardInterrupt`` for SIGINT) runs once the call has returned. The simulator is
Python, so without help a handler would raise in the middle of its bookkeeping (a stream lock
held, an allocation half recorded). Every Python-level handler is therefore wrapped by a shim:
while the main thread is inside a simulated call (``depth > 0``), the shim records the signal
and returns; the outermost call runs the recorded handlers just before it returns to the user.

Handlers already installed when the simulator is first used are wrapped then; handlers
installed later are wrapped by a replacement of ``signal.signal``. ``signal.getsignal`` keeps
returning the handler the user installed. Signals only run in the main thread, so only the main
thread's depth matters; other threads count nothing.
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any, Callable, Optional, cast

__all__ = ["DEFERRAL", "Deferral"]

_Handler = Callable[[int, Optional[FrameType]], Any]


class _Shim:
    """Callable installed in place of a user's handler; defers it inside simulated calls."""

    __slots__ = ("deferral", "handler")

    def __init__(self, deferral: Deferral, handler: _Handler) -> None:
        self.deferral = deferral
        self.handler = handler

    def __call__(self, signum: int, frame: Optional[FrameType]) -> Any:
        deferral = self.deferral
        if deferral.depth > 0:
            # Like CPython's per-signal "tripped" flag: several arrivals run the handler once.
            deferral.pending.setdefault(signum, frame)
            return None
        return self.handler(signum, frame)


class Deferral:
    """Main-thread call depth, the signals that arrived inside calls, and the handler shims."""

    def __init__(self) -> None:
        self.main_ident = threading.main_thread().ident
        self.depth = 0
        self.pending: dict[int, Optional[FrameType]] = {}
        self.installed = False
        self._original_signal: Optional[Callable[..., Any]] = None
        self._original_getsignal: Optional[Callable[..., Any]] = None

    # ----------------------------------------------------------------- call depth

    def enter(self) -> bool:
        """Count a simulated call on the main thread; True if it was counted (call ``leave``)."""
        if threading.get_ident() != self.main_ident:
            return False
        self.depth += 1
        return True

    def leave(self) -> None:
        """End a counted call; at the outermost one, run the handlers of deferred signals."""
        self.depth -= 1
        if self.depth == 0 and self.pending:
            pending = sorted(self.pending.items())
            self.pending = {}
            for index, (signum, frame) in enumerate(pending):
                handler = self._current_handler(signum)
                if handler is None:
                    continue
                try:
                    handler(signum, frame)
                except BaseException:
                    # Like CPython, the first exception wins; the other signals are tripped
                    # again and run at the interpreter's next check, not at some later call.
                    for later, _ in pending[index + 1 :]:
                        _retrip(later)
                    raise

    def _current_handler(self, signum: int) -> Optional[_Handler]:
        """The Python handler installed for *signum* now (None: default or ignored)."""
        getsignal = self._original_getsignal or signal.getsignal
        current = getsignal(signum)
        if isinstance(current, _Shim):
            return current.handler
        if _python_handler(current):
            return cast(_Handler, current)
        return None

    # ----------------------------------------------------------------- handler wrapping

    def install(self) -> None:
        """Wrap the current Python handlers and patch ``signal.signal``/``getsignal`` (idempotent).

        Only possible from the main thread (``signal.signal`` refuses other threads); from
        another thread this does nothing and a later call from the main thread does the work.
        """
        if self.installed or threading.get_ident() != self.main_ident:
            return
        self.installed = True
        original_signal = signal.signal
        original_getsignal = signal.getsignal
        self._original_signal = original_signal
        self._original_getsignal = original_getsignal
        deferral = self

        def patched_signal(signalnum: Any, handler: Any) -> Any:
            wrapped = _Shim(deferral, handler) if _python_handler(handler) else handler
            previous = original_signal(signalnum, wrapped)
            return previous.handler if isinstance(previous, _Shim) else previous

        def patched_getsignal(signalnum: Any) -> Any:
            current = original_getsignal(signalnum)
            return current.handler if isinstance(current, _Shim) else current

        patched_signal.__doc__ = original_signal.__doc__
        patched_getsignal.__doc__ = original_getsignal.__doc__
        for signum in signal.valid_signals():
            try:
                current = original_getsignal(signum)
            except (OSError, ValueError):
                continue
            if callable(current) and _python_handler(current):
                try:
                    original_signal(signum, _Shim(self, current))
                except (OSError, ValueError, RuntimeError):
                    continue
        signal.signal = patched_signal
        signal.getsignal = patched_getsignal


def _retrip(signum: int) -> None:
    """Mark *signum* as arrived again, so Python runs its handler at its next check."""
    interrupt_main: Optional[Callable[..., None]] = getattr(_thread, "interrupt_main", None)
    if interrupt_main is not None and sys.version_info >= (3, 10):
        interrupt_main(signum)
    else:  # Python 3.9 can only simulate SIGINT; send the real signal to this process
        os.kill(os.getpid(), signum)


def _python_handler(handler: Any) -> bool:
    """A handler Python runs (a callable, not SIG_DFL/SIG_IGN/None) and not already a shim."""
    if handler is None or handler in (signal.SIG_DFL, signal.SIG_IGN):
        return False
    return callable(handler) and not isinstance(handler, _Shim)


#: The process-wide deferral (signal handlers are process-wide too).
DEFERRAL = Deferral()

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

import signal
import threading
from types import FrameType
from typing import Any, Callable, Optional

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
            deferral.pending.append((self.handler, signum, frame))
            return None
        return self.handler(signum, frame)


class Deferral:
    """Main-thread call depth, the signals that arrived inside calls, and the handler shims."""

    def __init__(self) -> None:
        self.main_ident = threading.main_thread().ident
        self.depth = 0
        self.pending: list[tuple[_Handler, int, Optional[FrameType]]] = []
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
            pending = self.pending
            self.pending = []
            for index, (handler, signum, frame) in enumerate(pending):
                try:
                    handler(signum, frame)
                except BaseException:
                    # Like CPython, the first exception wins; later signals stay pending.
                    self.pending = pending[index + 1 :] + self.pending
                    raise

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


def _python_handler(handler: Any) -> bool:
    """A handler Python runs (a callable, not SIG_DFL/SIG_IGN/None) and not already a shim."""
    if handler is None or handler in (signal.SIG_DFL, signal.SIG_IGN):
        return False
    return callable(handler) and not isinstance(handler, _Shim)


#: The process-wide deferral (signal handlers are process-wide too).
DEFERRAL = Deferral()

"""Critical sections that an asynchronous exception (Ctrl-C, any Python signal handler that
raises) cannot split.

A pyacl call is C code: a signal that arrives meanwhile is handled only after it returns. The
library's own bookkeeping around those calls (a handle just returned, a counter just raised) is
Python code, and a ``KeyboardInterrupt`` landing in the middle of it would leave a handle
nobody owns or a counter nobody lowers. Inside :data:`critical`, Python-level signal handlers
are deferred: the signal is recorded and its handler runs when the outermost section ends, so
the exception lands right after the bookkeeping, never inside it.

Python runs signal handlers only in the main thread, so only the main thread counts its depth;
elsewhere a section costs a thread-id comparison. The mechanism wraps every Python-level
handler (those installed before this module loaded and, through :func:`signal.signal`, those
installed later); :func:`signal.getsignal` still returns the handler the program installed.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
from collections.abc import Iterable, Iterator
from types import FrameType
from typing import Any, Callable, Optional

__all__ = ["POLL", "critical", "depth", "interruption_point", "run_all"]

_Handler = Callable[[int, Optional[FrameType]], Any]
_get_ident = threading.get_ident


class _State:
    main = threading.main_thread().ident or 0
    depth = 0
    installed = False
    #: Signals that arrived inside a section: (handler, signal number, frame), oldest first.
    pending: list[tuple[_Handler, int, Optional[FrameType]]] = []


_state = _State()
_install_lock = threading.Lock()


class _Deferring:
    """Stands in for a program's signal handler: runs it now, or after the current section."""

    __slots__ = ("handler",)

    def __init__(self, handler: _Handler) -> None:
        self.handler = handler

    def __call__(self, signum: int, frame: Optional[FrameType]) -> Any:
        if _state.depth and _get_ident() == _state.main:
            _state.pending.append((self.handler, signum, frame))
            return None
        return self.handler(signum, frame)

    def __repr__(self) -> str:
        return f"<deferring {self.handler!r}>"


def _wrap(handler: Any) -> Any:
    if callable(handler) and not isinstance(handler, _Deferring):
        return _Deferring(handler)
    return handler


def _unwrap(handler: Any) -> Any:
    return handler.handler if isinstance(handler, _Deferring) else handler


_os_signal = signal.signal
_os_getsignal = signal.getsignal


def _signal(signalnum: Any, handler: Any) -> Any:
    return _unwrap(_os_signal(signalnum, _wrap(handler)))


def _getsignal(signalnum: Any) -> Any:
    return _unwrap(_os_getsignal(signalnum))


_signal.__doc__ = _os_signal.__doc__
_getsignal.__doc__ = _os_getsignal.__doc__


def _install() -> None:
    """Wrap the Python-level handlers installed so far (main thread only, once)."""
    with _install_lock:
        if _state.installed:
            return
        signal.signal = _signal
        signal.getsignal = _getsignal
        for signum in signal.valid_signals():
            try:
                current = _os_getsignal(signum)
                if callable(current) and not isinstance(current, _Deferring):
                    _os_signal(signum, _Deferring(current))
            except (OSError, ValueError, RuntimeError):
                continue
        _state.installed = True


class _Critical:
    """``with critical:`` defers Python signal handlers until the outermost section ends."""

    __slots__ = ()

    def __enter__(self) -> None:
        if _get_ident() == _state.main:
            if not _state.installed:
                _install()
            _state.depth += 1

    def __exit__(self, *exc_info: object) -> None:
        if _get_ident() == _state.main:
            _state.depth -= 1
            if not _state.depth and _state.pending:
                _run_pending()


def run_all(calls: Iterable[Callable[[], object]]) -> None:
    """Run every call (taken lazily from *calls*) even if some fail, then raise the first
    exception, an interrupt included: cleanup and deliveries others wait for are never cut
    short by one failure."""
    first: BaseException | None = None
    for call in calls:
        try:
            call()
        except BaseException as exc:
            if first is None:
                first = exc
    if first is not None:
        try:
            raise first
        finally:
            first = None


def _run_pending() -> None:
    """Run the deferred handlers in arrival order (including any deferred meanwhile)."""
    pending = _state.pending

    def arrived() -> Iterator[Callable[[], object]]:
        while pending:
            handler, signum, frame = pending.pop(0)
            yield functools.partial(handler, signum, frame)

    run_all(arrived())


#: The critical-section context manager (reentrant, thread-safe, no system call).
critical = _Critical()


#: How long a wait inside a critical section sleeps between looks for deferred signals.
POLL = 0.05


def interruption_point() -> None:
    """Inside a critical section, at a point where nothing is half done (typically in a wait
    loop): run the handlers of signals deferred so far. Their exception (``KeyboardInterrupt``)
    leaves through the enclosing sections, which undo their work as for any other error. The
    depth is not touched, so no section can be left unprotected by an interrupted switch."""
    if _state.pending and _get_ident() == _state.main:
        _run_pending()


def depth() -> int:
    """How deep the main thread is in critical sections (0 elsewhere); for tests."""
    return _state.depth if _get_ident() == _state.main else 0


def _after_fork_in_child() -> None:
    if _get_ident() != _state.main:  # forked from another thread: its sections are not here
        _state.depth = 0
    _state.main = _get_ident()
    _state.pending = []


os.register_at_fork(after_in_child=_after_fork_in_child)

if threading.current_thread() is threading.main_thread():
    _install()

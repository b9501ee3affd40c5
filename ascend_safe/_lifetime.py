"""The lifetime core every resource shares: handle slot, owner PID, parent, state, registry.

One place holds the rules: ``close()`` is idempotent and thread-safe, closes live children first
(by teardown rank, newest first), clears the handle, and any later use raises
:class:`ResourceClosedError` before pyacl is called. An object garbage-collected while open warns
(``ResourceWarning``) and is queued; the queue is released at the next safe point (the next
resource created or closed, :func:`live_resources`, exit), never inside ``__del__`` itself, which
may run in the middle of another pyacl call. Objects inherited by a forked child are abandoned.

Threads: every operation runs as a *use* of the objects it touches (:meth:`Resource._using`).
``close()`` stops new uses at once, closes the children, waits for the uses in progress in other
threads, then releases; so a use either completes before the release or raises
:class:`ResourceClosedError`, and pyacl never sees a released handle. A close requested by a
thread from inside its own use of the object (a finalizer run by the garbage collector, a
signal handler) completes when that use ends.

Interrupts: construction, uses and the release run as critical sections
(:mod:`ascend_safe._interrupts`): a ``KeyboardInterrupt`` lands after the bookkeeping, never
between a pyacl call and the record of what it did.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import threading
import time
import warnings
import weakref
from collections import Counter
from collections.abc import Iterator
from typing import Any, Callable, ClassVar, NoReturn

from typing_extensions import Self

from . import _process
from ._interrupts import POLL, critical, interruption_point, run_all
from .errors import ForkSafetyError, ResourceClosedError

__all__ = [
    "CallTracker",
    "Resource",
    "drain_deferred",
    "leak_report",
    "live_resources",
    "tracking",
    "using",
]

_UNBORN, _OPEN, _CLOSING, _CLOSED, _ABANDONED = range(5)
_NOTHING: Any = object()
_STATE_NAMES = ("unborn", "open", "closing", "closed", "abandoned")

_lock = threading.RLock()
_state_changed = threading.Condition(_lock)
_serials = itertools.count(1)
#: How many threads wait on ``_state_changed`` now (changed under ``_lock``): a state change
#: notifies only when someone waits.
_waiting = [0]
#: serial -> weak reference, for every open resource, in creation order.
_registry: dict[int, weakref.ref[Resource]] = {}
#: Resources collected while open, released at the next safe point.
_deferred: list[Resource] = []
_trace = os.environ.get(
    _process.variable("ASCEND_SAFE_TRACE", "record where each resource was created"), ""
) not in ("", "0")
_PACKAGE = __name__.rpartition(".")[0]
_PACKAGE_PREFIX = _PACKAGE + "."
_thread = threading.local()  # .trackers: the CallTrackers active in this thread
_get_ident = threading.get_ident
_pstate = _process.state  # one object for the whole process (the fork hook updates its pid)


class CallTracker:
    """What one stretch of code in one thread created (see :func:`tracking`)."""

    __slots__ = ("collected", "collected_sites", "created")

    def __init__(self) -> None:
        #: Resources opened while tracking, oldest first.
        self.created: list[weakref.ref[Resource]] = []
        #: Of those, how many of each class were garbage-collected while still open.
        self.collected: Counter[str] = Counter()
        #: ``"<repr> created at <site>"`` of those collected, when tracing is on.
        self.collected_sites: list[str] = []

    def still_open(self) -> list[Resource]:
        """The tracked resources that are still open, oldest first."""
        return [r for r in (ref() for ref in self.created) if r is not None and not r.closed]


@contextlib.contextmanager
def tracking() -> Iterator[CallTracker]:
    """Track the resources this thread creates inside the ``with`` block."""
    tracker = CallTracker()
    stack: list[CallTracker] | None = getattr(_thread, "trackers", None)
    if stack is None:
        stack = _thread.trackers = []
    stack.append(tracker)
    try:
        yield tracker
    finally:
        stack.remove(tracker)


class _Flags:
    """Process-wide switches of the lifetime core."""

    #: Set once exit teardown has run: every remaining finalizer does nothing.
    disarmed = False
    #: Bound (seconds) on every wait inside close paths; None (wait as needed) until exit
    #: teardown sets it.
    close_timeout: float | None = None


flags = _Flags()


class Resource:
    """Base of every resource object; subclasses define ``_release`` and call ``_open``."""

    #: Short name used in messages and leak reports, e.g. ``"stream"``.
    kind: ClassVar[str] = "resource"
    #: Children of one parent close in ascending rank (buffers, events, memory, streams, ...).
    teardown_rank: ClassVar[int] = 0
    #: Whether the object appears in :func:`live_resources` (internal helpers do not).
    tracked: ClassVar[bool] = True

    __slots__ = (
        "__weakref__",
        "_children",
        "_closer",
        "_handle",
        "_parent",
        "_pid",
        "_postponed",
        "_ref",
        "_serial",
        "_site",
        "_state",
        "_trackers",
        "_uses",
    )

    def __init__(self, parent: Resource | None) -> None:
        if getattr(self, "_state", None) is not None:
            raise RuntimeError(
                f"{self!r} is already initialized; calling __init__ again would lose its "
                f"{self.kind} without releasing it. Create a new {type(self).__name__} instead"
            )
        if _deferred:
            drain_deferred()
        self._state = _UNBORN
        self._handle: Any = None
        self._parent = parent
        self._pid = _process.state.pid
        self._serial = next(_serials)
        #: serial -> weak reference of each open child; None until the first child opens
        self._children: dict[int, weakref.ref[Resource]] | None = None
        #: thread id -> uses in progress in that thread (operations, children being built)
        self._uses: dict[int, int] = {}
        self._closer = 0
        self._postponed = False
        #: Where the user's code created it (file, line, function), if tracing is on.
        self._site: tuple[str, int, str] | None = None
        self._trackers: tuple[CallTracker, ...] = ()

    # -- construction -------------------------------------------------------------------------

    def _construct(self, create: Callable[[], Any]) -> None:
        """Run *create* (the pyacl steps, which must undo themselves on failure) and open the
        object with the handle it returns.

        Building a child is a use of its parent: the parent must be open, and its close waits
        for the child to open (then closes it) or to fail. The whole protocol is one critical
        section, so an interrupt cannot separate a handle from the object that owns it.
        """
        parent = self._parent
        try:
            with critical:
                if parent is not None:
                    parent._begin_child(self)
                try:
                    handle: Any = _NOTHING
                    try:
                        handle = create()
                        self._open(handle)
                    except BaseException:
                        if self._state != _OPEN and handle is not _NOTHING:
                            try:  # opening failed after pyacl created it: undo, then let go
                                self._release(handle)
                            except Exception:
                                pass
                        raise
                finally:
                    if parent is not None:
                        parent._end_use()
        except BaseException:
            # A signal handler deferred during construction raised as the section ended: the
            # caller never receives the object, so it must not outlive the constructor.
            if self._state == _OPEN:
                try:
                    self.close()
                except Exception:
                    pass
            raise

    def _begin_child(self, child: Resource) -> None:
        """Building *child* is a use of this parent, which must be open."""
        me = _get_ident()
        uses = self._uses
        uses[me] = uses.get(me, 0) + 1
        if self._state != _OPEN or self._pid != _process.state.pid:
            self._end_use()
            self._refuse_child(child)

    def _refuse_child(self, child: Resource) -> NoReturn:
        try:
            self._raise_unusable()
        except (ResourceClosedError, ForkSafetyError) as exc:
            raise type(exc)(f"cannot create a {type(child).__name__}: {exc}") from None

    def _open(self, handle: Any) -> None:
        ref = weakref.ref(self)
        self._ref = ref
        self._handle = handle
        if _trace:
            self._site = _creation_site()
        trackers = getattr(_thread, "trackers", None)
        if trackers and self.tracked:
            self._trackers = tuple(trackers)
            for tracker in trackers:
                tracker.created.append(ref)
        parent = self._parent
        with _lock:
            self._state = _OPEN
            _registry[self._serial] = ref
            if parent is not None:
                children = parent._children
                if children is None:
                    children = parent._children = {}
                children[self._serial] = ref

    # -- use ----------------------------------------------------------------------------------

    def _checked_handle(self) -> Any:
        """The live handle, or raise before pyacl is called (closed, or from another process)."""
        handle = self._handle
        if handle is None or self._pid != _pstate.pid:
            self._raise_unusable()
        return handle

    def _using(self) -> _Use:
        """``with obj._using() as handle:`` runs an operation as a use of *obj* (see the module
        docstring): a critical section during which *obj* cannot be released."""
        return _Use(self)

    def _begin_use(self) -> Any:
        """Count a use by this thread and return the handle, or raise if the object is not
        usable (call inside a critical section, paired with :meth:`_end_use`).

        No lock: each thread writes only its own entry, and it counts itself before it reads
        the state, while a close sets the state before it looks at the counts; so either the
        use sees the close, or the close sees (and waits for) the use.
        """
        me = _get_ident()
        uses = self._uses
        mine = uses[me] = uses.get(me, 0) + 1
        state = self._state
        if (
            state != _OPEN and not (state == _CLOSING and (self._closer == me or mine > 1))
        ) or self._pid != _pstate.pid:
            self._end_use()
            self._raise_unusable()
        return self._handle

    def _end_use(self) -> None:
        """This thread's use is over; a close waiting for it goes on, one it postponed runs."""
        me = _get_ident()
        uses = self._uses
        left = uses[me] - 1
        if left:
            uses[me] = left
            return
        del uses[me]
        if self._state != _CLOSING:
            return
        with _lock:
            _notify()
            if not (self._postponed and self._closer == me):
                return
            self._postponed = False
        try:
            self._complete_close()
        except Exception as exc:
            warnings.warn(
                f"closing {self!r} (requested while it was in use) failed: {exc}",
                ResourceWarning,
                stacklevel=2,
            )

    def _raise_unusable(self) -> NoReturn:
        if self._pid != _process.state.pid or _process.state.is_foreign(self._pid):
            raise ForkSafetyError(
                f"{self!r} belongs to process {self._pid}, not to this one "
                f"({_process.state.pid}). {_process.FORK_ADVICE}"
            )
        raise ResourceClosedError(
            f"{self!r} is {_STATE_NAMES[self._state]}; create a new {self.kind} instead of "
            "reusing a closed one"
        )

    @property
    def handle(self) -> int:
        """The raw pyacl handle (an address for memory, the id for a device); raises once
        closed, so a stale integer never escapes."""
        handle: int = self._checked_handle()
        return handle

    @property
    def created_at(self) -> str | None:
        """Where it was created (``"path:line in function"``: the first caller outside
        ascend_safe), when ``ASCEND_SAFE_TRACE=1`` is set; else None."""
        site = self._site
        return None if site is None else f"{site[0]}:{site[1]} in {site[2]}"

    @property
    def closed(self) -> bool:
        """True once the resource is released (or abandoned in a forked child)."""
        return self._state != _OPEN

    # -- teardown -----------------------------------------------------------------------------

    def close(self) -> None:
        """Release the resource and its live children. Idempotent and thread-safe.

        Uses in progress in other threads finish first; uses that start later raise
        :class:`ResourceClosedError`. If pyacl refuses the release, the error is raised and the
        object stays open, so the call can be retried; nothing is silently dropped. Once pyacl
        has released the handle, the object is closed, whatever interrupts afterwards.
        """
        with critical:
            if self._claim():
                self._complete_close()

    def _claim(self) -> bool:
        """Move to closing; False if there is nothing (more) for this call to do."""
        me = _get_ident()
        with _lock:
            while self._state == _CLOSING:
                if self._closer == me or me in self._uses:
                    return False  # nested in this thread's own close or use: that one finishes
                _wait(POLL)  # another thread is closing it: wait, interruptibly
                interruption_point()
            if self._state != _OPEN:
                return False
            if _process.state.is_foreign(self._pid):
                self._abandon()
                return False
            self._state = _CLOSING
            self._closer = me
            _notify()
            if me in self._uses:  # a finalizer or handler inside this thread's own use
                self._postponed = True
                return False
            return True

    def _complete_close(self) -> None:
        """Close children, wait for other threads' uses, release (the caller claimed it)."""
        with critical:
            try:  # until the release, an interrupt leaves the object open
                self._close_children()
                if not self._wait_for_uses():
                    raise TimeoutError(
                        f"cannot close {self!r}: another thread is still using it or "
                        "creating a resource on it"
                    )
                self._close_children()  # children that opened while waiting
                self._release(self._handle)
            except BaseException:
                with _lock:
                    self._state = _OPEN
                    self._closer = 0
                    self._postponed = False
                    _notify()
                raise
            self._mark_closed(_CLOSED)

    def _wait_for_uses(self) -> bool:
        """Let other threads' uses (and children they are building) finish; False if that
        takes longer than the close-path bound."""
        if not self._uses:  # read without the lock: see _begin_use
            return True
        timeout = flags.close_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        with _lock:
            while self._uses:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                _wait(POLL if left is None else min(left, POLL))
                interruption_point()
        return True

    def _await_closed(self) -> None:
        """If another thread is closing this object, wait until it is done."""
        me = _get_ident()
        with _lock:
            while self._state == _CLOSING and self._closer != me and me not in self._uses:
                _wait(POLL)
                interruption_point()

    def _close_children(self) -> None:
        if _deferred:
            drain_deferred()
        elif not self._children:  # no child ever opened, or none left
            return
        first: Exception | None = None
        for child in self._live_children():
            try:
                child.close()
            except Exception as exc:  # the others still close; the parent stays open
                first = first or exc
            interruption_point()  # between children: where a Ctrl-C may end a long close
        if first is not None:
            raise first

    def _live_children(self) -> list[Resource]:
        with _lock:
            refs = list(self._children.values()) if self._children else []
        children = [c for c in (r() for r in refs) if c is not None and c._state == _OPEN]
        if _deferred:  # collected in a cycle: its weak reference is gone, the object is queued
            children += [d for d in list(_deferred) if d._parent is self and d not in children]
        children.sort(key=lambda c: (c.teardown_rank, -c._serial))
        return children

    def _mark_closed(self, state: int) -> None:
        with _lock:
            self._state = state
            self._handle = None
            self._closer = 0
            _registry.pop(self._serial, None)
            parent = self._parent
            if parent is not None and parent._children:
                parent._children.pop(self._serial, None)
            _notify()

    def _abandon(self) -> None:
        """In a forked child: forget the handle without calling pyacl (the parent owns it)."""
        for child in self._live_children():
            child._abandon()
        self._mark_closed(_ABANDONED)

    def _release(self, handle: Any) -> None:
        """Give *handle* back to pyacl. Subclasses override."""
        raise NotImplementedError

    # -- implicit cleanup ---------------------------------------------------------------------

    def __del__(self) -> None:
        # A critical section: an interrupt cannot drop the object between its collection and
        # its queueing (it is delivered when the finalizer ends, as Python does for any).
        with critical:
            try:
                if getattr(self, "_state", _UNBORN) != _OPEN or flags.disarmed:
                    return
                if sys.is_finalizing():
                    return
                if _process.state.is_foreign(self._pid):
                    self._state = _ABANDONED
                    return
                _deferred.append(self)  # resurrected until the next safe point releases it
                site = self.created_at
                for tracker in self._trackers:
                    tracker.collected[type(self).__name__] += 1
                    if site is not None:
                        tracker.collected_sites.append(f"{self!r} created at {site}")
                where = "" if site is None else f", created at {site}"
                warnings.warn(
                    f"unclosed {self!r}{where}", ResourceWarning, source=self, stacklevel=2
                )
            except BaseException:
                pass

    def _close_implicitly(self) -> None:
        """Close a collected object; failures become warnings, never exceptions."""
        try:
            self.close()
        except Exception as exc:
            try:
                warnings.warn(
                    f"releasing unclosed {self!r} failed: {exc}", ResourceWarning, stacklevel=2
                )
            except Exception:
                pass

    # -- protocol -----------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self._checked_handle()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            f"{self!r} cannot be pickled: a pyacl handle means nothing in another process. "
            "Send data (bytes, numpy arrays) and create the resource in the worker "
            "(see ascend_safe.worker)."
        )

    def _describe(self) -> str:
        """Identifying details for ``repr`` (subclasses add device, size, ...)."""
        return ""

    def __repr__(self) -> str:
        try:
            state = _STATE_NAMES[self._state]
            details = self._describe()
        except Exception:
            return f"<{type(self).__name__} (partially built)>"
        return f"<{type(self).__name__} #{self._serial}{details} {state}>"


class _Use:
    """A use of one resource: a critical section during which it is not released."""

    __slots__ = ("_resource",)

    def __init__(self, resource: Resource) -> None:
        self._resource = resource

    def __enter__(self) -> Any:
        critical.__enter__()
        try:
            return self._resource._begin_use()
        except BaseException:
            critical.__exit__(None, None, None)
            raise

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._resource._end_use()
        finally:
            critical.__exit__(None, None, None)


class using:
    """``with using(a, b, ...):`` one use of several resources (``None`` entries skipped),
    begun in order; if one is unusable, those already begun end and the error is raised."""

    __slots__ = ("_resources",)

    def __init__(self, *resources: Resource | None) -> None:
        seen: list[Resource] = []
        for r in resources:
            if r is not None and all(r is not s for s in seen):
                seen.append(r)
        self._resources = seen

    def __enter__(self) -> None:
        critical.__enter__()
        begun: list[Resource] = []
        try:
            for r in self._resources:
                r._begin_use()
                begun.append(r)
        except BaseException:
            try:
                _end_every(begun)
            finally:
                critical.__exit__(None, None, None)
            raise

    def __exit__(self, *exc_info: object) -> None:
        try:
            _end_every(self._resources)
        finally:
            critical.__exit__(None, None, None)


def _end_every(resources: list[Resource]) -> None:
    """End a use of each of *resources* (newest first), even if a postponed close that one of
    them runs is interrupted; then raise the first error."""
    run_all([r._end_use for r in reversed(resources)])


def set_tracing(enabled: bool) -> bool:
    """Record creation sites of the resources created from now on (what
    ``ASCEND_SAFE_TRACE=1`` turns on at import), or stop; returns the previous setting."""
    global _trace
    previous, _trace = _trace, bool(enabled)
    return previous


def _creation_site() -> tuple[str, int, str] | None:
    """The innermost frame of the caller that is not ascend_safe's own code, however deep
    the library's frames go (module level, functions, factory methods, worker calls)."""
    frame: Any = sys._getframe(2)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name != _PACKAGE and not name.startswith(_PACKAGE_PREFIX):
            code = frame.f_code
            return (code.co_filename, frame.f_lineno, code.co_name)
        frame = frame.f_back
    return None


def _wait(timeout: float) -> None:
    """Wait (holding ``_lock``) for a state change, counted so that changes notify."""
    _waiting[0] += 1
    try:
        _state_changed.wait(timeout)
    finally:
        _waiting[0] -= 1


def _notify() -> None:
    """A state changed (holding ``_lock``): wake the threads waiting for one, if any."""
    if _waiting[0]:
        _state_changed.notify_all()


def _new_locks_in_child() -> None:
    """In a forked child: the parent's lock may be held by a thread that is not here."""
    global _lock, _state_changed
    _lock = threading.RLock()
    _state_changed = threading.Condition(_lock)
    _waiting[0] = 0


_process.on_fork_child(_new_locks_in_child)


#: Run every call, then raise the first error (kept under this name for the resources).
call_all = run_all


def drain_deferred() -> None:
    """Release the objects that were garbage-collected while open (lowest rank first).

    An interrupt that ends a release early puts what is left back in the queue: a collected
    object has no other reference, and Python runs its finalizer only once.
    """
    while _deferred:
        with critical:
            batch: list[Resource] = []
            while _deferred:  # pop one by one: __del__ may append meanwhile, from any thread
                batch.append(_deferred.pop())
            batch.sort(key=lambda r: (r.teardown_rank, -r._serial))
            done = 0
            try:
                for obj in batch:
                    obj._close_implicitly()
                    done += 1
            except BaseException:
                _deferred.extend(r for r in batch[done:] if r._state == _OPEN)
                raise


def live_resources(*, internal: bool = False) -> list[Resource]:
    """Every resource still open in this process, oldest first.

    *internal* also lists what the library manages on its own (default streams, pooled
    staging buffers for async copies), which are released with their device.
    """
    if _deferred:
        drain_deferred()
    with _lock:
        refs = list(_registry.values())
    return [
        r
        for r in (ref() for ref in refs)
        if r is not None and r._state == _OPEN and (internal or r.tracked)
    ]


def roots() -> list[Resource]:
    """Open resources that have no parent (device sessions), newest first."""
    return [r for r in reversed(live_resources()) if r._parent is None]


def leak_report(resources: list[Resource] | None = None) -> str:
    """A one-paragraph report of open resources: counts by kind, and creation sites if traced."""
    items = live_resources() if resources is None else resources
    if not items:
        return "0 live resources"
    counts = Counter(type(r).__name__ for r in items)
    summary = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
    lines = [f"{len(items)} live resource{'s' if len(items) != 1 else ''}: {summary}"]
    for r in items:
        site = r.created_at
        if site is not None:
            lines.append(f"  {r!r} created at {site}")
    if not any(r._site is not None for r in items) and not _trace:
        lines.append("  (set ASCEND_SAFE_TRACE=1 to record where each one was created)")
    return "\n".join(lines)

"""Stop device work before the system sleeps, and start it again after the wake.

CANN's rule: before the system hibernates, stop issuing device work (or exit), and resume or
restart after the wake. A :class:`SuspendCoordinator` is a gate that units of device work pass
through (``with coordinator.work():``, ``@coordinator.work()``, every ``@ascend_safe.worker``
call). A suspend closes the gate, lets the units in flight finish (up to a drain timeout; see
the policy below), has every worker process of the ascend_safe pools do the same, releases every
device resource of the process in dependency order (models and datasets, memory, events,
streams, contexts, devices) and finalizes pyacl; only then may the system sleep. A resume
initialises pyacl again, runs the resume callbacks in registration order and reopens the gate:
the units that waited run then, once each.

Drain-timeout policy (*cancel*): units still running when the drain timeout ends are cancelled.
Their streams are synchronized and their resources released under them, and each of them raises
:class:`~ascend_safe.errors.WorkCancelledError` when its block ends. A worker process that
does not answer in time is killed. So the system never sleeps with device work in flight.

Event sources: :meth:`SuspendCoordinator.listen_logind` (systemd-logind over D-Bus),
:meth:`SuspendCoordinator.listen_signals` (a POSIX signal pair) and the direct calls.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import logging
import multiprocessing
import os
import queue
import secrets
import select
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from types import FrameType
from typing import Any, Callable, TypeVar

from . import _lifetime, _process, _runtime, workers
from ._logind import LogindListener
from .errors import SuspendError, WorkCancelledError

__all__ = [
    "DEFAULT_RESUME_SIGNAL",
    "DEFAULT_SUSPEND_SIGNAL",
    "SuspendCoordinator",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Default signal that asks for a suspend (``kill -USR1 <pid>``).
DEFAULT_SUSPEND_SIGNAL = signal.SIGUSR1
#: Default signal that asks for a resume (``kill -CONT <pid>``): any process that runs again
#: receives it after a stop, and a resume while not suspended does nothing. ``SIGUSR2`` is not
#: used: worker processes use it to detect the death of their parent.
DEFAULT_RESUME_SIGNAL = signal.SIGCONT

_RUNNING, _DRAINING, _SUSPENDED, _RESUMING, _FAILED, _CLOSED = (
    "running",
    "draining",
    "suspended",
    "resuming",
    "failed",
    "closed",
)

#: systemd's default ``InhibitDelayMaxSec``.
_LOGIND_DEFAULT_DELAY = 5.0

_log = logging.getLogger("ascend_safe")
_active_lock = threading.Lock()


class _Active:
    coordinator: SuspendCoordinator | None = None


_active = _Active()


class _Unit:
    """One unit of work in flight."""

    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False


class SuspendCoordinator:
    """The gate between units of device work and a system sleep (one per process).

    *drain_timeout*: how long a suspend waits for units in flight (seconds) before it cancels
    them (see the module's policy); ``suspend(timeout=...)`` overrides it once.
    *finalize*: call ``acl.finalize`` during a suspend (when ascend_safe initialised pyacl).

    While it is open, ``@ascend_safe.worker`` calls in this process pass through its gate, and
    every worker process of an ascend_safe pool takes part in its suspends and resumes.
    """

    def __init__(self, *, drain_timeout: float = 30.0, finalize: bool = True) -> None:
        if not drain_timeout >= 0:
            raise ValueError(f"drain_timeout must be a number of seconds >= 0, not {drain_timeout}")
        self._drain_timeout = float(drain_timeout)
        self._finalize = finalize
        self._cond = threading.Condition(threading.Lock())
        self._transition = threading.Lock()  # one suspend or resume at a time
        self._state = _RUNNING
        self._units: set[_Unit] = set()
        self._error: SuspendError | None = None
        self._callbacks: list[Callable[[], object]] = []
        self._local = threading.local()  # .depth: units this thread is inside
        self._logind: LogindListener | None = None
        self._signals: dict[int, Any] = {}
        self._requests: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._dispatcher: threading.Thread | None = None
        #: Units cancelled by drain timeouts so far.
        self.cancelled_units = 0
        #: Suspends completed so far.
        self.suspends = 0
        with _active_lock:
            other = _active.coordinator
            if other is not None:
                raise RuntimeError(
                    f"{other!r} is already open in this process: use it "
                    "(SuspendCoordinator.active()) or close() it before making another"
                )
            _active.coordinator = self

    @classmethod
    def active(cls) -> SuspendCoordinator | None:
        """The coordinator open in this process (in a pool worker, the one made for it)."""
        return _active.coordinator

    @property
    def state(self) -> str:
        """``running``, ``draining``, ``suspended``, ``resuming``, ``failed`` or ``closed``."""
        return self._state

    def __repr__(self) -> str:
        return f"<SuspendCoordinator {self._state} units={len(self._units)}>"

    # -- the gate ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def work(self, *, timeout: float | None = None) -> Iterator[None]:
        """One unit of device work: waits while device work is suspended, then runs.

        Also a decorator (``@coordinator.work()``). A unit inside another unit of the same
        thread passes straight through. *timeout*: how long to wait at a closed gate (None:
        as long as it takes) before :class:`TimeoutError`. Raises
        :class:`~ascend_safe.errors.SuspendError` if the last resume failed, and
        :class:`~ascend_safe.errors.WorkCancelledError` at the end of a unit that a suspend's
        drain timeout cancelled.
        """
        depth = getattr(self._local, "depth", 0)
        if depth:
            self._local.depth = depth + 1
            try:
                yield
            finally:
                self._local.depth = depth
            return
        unit = self._enter(timeout)
        self._local.depth = 1
        try:
            yield
        except Exception as exc:
            self._leave(unit)
            if unit.cancelled:
                raise self._cancelled() from exc
            raise
        except BaseException:
            self._leave(unit)
            raise
        self._leave(unit)
        if unit.cancelled:
            raise self._cancelled()

    def _leave(self, unit: _Unit) -> None:
        self._local.depth = 0
        with self._cond:
            self._units.discard(unit)
            self._cond.notify_all()

    def _cancelled(self) -> WorkCancelledError:
        return WorkCancelledError(
            "this unit of device work was still running when the system suspended (drain "
            f"timeout {self._drain_timeout:g} s or the one given to suspend()): its streams "
            "were synchronized and its device resources released under it; run it again"
        )

    def _enter(self, timeout: float | None) -> _Unit:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._state != _RUNNING:
                if self._state == _FAILED:
                    assert self._error is not None
                    raise SuspendError(str(self._error)) from self._error.__cause__
                if self._state == _CLOSED:
                    raise SuspendError(f"{self!r} is closed; open a new SuspendCoordinator")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(
                        f"device work stayed suspended for {timeout:g} s ({self!r}); "
                        "retry after the resume"
                    )
                self._cond.wait(left)
            unit = _Unit()
            self._units.add(unit)
            return unit

    def _in_unit(self) -> bool:
        return bool(getattr(self._local, "depth", 0))

    # -- callbacks --------------------------------------------------------------------------

    def on_resume(self, callback: F) -> F:
        """Run *callback* after each wake, before the gate reopens (registration order).

        Use it to reload models and re-create streams and pools: every device resource of the
        process was released for the sleep. Returns *callback* (so it works as a decorator).
        """
        if not callable(callback):
            raise TypeError(f"on_resume() takes a callable, not {type(callback).__name__}")
        with self._cond:
            self._callbacks.append(callback)
        return callback

    # -- suspend and resume -----------------------------------------------------------------

    def suspend(self, timeout: float | None = None) -> None:
        """Stop device work for a system sleep; returns once the system may sleep.

        Closes the gate, waits up to *timeout* seconds (default: the drain timeout) for the
        units in flight, cancels those still running, has every pool worker process do the
        same, and releases every device resource of this process. Doing it again while
        suspended does nothing.
        """
        if self._in_unit():
            raise RuntimeError(
                "suspend() called inside a unit of device work of the same thread: it would "
                "wait for itself; call it from outside the unit"
            )
        drain = self._drain_timeout if timeout is None else float(timeout)
        if not drain >= 0:
            raise ValueError(f"timeout must be a number of seconds >= 0, not {timeout}")
        with self._transition:
            with self._cond:
                if self._state in (_SUSPENDED, _CLOSED):
                    return
                self._state = _DRAINING
            links = _links.snapshot()
            for link in links:
                link.set_suspended(True)  # before send_all: see _join_pool
                link.send_all(f"suspend {drain!r}")
            try:
                self._drain_and_release(drain)
            finally:
                problems = [p for link in links for p in link.collect(drain + _release_bound())]
                with self._cond:
                    self._state = _SUSPENDED
                    self._error = None
                    self._cond.notify_all()
                self.suspends += 1
            for problem in problems:
                _log.error("ascend_safe suspend: %s", problem)

    def _close_gate(self) -> None:
        """Suspended before any device work started here (a pool worker born in a sleep)."""
        with self._cond:
            if self._state == _RUNNING and not self._units:
                self._state = _SUSPENDED

    def _drain_and_release(self, drain: float) -> None:
        deadline = time.monotonic() + drain
        with self._cond:
            while self._units:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            late = list(self._units)
            for unit in late:
                unit.cancelled = True
        if late:
            self.cancelled_units += len(late)
            _log.warning(
                "ascend_safe suspend: %d unit(s) of device work still ran after %g s; they "
                "are cancelled (streams synchronized, resources released under them)",
                len(late),
                drain,
            )
        _release_all(self._finalize)

    def resume(self) -> None:
        """Initialise pyacl again, run the resume callbacks and reopen the gate.

        Pool workers resume in two steps: all of them run their callbacks with their gates
        still closed, and only when every one (and this process) succeeded are the gates
        opened. If a callback fails, here or in a worker, everything is released again, every
        gate stays closed, waiting units get :class:`~ascend_safe.errors.SuspendError`, and
        this raises it; call ``resume()`` again once the cause is fixed. Doing it while
        running does nothing.
        """
        if self._in_unit():
            raise RuntimeError("resume() called inside a unit of device work of the same thread")
        with self._transition:
            if not self._prepare_resume():
                return
            links = _links.snapshot()
            try:
                for link in links:
                    link.send_all("resume")
                problems = [p for link in links for p in link.collect(_release_bound() * 3)]
                if problems:
                    raise SuspendError(
                        "pool worker processes could not resume: "
                        + "; ".join(problems)
                        + "; device work stays suspended: call resume() again"
                    )
            except BaseException as exc:
                self._fail_resume(exc, links)
                raise
            for link in links:
                link.send_all("open")
            for problem in [p for link in links for p in link.collect(_release_bound() * 3)]:
                _log.error("ascend_safe resume: %s", problem)
            for link in links:
                link.set_suspended(False)
            self._open_gate()

    def _prepare_resume(self) -> bool:
        """Initialise pyacl and run the callbacks, the gate still closed (call under the
        transition lock). False if there is nothing to resume; raises if a callback fails."""
        with self._cond:
            if self._state in (_RUNNING, _CLOSED, _RESUMING):
                return False
            self._state = _RESUMING
        try:
            _runtime.ensure_initialized()
            with self._cond:
                callbacks = list(self._callbacks)
            for callback in callbacks:
                self._local.depth = 1  # units inside a callback (a warm-up) pass through
                try:
                    callback()
                except Exception as exc:
                    name = getattr(callback, "__qualname__", repr(callback))
                    raise SuspendError(
                        f"resume callback {name} failed: {exc}; device work stays "
                        "suspended: fix the cause and call resume() again"
                    ) from exc
                finally:
                    self._local.depth = 0
        except BaseException as exc:
            self._fail_resume(exc, [])
            raise
        return True

    def _fail_resume(self, exc: BaseException, links: list[_WorkerLink]) -> None:
        """No half-resumed state: release everything again and keep the gates closed."""
        error = exc if isinstance(exc, SuspendError) else None
        if error is None:
            error = SuspendError(
                f"resuming device work failed: {exc}; device work stays suspended: "
                "fix the cause and call resume() again"
            )
            error.__cause__ = exc
        _log.error("ascend_safe resume: %s", error)
        for link in links:  # the workers that got ready stop again
            link.send_all("suspend 0")
        _release_all(self._finalize)
        for link in links:
            link.collect(_release_bound())
        with self._cond:
            self._state = _FAILED
            self._error = error
            self._cond.notify_all()
        if error is not exc and isinstance(exc, Exception):
            raise error from exc

    def _open_gate(self) -> None:
        with self._cond:
            if self._state == _RESUMING:
                self._state = _RUNNING
                self._cond.notify_all()

    def _open_as_worker(self) -> None:
        """The parent's "open": after "resume", or a full resume for a worker that started
        during the sleep and missed the "resume"."""
        with self._transition:
            if self._state == _RESUMING:
                self._open_gate()
                return
        self.resume()

    def _resume_as_worker(self) -> None:
        """The parent's "resume": run the callbacks, keep the gate closed until "open"."""
        with self._transition:
            self._prepare_resume()

    # -- event sources ----------------------------------------------------------------------

    def listen_logind(
        self,
        *,
        bus: str = "SYSTEM",
        who: str = "ascend_safe",
        why: str = "stop NPU work before the system sleeps",
    ) -> None:
        """Follow systemd-logind: suspend on ``PrepareForSleep(true)``, resume on ``false``.

        Takes a ``delay`` inhibitor lock (released once the suspend is done, taken again at
        the wake) and accepts the signal only from logind's own connection. *bus*:
        ``"SYSTEM"`` or a D-Bus address (``unix:path=...``). Needs the ``logind`` extra
        (``jeepney``).
        """
        if self._logind is not None:
            raise RuntimeError(f"{self!r} already listens to logind")
        listener = LogindListener(
            self._suspend_for_logind, self._resume_quietly, bus=bus, who=who, why=why
        )
        listener.start()
        self._logind = listener

    @property
    def logind(self) -> LogindListener | None:
        """The logind listener, when :meth:`listen_logind` runs."""
        return self._logind

    def listen_signals(
        self,
        suspend: int = DEFAULT_SUSPEND_SIGNAL,
        resume: int = DEFAULT_RESUME_SIGNAL,
    ) -> None:
        """Suspend when this process receives *suspend*, resume on *resume*.

        For containers without logind (``docker kill --signal=USR1``). Must be called from the
        main thread; the handlers only hand the request to a thread of the coordinator, so the
        interrupted code is never made to wait. :meth:`close` restores the previous handlers.
        """
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("listen_signals() must be called from the main thread")
        suspend, resume = int(suspend), int(resume)
        for signum in (suspend, resume):
            if signum not in signal.valid_signals() or signum in (signal.SIGKILL, signal.SIGSTOP):
                raise ValueError(f"{signum} is not a signal a handler can be set for")
        if suspend == resume:
            raise ValueError("the suspend and resume signals must differ")
        if self._signals:
            raise RuntimeError(f"{self!r} already listens to signals")
        self._start_dispatcher()
        requests = self._requests

        def on_signal(signum: int, frame: FrameType | None) -> None:
            requests.put("suspend" if signum == suspend else "resume")  # reentrant-safe

        for signum in (suspend, resume):
            self._signals[signum] = signal.signal(signum, on_signal)

    def _start_dispatcher(self) -> None:
        if self._dispatcher is None:
            self._dispatcher = threading.Thread(
                target=self._dispatch, name="ascend_safe-suspend", daemon=True
            )
            self._dispatcher.start()

    def _dispatch(self) -> None:
        while True:
            request = self._requests.get()
            if request is None:
                return
            if request == "suspend":
                self._suspend_quietly()
            else:
                self._resume_quietly()

    def _suspend_for_logind(self) -> None:
        """logind sleeps anyway once its ``InhibitDelayMaxUSec`` passes: drain for at most
        half of it (of the default 5 s when unknown), leaving the rest for the release."""
        listener = self._logind
        delay = listener.max_delay if listener is not None else None
        limit = (delay or _LOGIND_DEFAULT_DELAY) / 2
        self._suspend_quietly(min(self._drain_timeout, limit))

    def _suspend_quietly(self, timeout: float | None = None) -> None:
        try:
            self.suspend(timeout)
        except Exception as exc:
            _log.error("ascend_safe: suspend failed: %s", exc)

    def _resume_quietly(self) -> None:
        try:
            self.resume()
        except Exception:
            pass  # resume() logged it; waiting units get the error

    # -- closing ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the event sources and retire this coordinator (units may no longer enter).

        Suspended device work stays released; units waiting at the gate get
        :class:`~ascend_safe.errors.SuspendError`.
        """
        listener, self._logind = self._logind, None
        if listener is not None:
            listener.stop()
        for signum, previous in list(self._signals.items()):
            with contextlib.suppress(ValueError, TypeError):  # not the main thread now
                signal.signal(signum, previous)
        self._signals.clear()
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is not None:
            self._requests.put(None)
            if dispatcher is not threading.current_thread():
                dispatcher.join(30)
        with self._cond:
            self._state = _CLOSED
            self._cond.notify_all()
        with _active_lock:
            if _active.coordinator is self:
                _active.coordinator = None

    def __enter__(self) -> SuspendCoordinator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# -- releasing ----------------------------------------------------------------------------------


def _release_bound() -> float:
    return _runtime._exit_timeout()


def _release_all(finalize: bool) -> None:
    """Everything of this process, in dependency order, with bounded waits."""
    previous = _lifetime.flags.close_timeout
    _lifetime.flags.close_timeout = _release_bound()
    try:
        stuck = _runtime.release_everything("for the system sleep", finalize=finalize)
    finally:
        _lifetime.flags.close_timeout = previous
    if stuck:
        _log.error(
            "ascend_safe suspend: %s could not be released; the device may be lost in the sleep",
            ", ".join(repr(r) for r in stuck),
        )


# -- the gate of @worker calls --------------------------------------------------------------------


def _worker_gate() -> contextlib.AbstractContextManager[object] | None:
    coordinator = _active.coordinator
    if coordinator is None:
        return None
    return coordinator.work()


workers.hooks.unit_gate = _worker_gate


# -- pool workers: the parent <-> worker protocol -------------------------------------------------
#
# Each ascend_safe pool gets a listening unix socket (abstract address) in the parent; each of
# its worker processes connects when it starts and sends "hello <token> <pid>" (the token
# reaches the workers in the pool's initializer arguments, through the spawn pipe). The parent
# accepts the connections when it suspends or resumes, then sends lines: "suspend <seconds>",
# "resume" (run the callbacks, gate still closed) and, once every worker is ready, "open"; each
# worker answers "ok" or "error <text>" once it is done. A worker that does not answer in
# time during a suspend is killed: a device must never be held through a sleep.


class _WorkerLink:
    """The parent's end of one pool's control sockets."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(16)
        self._directory: str | None = None
        # sockets are not inherited across exec (PEP 446); forked children close them
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if sys.platform.startswith("linux"):  # an abstract address: nothing to clean up
            self.address = f"\0ascend_safe-suspend-{os.getpid()}-{secrets.token_hex(8)}"
        else:
            self._directory = tempfile.mkdtemp(prefix="ascend_safe-suspend-")
            self.address = os.path.join(self._directory, "link")
        self._server.bind(self.address)
        self._server.listen(128)
        self._server.setblocking(False)
        #: Shared with the workers: set while the parent is suspended (a worker that starts
        #: then keeps its gate closed until the resume).
        active = _active.coordinator
        self.suspended: Any = multiprocessing.get_context("spawn").RawValue(
            "b", active is not None and active.state != _RUNNING
        )
        self._peers: dict[int, tuple[socket.socket, Any]] = {}  # pid -> (socket, reader)
        self._sent: list[int] = []
        self._lock = threading.Lock()
        self.closed = False

    def _accept_pending(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            conn.settimeout(5.0)
            reader = conn.makefile("r", encoding="utf-8", newline="\n")
            try:
                words = reader.readline().split()
            except OSError:
                words = []
            if (
                len(words) == 3
                and words[0] == "hello"
                and hmac.compare_digest(words[1], self.token)
                and words[2].isdigit()
            ):
                self._peers[int(words[2])] = (conn, reader)
            else:
                reader.close()
                conn.close()

    def set_suspended(self, suspended: bool) -> None:
        self.suspended.value = suspended

    def send_all(self, line: str) -> None:
        with self._lock:
            if self.closed:
                return
            self._accept_pending()
            self._sent = []
            for pid, (conn, _reader) in list(self._peers.items()):
                try:
                    conn.sendall((line + "\n").encode())
                    self._sent.append(pid)
                except OSError:  # the worker is gone: it holds no device
                    self._drop(pid)

    def collect(self, timeout: float) -> list[str]:
        """Wait for the answers to the last command; returns the problems."""
        problems: list[str] = []
        deadline = time.monotonic() + timeout
        with self._lock:
            for pid in self._sent:
                peer = self._peers.get(pid)
                if peer is None:
                    continue
                conn, reader = peer
                try:
                    conn.settimeout(max(0.01, deadline - time.monotonic()))
                    answer = reader.readline().strip()
                except (OSError, ValueError):
                    answer = "timeout"
                if answer == "ok":
                    continue
                if not answer:  # the worker exited meanwhile
                    self._drop(pid)
                elif answer == "timeout":
                    problems.append(f"pool worker {pid} did not answer in {timeout:g} s; killed")
                    self._drop(pid)
                    _kill_and_wait(pid)
                else:
                    problems.append(f"pool worker {pid}: {answer.removeprefix('error ')}")
            self._sent = []
        return problems

    def _drop(self, pid: int) -> None:
        conn, reader = self._peers.pop(pid)
        with contextlib.suppress(OSError):
            reader.close()
            conn.close()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            for pid in list(self._peers):
                self._drop(pid)
            with contextlib.suppress(OSError):
                self._server.close()
            if self._directory is not None:
                shutil.rmtree(self._directory, ignore_errors=True)
        _links.remove(self)


def _kill_and_wait(pid: int, timeout: float = 5.0) -> None:
    """SIGKILL *pid* and wait until it is dead, so its device is free (its descriptors, process
    slot included, are closed before its death is reported)."""
    pidfd = -1
    with contextlib.suppress(OSError, AttributeError):
        pidfd = os.pidfd_open(pid)
    try:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            return  # already gone
        if pidfd >= 0:
            select.select([pidfd], [], [], timeout)
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.005)
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def _alive(pid: int) -> bool:
    """Whether *pid* still runs (a zombie has released everything)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except OSError:
        return False


class _Links:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._links: list[_WorkerLink] = []

    def add(self, link: _WorkerLink) -> None:
        with self._lock:
            self._links.append(link)

    def remove(self, link: _WorkerLink) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._links.remove(link)

    def snapshot(self) -> list[_WorkerLink]:
        with self._lock:
            return list(self._links)

    def forget(self) -> None:
        """In a forked child: the parent's pools are not this process's."""
        for link in self._links:
            with contextlib.suppress(OSError):
                link._server.close()
            for conn, _reader in link._peers.values():
                with contextlib.suppress(OSError):
                    conn.close()
        self._lock = threading.Lock()
        self._links = []


_links = _Links()
_process.on_fork_child(_links.forget)


def _forget_coordinator() -> None:
    """In a forked child: the parent's coordinator (its threads, its locks) is not here."""
    _active.coordinator = None


_process.on_fork_child(_forget_coordinator)


def _new_pool_link() -> tuple[Callable[[Any], None], Any, Callable[[object], None]]:
    link = _WorkerLink()
    _links.add(link)

    def attach(pool: object) -> None:
        weakref.finalize(pool, link.close)

    return _join_pool, (link.address, link.token, link.suspended), attach


workers.hooks.pool_link = _new_pool_link


def _join_pool(arg: tuple[str, str, Any]) -> None:
    """In a pool worker process: connect to the parent and serve its suspend and resume.

    A worker that starts while the parent is suspended keeps its gate closed until the resume:
    the parent sets the shared flag before it accepts connections, and the worker connects
    before it reads the flag, so either the flag is seen set or the parent's suspend reaches
    the worker (or both: a second suspend does nothing).
    """
    address, token, suspended = arg
    coordinator = _active.coordinator or SuspendCoordinator()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(address)
        conn.sendall(f"hello {token} {os.getpid()}\n".encode())
    except OSError as exc:
        conn.close()
        _log.warning("ascend_safe pool worker: no suspend link to the parent: %s", exc)
        return
    if suspended.value:
        coordinator._close_gate()
    threading.Thread(
        target=functools.partial(_serve_parent, conn, coordinator),
        name="ascend_safe-suspend-link",
        daemon=True,
    ).start()


def _serve_parent(conn: socket.socket, coordinator: SuspendCoordinator) -> None:
    with conn, conn.makefile("r", encoding="utf-8", newline="\n") as reader:
        for line in reader:
            words = line.split()
            try:
                if words[:1] == ["suspend"] and len(words) == 2:
                    coordinator.suspend(float(words[1]))
                elif words == ["resume"]:
                    coordinator._resume_as_worker()
                elif words == ["open"]:
                    coordinator._open_as_worker()
                else:
                    raise ValueError(f"unknown command {line.strip()!r}")
                answer = "ok"
            except Exception as exc:
                answer = "error " + " ".join(str(exc).split())
            try:
                conn.sendall((answer + "\n").encode())
            except OSError:
                return

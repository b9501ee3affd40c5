"""A minimal systemd-logind client over D-Bus: a ``delay`` sleep inhibitor and ``PrepareForSleep``.

logind announces a system sleep with the signal ``PrepareForSleep(true)`` and waits for every
holder of a ``delay`` inhibitor lock to close its file descriptor (at most ``InhibitDelayMaxSec``,
5 s by default) before it sleeps; ``PrepareForSleep(false)`` follows the wake. The signal is
accepted only from the connection that owns ``org.freedesktop.login1`` (anyone can send a signal
to a connection by its unique name). The inhibitor descriptor is close-on-exec and closed in
forked children, which must not hold the parent's lock. Needs ``jeepney`` (the ``logind``
extra); it is imported on first use.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from types import ModuleType
from typing import Any, Callable

from . import _process

__all__ = ["LOGIND", "LogindListener", "jeepney_modules"]

LOGIND = "org.freedesktop.login1"
_PATH = "/org/freedesktop/login1"
_MANAGER = "org.freedesktop.login1.Manager"
_BUS = "org.freedesktop.DBus"

_log = logging.getLogger("ascend_safe")

#: Inhibitor descriptors open in this process; a forked child closes them.
_open_fds: set[int] = set()
_fds_lock = threading.Lock()


def _close_inherited_fds() -> None:
    for fd in list(_open_fds):
        try:
            os.close(fd)
        except OSError:
            pass
    _open_fds.clear()


_process.on_fork_child(_close_inherited_fds)


def jeepney_modules() -> tuple[ModuleType, ModuleType, ModuleType]:
    """``(jeepney, jeepney.io.threading, jeepney.bus_messages)``, or a clear ImportError."""
    try:
        return (
            importlib.import_module("jeepney"),
            importlib.import_module("jeepney.io.threading"),
            importlib.import_module("jeepney.bus_messages"),
        )
    except ImportError as exc:
        raise ImportError(
            "listening to systemd-logind needs jeepney: pip install 'ascend-safe[logind]' "
            f"(or pip install 'jeepney>=0.8'); import failed: {exc}"
        ) from exc


class LogindListener:
    """Holds a ``delay`` sleep inhibitor and reports ``PrepareForSleep`` from logind only.

    ``on_sleep()`` runs (in the listener's thread) when logind announces a sleep; the inhibitor
    is released when it returns. ``on_wake()`` runs after the wake, once the inhibitor is taken
    again. Errors of either are logged, never stop the listener.
    """

    def __init__(
        self,
        on_sleep: Callable[[], None],
        on_wake: Callable[[], None],
        *,
        bus: str = "SYSTEM",
        who: str = "ascend_safe",
        why: str = "stop NPU work before the system sleeps",
    ) -> None:
        self._on_sleep = on_sleep
        self._on_wake = on_wake
        self._bus = bus
        self._who = who
        self._why = why
        self._jeepney, self._io, self._bus_messages = jeepney_modules()
        self._unwrap = importlib.import_module("jeepney.wrappers").unwrap_msg
        self._conn: Any = None
        self._owner: str | None = None
        self._fd: int | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._pending: list[Any] = []
        self._thread = threading.Thread(target=self._run, name="ascend_safe-logind", daemon=True)
        #: logind's ``InhibitDelayMaxUSec`` in seconds, once connected (None if unknown): how
        #: long logind waits for the inhibitor before it sleeps anyway.
        self.max_delay: float | None = None
        #: Signals ignored because they did not come from logind's own connection.
        self.ignored = 0
        #: Sleeps handled (the inhibitor was released after each).
        self.sleeps = 0

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Connect, take the inhibitor and start listening; raise if that fails."""
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise TimeoutError(f"no answer from the D-Bus bus {self._bus!r} in {timeout} s")
        if self._error is not None:
            self._thread.join(timeout)
            raise self._error

    def stop(self) -> None:
        """Stop listening and release the inhibitor."""
        self._stop.set()
        conn = self._conn
        if conn is not None:
            conn.interrupt()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(10)

    @property
    def holds_inhibitor(self) -> bool:
        """Whether the ``delay`` inhibitor lock is held right now."""
        return self._fd is not None

    @property
    def unique_name(self) -> str | None:
        """This listener's unique name on the bus (None before it connects)."""
        conn = self._conn
        return None if conn is None else str(conn.unique_name)

    # -- the listener thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._connect()
        except BaseException as exc:
            self._error = _connect_error(self._bus, exc)
            self._ready.set()
            self._close()
            return
        self._ready.set()
        try:
            while not self._stop.is_set():
                msg = self._next_message()
                if msg is not None:
                    self._handle(msg)
        except self._io.ReceiveStopped:
            pass
        except Exception as exc:
            if not self._stop.is_set():
                _log.error("ascend_safe: the logind listener stopped: %s", exc)
        finally:
            self._close()

    def _connect(self) -> None:
        self._conn = self._io.open_dbus_connection(bus=self._bus, enable_fds=True)
        bus = self._bus_messages.message_bus
        rule = self._bus_messages.MatchRule(
            type="signal", sender=LOGIND, interface=_MANAGER, member="PrepareForSleep", path=_PATH
        )
        self._call(bus.AddMatch(rule))
        owners = self._bus_messages.MatchRule(
            type="signal", sender=_BUS, interface=_BUS, member="NameOwnerChanged"
        )
        owners.add_arg_condition(0, LOGIND)
        self._call(bus.AddMatch(owners))
        self._owner = str(self._call(bus.GetNameOwner(LOGIND))[0])
        self.max_delay = self._inhibit_delay_max()
        self._take_inhibitor()

    def _inhibit_delay_max(self) -> float | None:
        """logind's ``InhibitDelayMaxUSec`` in seconds (None if it does not say)."""
        jeepney = self._jeepney
        manager = jeepney.DBusAddress(_PATH, bus_name=LOGIND, interface=_MANAGER)
        try:
            value = self._call(jeepney.Properties(manager).get("InhibitDelayMaxUSec"))[0]
        except Exception:
            return None
        _signature, usec = value
        return int(usec) / 1e6 if isinstance(usec, int) and usec > 0 else None

    def _close(self) -> None:
        self._release_inhibitor()
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _call(self, msg: Any, timeout: float = 10.0) -> Any:
        """Send a method call and return the reply's body; other messages are kept."""
        jeepney = self._jeepney
        serial = next(self._conn.outgoing_serial)
        self._conn.send(msg, serial=serial)
        reply_serial = jeepney.HeaderFields.reply_serial
        while True:
            reply = self._conn.receive(timeout=timeout)
            if reply.header.fields.get(reply_serial) == serial:
                return self._unwrap(reply)
            self._pending.append(reply)

    def _next_message(self) -> Any:
        if self._pending:
            return self._pending.pop(0)
        try:
            return self._conn.receive(timeout=0.5)
        except TimeoutError:
            return None

    def _handle(self, msg: Any) -> None:
        jeepney = self._jeepney
        header = msg.header
        if header.message_type != jeepney.MessageType.signal:
            return
        fields = header.fields
        member = fields.get(jeepney.HeaderFields.member)
        sender = fields.get(jeepney.HeaderFields.sender)
        if member == "NameOwnerChanged" and sender == _BUS:
            name, _old, new = msg.body
            if name == LOGIND:  # logind restarted: a lock taken from the old one means nothing
                self._owner = new or None
                self._release_inhibitor()
                if new:
                    self._take_inhibitor_or_log()
            return
        if member != "PrepareForSleep" or fields.get(jeepney.HeaderFields.interface) != _MANAGER:
            return
        if self._owner is None or sender != self._owner:
            self.ignored += 1
            _log.warning(
                "ascend_safe: ignored a PrepareForSleep signal from %s, which is not logind (%s)",
                sender,
                self._owner,
            )
            return
        if msg.body[0]:
            try:
                self._on_sleep()
            except Exception as exc:
                _log.error("ascend_safe: preparing for sleep failed: %s", exc)
            finally:
                self._release_inhibitor()  # always: logind must not wait for us in vain
                self.sleeps += 1
        else:
            self._take_inhibitor_or_log()
            try:
                self._on_wake()
            except Exception as exc:
                _log.error("ascend_safe: resuming after sleep failed: %s", exc)

    # -- the inhibitor ----------------------------------------------------------------------

    def _take_inhibitor(self) -> None:
        if self._fd is not None:
            return
        jeepney = self._jeepney
        manager = jeepney.DBusAddress(_PATH, bus_name=LOGIND, interface=_MANAGER)
        msg = jeepney.new_method_call(
            manager, "Inhibit", "ssss", ("sleep", self._who, self._why, "delay")
        )
        handle = self._call(msg)[0]
        fd = int(handle.to_raw_fd())
        os.set_inheritable(fd, False)
        with _fds_lock:
            self._fd = fd
            _open_fds.add(fd)

    def _take_inhibitor_or_log(self) -> None:
        try:
            self._take_inhibitor()
        except Exception as exc:
            _log.error(
                "ascend_safe: cannot take the logind sleep inhibitor again: %s: %s",
                type(exc).__name__,
                exc,
            )

    def _release_inhibitor(self) -> None:
        with _fds_lock:
            fd, self._fd = self._fd, None
            if fd is None:
                return
            _open_fds.discard(fd)
        try:
            os.close(fd)
        except OSError:
            pass


def _connect_error(bus: str, exc: BaseException) -> BaseException:
    if isinstance(exc, ImportError):
        return exc
    where = "the system bus" if bus == "SYSTEM" else f"the D-Bus bus {bus!r}"
    return ConnectionError(
        f"cannot take a systemd-logind sleep inhibitor on {where}: {exc}. Check that "
        "systemd-logind runs and that this user may take a 'delay' inhibitor lock "
        "(systemd-inhibit --what=sleep --mode=delay true), or use the signal source or "
        "direct calls instead"
    )

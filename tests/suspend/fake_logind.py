"""A private D-Bus bus and a fake systemd-logind on it, written with jeepney.

:class:`PrivateBus` runs ``dbus-daemon`` with a session-like configuration on a unix socket in a
temporary directory. :class:`FakeLogind` owns ``org.freedesktop.login1`` there, answers
``Inhibit(what, who, why, mode)`` with the write end of a pipe (as logind does with a FIFO), emits
``PrepareForSleep`` and checks, like logind, that every ``delay`` inhibitor is closed within the
delay. :func:`forge_prepare_for_sleep` sends the same signal from another connection.
"""

from __future__ import annotations

import os
import queue
import select
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from jeepney import (
    DBusAddress,
    HeaderFields,
    MatchRule,
    message_bus,
    new_error,
    new_method_return,
    new_signal,
)
from jeepney.io.threading import DBusRouter, Proxy, open_dbus_connection

LOGIND = "org.freedesktop.login1"
PATH = "/org/freedesktop/login1"
MANAGER = "org.freedesktop.login1.Manager"
PROPERTIES = "org.freedesktop.DBus.Properties"

_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def dbus_daemon() -> str | None:
    """The ``dbus-daemon`` executable, or None."""
    return shutil.which("dbus-daemon") or (
        "/usr/bin/dbus-daemon" if os.access("/usr/bin/dbus-daemon", os.X_OK) else None
    )


class PrivateBus:
    """A ``dbus-daemon`` of our own; :attr:`address` is its D-Bus address."""

    def __init__(self) -> None:
        executable = dbus_daemon()
        if executable is None:
            raise FileNotFoundError("dbus-daemon is not installed")
        self.directory = tempfile.mkdtemp(prefix="ascend_safe-dbus-")
        socket_path = os.path.join(self.directory, "bus")
        config = os.path.join(self.directory, "bus.conf")
        with open(config, "w", encoding="utf-8") as handle:
            handle.write(_CONFIG.format(socket=socket_path))
        self.process = subprocess.Popen(
            [executable, f"--config-file={config}", "--nofork", "--nopidfile", "--print-address"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line:
            error = self.process.stderr.read() if self.process.stderr else ""
            self.close()
            raise RuntimeError(f"dbus-daemon did not start: {error}")
        self.address = line

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class Inhibitor:
    """One ``delay`` lock handed out: the read end of its pipe sees EOF once it is closed."""

    client: str
    read_fd: int
    released: bool = False


@dataclass
class SleepReport:
    """What one announced sleep saw."""

    inhibitors: int
    released_in_time: int
    waited: float
    late: list[str] = field(default_factory=list)


class FakeLogind:
    """Owns ``org.freedesktop.login1`` on *address*; hands out inhibitors; announces sleeps."""

    def __init__(self, address: str, *, delay: float = 5.0) -> None:
        self.delay = delay
        self._conn = open_dbus_connection(address, enable_fds=True)
        self._router = DBusRouter(self._conn)
        self._calls: queue.Queue[Any] = queue.Queue()
        rule = MatchRule(type="method_call", interface=MANAGER, member="Inhibit")
        self._filter = self._router.filter(rule, queue=self._calls)
        rule = MatchRule(type="method_call", interface=PROPERTIES, member="Get", path=PATH)
        self._properties = self._router.filter(rule, queue=self._calls)
        # own the name only once calls to it are caught (a client may call at once)
        reply = Proxy(message_bus, self._router, timeout=10).RequestName(LOGIND, 4)
        assert reply == (1,), f"could not own {LOGIND}: {reply}"
        self._lock = threading.Lock()
        self.inhibitors: list[Inhibitor] = []
        self.inhibit_calls = 0
        #: (who, why) of every Inhibit call.
        self.requests: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def unique_name(self) -> str:
        return str(self._conn.unique_name)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self._calls.get(timeout=0.1)
            except queue.Empty:
                continue
            if msg.header.fields.get(HeaderFields.member) == "Get":
                self._answer_property(msg)
                continue
            what, who, why, mode = msg.body
            assert (what, mode) == ("sleep", "delay"), msg.body
            read_fd, write_fd = os.pipe()
            try:
                self._router.send(new_method_return(msg, "h", (write_fd,)))
            finally:
                os.close(write_fd)  # the client's copy is now the only one
            with self._lock:
                self.inhibit_calls += 1
                self.requests.append((who, why))
                self.inhibitors.append(
                    Inhibitor(str(msg.header.fields[HeaderFields.sender]), read_fd)
                )

    def _answer_property(self, msg: Any) -> None:
        interface, name = msg.body
        if (interface, name) == (MANAGER, "InhibitDelayMaxUSec"):
            self._router.send(new_method_return(msg, "v", (("t", int(self.delay * 1e6)),)))
        else:
            self._router.send(
                new_error(msg, "org.freedesktop.DBus.Error.UnknownProperty", "s", (name,))
            )

    def held(self) -> int:
        """Inhibitors not released yet (a pipe whose write end is still open somewhere)."""
        with self._lock:
            items = [i for i in self.inhibitors if not i.released]
        for item in items:
            readable, _, _ = select.select([item.read_fd], [], [], 0)
            if readable and os.read(item.read_fd, 1) == b"":
                self._mark_released(item)
        with self._lock:
            return sum(not i.released for i in self.inhibitors)

    def _mark_released(self, item: Inhibitor) -> None:
        with self._lock:
            item.released = True
        os.close(item.read_fd)

    def wait_held(self, count: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.held() == count:
                return True
            time.sleep(0.005)
        return self.held() == count

    def emit(self, sleeping: bool) -> None:
        emitter = DBusAddress(PATH, interface=MANAGER)
        self._router.send(new_signal(emitter, "PrepareForSleep", "b", (sleeping,)))

    def sleep(self) -> SleepReport:
        """Announce a sleep and wait (up to the delay) for every inhibitor to be released."""
        self.held()
        with self._lock:
            pending = [i for i in self.inhibitors if not i.released]
        start = time.monotonic()
        self.emit(True)
        deadline = start + self.delay
        waiting = {i.read_fd: i for i in pending}
        while waiting and time.monotonic() < deadline:
            readable, _, _ = select.select(list(waiting), [], [], deadline - time.monotonic())
            for fd in readable:
                if os.read(fd, 1) == b"":
                    self._mark_released(waiting.pop(fd))
        return SleepReport(
            inhibitors=len(pending),
            released_in_time=len(pending) - len(waiting),
            waited=time.monotonic() - start,
            late=[i.client for i in waiting.values()],
        )

    def wake(self) -> None:
        self.emit(False)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._filter.close()
        self._properties.close()
        self._router.close()
        self._conn.close()
        with self._lock:
            for item in self.inhibitors:
                if not item.released:
                    item.released = True
                    os.close(item.read_fd)


def forge_prepare_for_sleep(address: str, destination: str, sleeping: bool = True) -> str:
    """Send ``PrepareForSleep`` from a connection that is not logind, straight to
    *destination* (a unicast signal reaches it whatever its match rules). Returns the
    forger's unique name."""
    with open_dbus_connection(address) as conn:
        msg = new_signal(DBusAddress(PATH, interface=MANAGER), "PrepareForSleep", "b", (sleeping,))
        msg.header.fields[HeaderFields.destination] = destination
        conn.send(msg)
        return str(conn.unique_name)

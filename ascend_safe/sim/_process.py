"""Processes: the audit hook for process creation during async work, hibernation."""

from __future__ import annotations

import sys
from typing import Any

from . import _slots
from ._core import Core

__all__ = ["ProcessDomain"]

#: Audit events that create a process (CANN forbids this while async memory work is in flight).
_PROCESS_EVENTS = frozenset(
    {"os.fork", "os.forkpty", "os.system", "os.posix_spawn", "os.spawn", "subprocess.Popen"}
)


class ProcessDomain(Core):
    """Processes: the audit hook for process creation during async work, hibernation."""

    def on_process_created(self, event: str) -> None:
        """Audit hook body: a process is being created; flag it if async memory work is queued."""
        if self.pending_memory_tasks > 0:
            self.violate(
                "process_created_during_async",
                f"{event} while {self.pending_memory_tasks} memcpy_async/memset_async task(s) "
                "were still in flight; synchronize streams before creating processes",
                api=event,
            )

    def hibernate(self) -> None:
        """A system sleep: devices set in this process are flagged and (by default) lost; a
        device another process of the machine holds (a process slot) is flagged too."""
        others = _slots.other_holders(self.config.slot_dir())
        with self.lock:
            active = [d for d in self.devices.values() if d.refcount > 0]
            if active:
                self.violate(
                    "hibernate_with_active_device",
                    f"system sleep while devices {[d.index for d in active]} were set; stop "
                    "device work and release devices before hibernation",
                    api="hibernate",
                )
            for index, pids in sorted(others.items()):
                self.violate(
                    "hibernate_with_active_device",
                    f"system sleep while process(es) {sorted(pids)} held device {index}; stop "
                    "device work and release devices before hibernation",
                    api="hibernate",
                )
            if self.config.lose_device_on_hibernate:
                for device in active:
                    device.lost = True
                    self._drop_device_work(device.index)

    def _install_hook(self) -> None:
        if self.hook_installed:
            return
        self.hook_installed = True

        def hook(event: str, args: tuple[Any, ...]) -> None:
            if event not in _PROCESS_EVENTS:
                return
            if event == "os.posix_spawn" and sys._getframe(1).f_code.co_name == "_posix_spawn":
                return  # subprocess.Popen using posix_spawn: already seen as subprocess.Popen
            try:
                self.on_process_created(event)
            except Exception:
                pass

        sys.addaudithook(hook)
        self._watch_fork_exec()

    def _watch_fork_exec(self) -> None:
        """See process starts that raise no audit event (multiprocessing's spawn and
        forkserver launchers call ``_posixsubprocess.fork_exec`` directly)."""
        try:
            import _posixsubprocess
        except ImportError:  # not POSIX
            return
        original = _posixsubprocess.fork_exec
        audited_caller = "_execute_child"  # subprocess.Popen: already seen by the audit hook

        def fork_exec(*args: Any, **kwargs: Any) -> Any:
            if sys._getframe(1).f_code.co_name != audited_caller:
                try:
                    self.on_process_created("_posixsubprocess.fork_exec")
                except Exception:
                    pass
            return original(*args, **kwargs)

        _posixsubprocess.fork_exec = fork_exec

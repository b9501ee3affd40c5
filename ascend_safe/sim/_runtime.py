"""Init, finalize, versions and devices: the top layer, which tears everything down.

pyACL: ``py_init_acl.cpp``, ``rt/rt_device.cpp``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Optional

from . import _slots
from ._applog import LogDomain
from ._buffer import BufferDomain
from ._callback import CallbackDomain
from ._codes import (
    INVALID_FILE,
    INVALID_PARAM,
    PARSE_FILE,
    REPEAT_FINALIZE,
    REPEAT_INITIALIZE,
    RT_CONTEXT_RELEASE_ERROR,
    RT_DRV_INTERNAL_ERROR,
    RT_NO_DEVICE,
    RT_OVER_LIMIT,
    RT_STREAM_SYNC_TIMEOUT,
)
from ._context import ContextDomain
from ._core import Fail
from ._media import MediaDomain
from ._memory import MemoryDomain
from ._model import ModelDomain
from ._objects import Device
from ._process import ProcessDomain

__all__ = ["Simulator"]

#: The CANN version the simulated machine reports (aclsysGetCANNVersion).
_CANN_VERSION = "9.0.0"

#: api_error.cc DeviceReset: RT_ERROR_CONTEXT_DEL, "The device has not been set or has already
#: been reset" (ACL_ERROR_RT_CONTEXT_RELEASE_ERROR).
_NOT_SET = (
    "device {0} has not been set in this process (or was already reset to refcount 0); "
    "reset_device only undoes a set_device"
)


class Simulator(
    ContextDomain,
    ModelDomain,
    MemoryDomain,
    BufferDomain,
    ProcessDomain,
    MediaDomain,
    CallbackDomain,
    LogDomain,
):
    """Init, finalize, versions and devices: the top layer, which tears everything down."""

    def reset(self) -> None:
        """Drop all state (stopping stream work, releasing slots) and re-read the environment."""
        with self.lock:
            for stream in list(self.all_streams):
                self._cancel_stream(stream)
            for device in self.devices.values():
                if device.slot_fd is not None:
                    _slots.release(device.slot_fd)
                    device.slot_fd = None
            self.released.set()
            self.mem_cond.notify_all()
            self._drop_usage()
            record_file = self.config.record_file
            self._init_state()
            self.call_counts.clear()
        self._truncate_record_file(record_file)
        self._truncate_record_file(self.config.record_file)

    def after_fork_in_child(self) -> None:
        """Runs in a forked child: fresh locks, inherited slot fds closed, parent use noted."""
        super().after_fork_in_child()
        fds = [d.slot_fd for d in self.devices.values() if d.slot_fd is not None]
        for device in self.devices.values():
            device.slot_fd = None
            device.ledger = None  # the parent's; the slots module closed its descriptor
        _slots.close_inherited(fds)

    def _release_device(self, device: Device, why: str, report: bool = True) -> None:
        """Free everything of *device* (reset to refcount 0); report leftovers as teardown_order."""
        d = device.index
        for stream in [s for s in self.all_streams if s.device == d]:
            self._cancel_stream(stream)
        contexts = [c for c in self.contexts.values() if c.device == d]
        explicit_ctx = [c for c in contexts if not c.default]
        explicit_streams = [s for s in self.streams.values() if s.device == d]
        events = [e for e in self.events.values() if e.device == d]
        memory = [a for a in self.allocs.values() if a.device == d]
        models = [m for m in self.models.values() if m.device == d]
        leftovers = []
        for label, items in (
            ("model", models),
            ("explicit context", explicit_ctx),
            ("explicit stream", explicit_streams),
            ("event", events),
            ("memory block", memory),
        ):
            if items:
                leftovers.append(f"{len(items)} {label}(s)")
        if leftovers and report:
            self.violate(
                "teardown_order",
                f"{why} of device {d} while {', '.join(leftovers)} were still live; unload "
                "models, destroy events, streams, memory and contexts first",
            )
        self._release_models(d)
        for stream in explicit_streams:
            self._destroy_stream_now(stream)
        for event in events:
            self.events.pop(event.handle, None)
            self.dead[event.handle] = "event"
        for alloc in memory:
            self._free_alloc(alloc)
        for ctx in contexts:
            self._drop_context(ctx)
        device.default_context = None
        device.refcount = 0
        device.lost = False
        if device.slot_fd is not None:
            _slots.release(device.slot_fd)
            device.slot_fd = None

    def _finalize_now(self) -> None:
        set_devices = [d.index for d in self.devices.values() if d.refcount > 0]
        live = self.live_handles()
        live.pop("device", None)
        live.pop("thread", None)  # threads are not ACL resources; finalize leaves them alone
        if set_devices or live:
            parts = [f"devices {set_devices} still set"] if set_devices else []
            parts += [f"{len(v)} {k}" for k, v in live.items()]
            self.violate(
                "teardown_order",
                f"acl.finalize while {', '.join(parts)}; the simulator released them",
                api="finalize",
            )
        for device in self.devices.values():
            self._release_device(device, "finalize", report=False)
        for ctx in list(self.contexts.values()):
            self._drop_context(ctx)
        for alloc in list(self.allocs.values()):
            self._free_alloc(alloc)
        for buf in list(self.buffers.values()):
            self.buffers.pop(buf.handle)
            self.dead[buf.handle] = "data_buffer"
        self._drop_host_objects()
        self._drop_descriptors()
        self.init_count = 0

    # ================================================================= top level acl.*

    def api_init(self, config_path: Optional[str] = None) -> tuple[()]:
        if config_path:
            if not os.path.isfile(config_path):
                raise Fail(INVALID_FILE, f"config file {config_path!r} does not exist")
            try:
                with open(config_path, encoding="utf-8") as handle:
                    json.load(handle)
            except (OSError, ValueError) as exc:
                raise Fail(PARSE_FILE, f"config file {config_path!r} is not JSON: {exc}") from None
        self.init_count += 1
        self.ever_initialized = True
        self._install_hook()
        if self.init_count > 1:
            raise Fail(REPEAT_INITIALIZE, "acl.init was already called (refcount incremented)")
        return ()

    def api_finalize(self) -> tuple[()]:
        if self.init_count == 0:
            raise Fail(REPEAT_FINALIZE, "acl.finalize without a matching acl.init")
        self._finalize_now()
        return ()

    def api_finalize_reference(self) -> tuple[int]:
        if self.init_count == 0:
            raise Fail(REPEAT_FINALIZE, "acl.finalize_reference with init refcount 0")
        if self.init_count == 1:
            self._finalize_now()
        else:
            self.init_count -= 1
        return (self.init_count,)

    def api_get_version(self) -> tuple[int, int, int]:
        return (1, 17, 0)

    def api_get_soc_name(self) -> Optional[str]:
        return self.config.soc_name

    def api_get_recent_err_msg(self) -> Optional[str]:
        text = self.tls.error
        self.tls.error = None
        return text

    def api_get_cann_version(self, pkg: int) -> tuple[dict[str, str]]:
        # src/acl/aclrt_impl/acl.cpp aclsysGetCANNVersionImpl: a name outside
        # aclCANNPackageName -> ACL_ERROR_INVALID_PARAM. Every field of aclCANNPackageVersion
        # is a char array, so pyACL (py_init_acl.cpp GetPyDictFromVersion) returns strings;
        # on failure the zeroed struct gives six empty strings (ApiSpec outs).
        if not 0 <= pkg <= 7:
            raise Fail(INVALID_PARAM, f"package name {pkg} is out of range 0..7")
        major, minor, release = _CANN_VERSION.split(".")
        return (
            {
                "version": _CANN_VERSION,
                "major_version": major,
                "minor_version": minor,
                "release_version": release,
                "patch_version": "0",
                "reserved": "",
            },
        )

    # ================================================================= acl.rt: device

    def api_set_device(self, device_id: int) -> tuple[()]:
        device = self._device(device_id)
        if device.lost:
            self.violate(
                "use_after_device_lost",
                f"set_device({device_id}) on a device lost in a system sleep; reset it first",
            )
            raise Fail(RT_NO_DEVICE, f"device {device_id} is unavailable (lost across sleep)")
        if device.refcount == 0:
            try:
                fd = _slots.acquire(self.config.slot_dir(), device_id, self.config.process_limit())
            except OSError as exc:
                raise Fail(RT_DRV_INTERNAL_ERROR, str(exc)) from None
            if fd is None:
                raise Fail(
                    RT_OVER_LIMIT,
                    f"device {device_id} already has {self.config.process_limit()} processes "
                    "using it (per-device process limit)",
                )
            device.slot_fd = fd
            device.default_context = self._new_context(device_id, default=True)
        device.refcount += 1
        self.tls.context = device.default_context
        return ()

    def api_reset_device(self, device_id: int) -> tuple[()]:
        with self.lock:
            device = self._device(device_id)
            if device.refcount == 0:
                raise Fail(RT_CONTEXT_RELEASE_ERROR, _NOT_SET.format(device_id))
            device.refcount -= 1
            if device.refcount > 0:
                return ()
            waits = [
                (s, s.submitted) for s in self.all_streams if s.device == device_id and not s.closed
            ]
        for stream, target in waits:
            self._wait_stream(stream, target, None)
        with self.lock:
            if device.refcount == 0:
                self._release_device(device, "reset_device")
        return ()

    def api_reset_device_force(self, device_id: int) -> tuple[()]:
        device = self._device(device_id)
        if device.refcount == 0:
            raise Fail(RT_CONTEXT_RELEASE_ERROR, _NOT_SET.format(device_id))
        self._release_device(device, "reset_device_force")
        return ()

    def api_get_device(self) -> tuple[int]:
        return (self._current().device,)

    def api_get_device_count(self) -> tuple[int]:
        return (self.config.device_count,)

    def api_get_run_mode(self) -> tuple[int]:
        return (self.config.run_mode,)

    def _sync_device(self, timeout: Optional[float]) -> tuple[()]:
        with self.lock:
            device = self._current().device
            waits = [(s, s.submitted) for s in self.all_streams if s.device == device]
        deadline = None if timeout is None else time.monotonic() + timeout
        for stream, target in waits:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._wait_stream(stream, target, left):
                raise Fail(RT_STREAM_SYNC_TIMEOUT, "device synchronization timed out")
        return ()

    def api_synchronize_device(self) -> tuple[()]:
        return self._sync_device(None)

    def api_synchronize_device_with_timeout(self, ms: int) -> tuple[()]:
        return self._sync_device(self._timeout(ms))

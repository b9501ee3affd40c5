"""Device, host and DVPP memory: allocate, free, copy, set, report (pyACL ``rt_memory.cpp``).

pyACL: ``rt/rt_memory.cpp``.
"""

from __future__ import annotations

import ctypes
import time
from typing import Optional

from . import _slots
from ._alloc import GUARD, Alloc, is_device_address, round_size
from ._codes import (
    INVALID_PARAM,
    RT_DRV_INTERNAL_ERROR,
    RT_FEATURE_NOT_SUPPORT,
    RT_INVALID_MEMORY_TYPE,
    RT_MEMORY_ALLOCATION,
    RT_MEMORY_FREE,
    RT_PARAM_INVALID,
)
from ._core import Fail
from ._objects import Device, Task
from ._stream import StreamDomain

__all__ = ["MemoryDomain"]

#: Host addresses below this are never valid memory (null page and friends).
_LOW_HOST = 0x10000
#: Freed malloc_host blocks stay allocated (quarantined) up to this many bytes, so a stale
#: pointer into one is recognised instead of aliasing new memory.
_QUARANTINE_BYTES = 64 << 20
_MEM_ATTR_MAX = 17
_SIZE_MAX = (1 << 64) - 1
#: aclrtMemAttr values (include/external/acl/acl_rt.h) naming DDR and HBM memory; 12..17 are
#: the generic ACL_MEM_* attributes (the device's own memory, whatever it is).
_DDR_ATTRS = frozenset({0, 2, 3, 6, 7})
_HBM_ATTRS = frozenset({1, 4, 5, 8, 9, 10, 11})
#: memory.cpp MemcpyKindTranslate accepts ACL_MEMCPY_HOST_TO_HOST (0) .. HOST_TO_BUF_TO_DEVICE
#: (5); INNER_ and INTER_DEVICE_TO_DEVICE (6, 7) fall to its default branch: 100000.
_MEMCPY_KIND_MAX = 5
#: Kinds api_error.cc JudgeIsInvolvePageableMemory never treats as pageable: HOST_TO_HOST (0)
#: and DEVICE_TO_DEVICE (3).
_NEVER_PAGEABLE_KINDS = frozenset({0, 3})
#: A blocked RC-mode malloc re-reads the shared ledger this often (first, most), for frees made
#: by other processes; frees in this process wake it at once.
_RC_POLL_FIRST = 0.005
_RC_POLL_MAX = 0.05


class MemoryDomain(StreamDomain):
    """Device, host and DVPP memory: allocate, free, copy, set, report (pyACL ``rt_memory.cpp``)."""

    def _free_alloc(self, alloc: Alloc) -> None:
        if alloc.pending:
            # On hardware the queued copy races the free: the runtime does not wait for it.
            # The task is not cancelled; it runs against the released block, whose backing
            # bytes stay alive until the last task using it finishes (see _finish).
            self.violate(
                "free_with_pending_work",
                f"{alloc.kind} 0x{alloc.ptr:x} freed while {alloc.pending} queued stream "
                "task(s) still use it; the copy races the free (on hardware it may read or "
                "overwrite whatever reuses the block); synchronize the stream first",
            )
        alloc.freed = True
        self.allocs.pop(alloc.ptr, None)
        if alloc.is_device:
            device = self.devices[alloc.device]
            device.used -= alloc.extent
            self._publish_usage(device)
            if not alloc.pending:
                alloc.drop()
            self.mem_cond.notify_all()
        else:
            self.quarantine.append(alloc)
            self.quarantine_bytes += alloc.extent
            while self.quarantine_bytes > _QUARANTINE_BYTES and len(self.quarantine) > 1:
                old = self.quarantine.popleft()
                self.quarantine_bytes -= old.extent
                self.host_map.remove(old)
                old.drop()

    # ================================================================= acl.rt / media: memory

    # ------------------------------------------------------- the machine-wide memory budget

    def _ledger(self, device: Device) -> _slots.DeviceLedger:
        """The shared ledger of *device* on this simulated machine (opened on first use)."""
        ledger = device.ledger
        if ledger is None:
            try:
                machine = _slots.machine(self.config.slot_dir())
                ledger = device.ledger = machine.ledger(device.index)
            except OSError as exc:
                raise Fail(RT_DRV_INTERNAL_ERROR, str(exc)) from None
        return ledger

    def _try_reserve(self, device: Device, extent: int, sweep: bool) -> Optional[int]:
        """Reserve *extent* bytes machine-wide; None when done, else other processes' bytes."""
        ledger = self._ledger(device)
        try:
            others = ledger.reserve(device.used, extent, self.config.memory_per_device, sweep)
        except OSError as exc:
            raise Fail(RT_DRV_INTERNAL_ERROR, f"simulator memory ledger: {exc}") from None
        if others is None:
            device.used += extent
        return others

    def _publish_usage(self, device: Device) -> None:
        """Tell the other processes how much this one now holds on *device*."""
        if device.ledger is not None:
            try:
                device.ledger.update(device.used)
            except OSError:
                pass  # freeing must not fail; the entry is cleared when this process dies

    def _drop_usage(self) -> None:
        """Give back this process's bytes on every device (all state is being dropped)."""
        for device in self.devices.values():
            device.used = 0
            self._publish_usage(device)

    def _reserve(self, device: Device, kind: str, size: int, extent: int) -> None:
        """Count *extent* bytes against the device's budget, shared by every process of the
        machine; in RC mode wait (``rc_malloc_timeout``) for memory to be freed."""
        others = self._try_reserve(device, extent, sweep=False)
        if others is None:
            return
        others = self._try_reserve(device, extent, sweep=True)  # dead processes give back
        if others is None:
            return
        config = self.config
        if config.run_mode == 0 and config.rc_malloc_blocks:
            generation = self.generation
            deadline = time.monotonic() + config.rc_malloc_timeout
            poll = _RC_POLL_FIRST
            while others is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.violate(
                        "rc_malloc_hang",
                        f"{kind} of {size} bytes blocked {config.rc_malloc_timeout}s for "
                        f"device memory (RC mode hangs until memory is freed)",
                    )
                    raise Fail(RT_MEMORY_ALLOCATION, f"out of device memory for {size} bytes")
                self.mem_cond.wait(min(left, poll))
                poll = min(poll * 2, _RC_POLL_MAX)
                if self.generation != generation:
                    raise Fail(RT_MEMORY_ALLOCATION, f"out of device memory for {size} bytes")
                others = self._try_reserve(device, extent, sweep=True)
            return
        budget = config.memory_per_device
        free = max(0, budget - device.used - others)
        raise Fail(
            RT_MEMORY_ALLOCATION,
            f"out of device memory: {size} bytes requested, {free} of {budget} free on device "
            f"{device.index} (this process holds {device.used}, other processes {others})",
        )

    # ================================================================= acl.rt / media: memory

    def _allocate(self, kind: str, size: int, plus32: bool) -> tuple[int]:
        if size == 0:
            raise Fail(INVALID_PARAM, "size must be > 0")
        if size + (64 if plus32 else 32) > _SIZE_MAX:
            # GetAlignedAndPaddingSize (src/acl/aclrt_impl/memory.cpp): size + padding overflows
            raise Fail(INVALID_PARAM, f"size {size} is too large (size + padding overflows)")
        ctx = self._current()
        device = self._device(ctx.device)
        # DVPP memory: api_impl.cc DevDvppMalloc rounds the size up to 32, with no padding
        extent = round_size(size, plus32 and kind != "dvpp_memory")
        self._reserve(device, kind, size, extent)
        if kind == "dvpp_memory":
            ptr = (device.next_dvpp + 127) // 128 * 128
            device.next_dvpp = ptr + extent + GUARD
        else:
            ptr = (device.next_normal + 63) // 64 * 64
            device.next_normal = ptr + extent + GUARD
        alloc = Alloc(kind, ptr, size, extent, ctx.device)
        try:
            alloc.back(extent)
        except MemoryError:
            device.used -= extent
            self._publish_usage(device)
            raise Fail(RT_MEMORY_ALLOCATION, f"host cannot back {size} bytes") from None
        self.allocs[ptr] = alloc
        self.dev_map.add(alloc)
        return (ptr,)

    def api_malloc(self, size: int, policy: int) -> tuple[int]:
        return self._allocate("device_memory", size, True)

    def api_malloc_align32(self, size: int, policy: int) -> tuple[int]:
        return self._allocate("device_memory", size, False)

    def api_malloc_cached(self, size: int, policy: int) -> tuple[int]:
        return self._allocate("device_memory", size, True)

    def api_dvpp_malloc(self, size: int) -> tuple[int]:
        return self._allocate("dvpp_memory", size, True)

    def api_malloc_host(self, size: int) -> tuple[int]:
        if size == 0:
            raise Fail(INVALID_PARAM, "size must be > 0")
        ctx = self._current()
        if size > self.config.memory_per_device:
            raise Fail(RT_MEMORY_ALLOCATION, f"cannot allocate {size} bytes of host memory")
        # api_impl.cc HostMalloc: the size is rounded up to 32 bytes, with no +32 padding
        extent = round_size(size, False)
        alloc = Alloc("host_memory", 0, size, extent, ctx.device)
        try:
            alloc.back(extent, align=64)
        except MemoryError:
            raise Fail(RT_MEMORY_ALLOCATION, f"cannot back {size} bytes of host memory") from None
        alloc.ptr = alloc.real
        self.allocs[alloc.ptr] = alloc
        self.host_map.add(alloc)
        return (alloc.ptr,)

    def _free(self, ptr: int, kinds: tuple[str, ...], how: str) -> tuple[()]:
        if ptr == 0:
            raise Fail(INVALID_PARAM, "pointer is 0 (NULL)")
        alloc = self.allocs.get(ptr)
        if alloc is not None and alloc.kind in kinds:
            self._free_alloc(alloc)
            return ()
        found = self.dev_map.find(ptr) if is_device_address(ptr) else self.host_map.find(ptr)
        if alloc is None and found is not None and found.ptr == ptr and found.freed:
            self.violate("double_free", f"{found.kind} 0x{ptr:x} was already freed")
            raise Fail(RT_MEMORY_FREE, f"0x{ptr:x} was already freed")
        if alloc is not None:
            detail = f"0x{ptr:x} is {alloc.kind}; {how} only frees {' or '.join(kinds)}"
        else:
            detail = f"0x{ptr:x} is not the start of memory the simulator allocated"
        self.violate("foreign_handle", detail)
        raise Fail(RT_MEMORY_FREE, detail)

    def api_free(self, ptr: int) -> tuple[()]:
        return self._free(ptr, ("device_memory",), "rt.free")

    def api_free_host(self, ptr: int) -> tuple[()]:
        return self._free(ptr, ("host_memory",), "rt.free_host")

    def api_dvpp_free(self, ptr: int) -> tuple[()]:
        return self._free(ptr, ("dvpp_memory",), "media.dvpp_free")

    def _resolve(self, ptr: int, count: int, role: str) -> tuple[int, Optional[Alloc]]:
        """Real address of ``[ptr, ptr+count)`` and the allocation holding it (None: raw host)."""
        if is_device_address(ptr):
            alloc = self.dev_map.find(ptr)
            if alloc is None:
                self.violate(
                    "foreign_handle", f"{role} 0x{ptr:x} is not inside any device allocation"
                )
                raise Fail(RT_PARAM_INVALID, f"{role} 0x{ptr:x} is not allocated device memory")
        else:
            alloc = self.host_map.find(ptr)
            if alloc is None:
                if ptr < _LOW_HOST:
                    self.violate("foreign_handle", f"{role} 0x{ptr:x} is not a valid address")
                    raise Fail(RT_PARAM_INVALID, f"{role} 0x{ptr:x} is not a valid address")
                return ptr, None
        if alloc.freed:
            self.violate("stale_handle", f"{role} 0x{ptr:x} points into freed {alloc.kind}")
            raise Fail(RT_PARAM_INVALID, f"{role} 0x{ptr:x} points into freed memory")
        self._check_lost(alloc.device)
        offset = ptr - alloc.ptr
        if offset + count > alloc.extent:
            # Beyond the reserved extent the bytes belong to nothing (or to another block):
            # the runtime does not check, the device faults or corrupts another allocation.
            # The simulator cannot write there, so it refuses and records the overrun.
            self.violate(
                "out_of_bounds",
                f"{role} range 0x{ptr:x}+{count} runs past the {alloc.extent}-byte reserved "
                f"extent of the {alloc.size}-byte {alloc.kind} at 0x{alloc.ptr:x}",
            )
            raise Fail(
                RT_PARAM_INVALID,
                f"{role} range 0x{ptr:x}+{count} overruns the {alloc.size}-byte allocation "
                f"at 0x{alloc.ptr:x} (reserved extent {alloc.extent} bytes)",
            )
        if offset + count > alloc.size:
            # The runtime pads every block (size rounded up to 32, plus 32) and checks no
            # bounds: the padding is usable, but only the requested size is documented.
            self.documented(
                "only the requested size of an allocation may be accessed",
                f"{role} range 0x{ptr:x}+{count} goes past the {alloc.size} requested bytes "
                f"of {alloc.kind} 0x{alloc.ptr:x} into its padding ({alloc.extent} reserved)",
                RT_PARAM_INVALID,
            )
        return alloc.real + offset, alloc

    def _check_memset(self, ptr: int, max_count: int, count: int) -> tuple[int, Optional[Alloc]]:
        # aclrtMemset(Async)Impl: NULL -> 100000; the runtime: count > max -> 107000.
        if ptr == 0:
            raise Fail(INVALID_PARAM, "pointer is 0 (NULL)")
        if count > max_count:
            raise Fail(RT_PARAM_INVALID, f"count {count} exceeds max_count {max_count}")
        self._current()
        return self._resolve(ptr, count, "dst")

    def api_memset(self, ptr: int, max_count: int, value: int, count: int) -> tuple[()]:
        if count == 0:  # aclrtMemsetImpl returns success before any check
            return ()
        real, _ = self._check_memset(ptr, max_count, count)
        ctypes.memset(real, value & 0xFF, count)
        return ()

    def api_memset_async(
        self, ptr: int, max_count: int, value: int, count: int, stream_handle: int
    ) -> tuple[()]:
        if count == 0:  # aclrtMemsetAsyncImpl returns success before any check
            return ()
        real, alloc = self._check_memset(ptr, max_count, count)
        stream = self._stream_of_context(stream_handle)
        byte = value & 0xFF

        def run() -> None:
            ctypes.memset(real, byte, count)

        allocs = (alloc,) if alloc is not None else ()
        self._submit(stream, Task(run, allocs=allocs, is_memory=True))
        return ()

    def _check_copy(
        self, dst: int, dest_max: int, src: int, count: int, kind: int
    ) -> tuple[int, Optional[Alloc], int, Optional[Alloc]]:
        # aclrtMemcpy(Async)Impl (src/acl/aclrt_impl/memory.cpp): NULL and kind -> 100000;
        # the runtime (api_error.cc MemcpyAsync, rtMemcpy): count > dest_max -> 107000.
        if dst == 0 or src == 0:
            raise Fail(INVALID_PARAM, "dst and src must not be 0 (NULL)")
        if not 0 <= kind <= _MEMCPY_KIND_MAX:
            raise Fail(INVALID_PARAM, f"memcpy kind {kind} is out of range 0..5")
        if count > dest_max:
            raise Fail(RT_PARAM_INVALID, f"count {count} exceeds dest_max {dest_max}")
        self._current()
        real_dst, dst_alloc = self._resolve(dst, count, "dst")
        real_src, src_alloc = self._resolve(src, count, "src")
        return real_dst, dst_alloc, real_src, src_alloc

    def api_memcpy(self, dst: int, dest_max: int, src: int, count: int, kind: int) -> tuple[()]:
        if count == 0:
            return ()
        real_dst, _, real_src, _ = self._check_copy(dst, dest_max, src, count, kind)
        ctypes.memmove(real_dst, real_src, count)
        return ()

    def api_memcpy_async(
        self, dst: int, dest_max: int, src: int, count: int, kind: int, stream_handle: int
    ) -> tuple[()]:
        """``rt.memcpy_async`` (runs without the global lock held: a pageable copy waits)."""
        if count == 0:  # aclrtMemcpyAsyncImpl returns success before any check
            return ()
        with self.lock:
            real_dst, dst_alloc, real_src, src_alloc = self._check_copy(
                dst, dest_max, src, count, kind
            )
            for role, address in (("dst", dst), ("src", src)):
                if address % 64:
                    self.documented(
                        "memcpy_async addresses must be 64-byte aligned",
                        f"{role} 0x{address:x} is not 64-byte aligned",
                        INVALID_PARAM,
                    )
            stream = self._stream(stream_handle)
            on_device = any(a is not None and a.is_device for a in (dst_alloc, src_alloc))
            if not on_device and self.config.run_mode == 1:
                raise Fail(
                    RT_FEATURE_NOT_SUPPORT,
                    "host-to-host memcpy_async is not supported in host mode",
                )
            unregistered = dst_alloc is None or src_alloc is None
            if self.config.run_mode == 1:
                pageable = unregistered
            else:
                # RC mode: MemcpyKindAutoCorrect runs only online (host mode), so the kind
                # given is the one JudgeIsInvolvePageableMemory sees: host-to-host and
                # device-to-device copies are never treated as pageable.
                pageable = unregistered and kind not in _NEVER_PAGEABLE_KINDS
            if pageable:
                # api_error.cc MemcpyAsync (MemcpyAsyncCheckLocation, JudgeIsInvolvePageable-
                # Memory, in both run modes): a copy involving pageable host memory becomes an
                # implicit stream synchronize plus a synchronous copy.
                self.documented(
                    "memcpy_async host memory must come from malloc_host",
                    f"{'dst' if dst_alloc is None else 'src'} is ordinary (pageable) host "
                    "memory; the runtime synchronized the stream and copied synchronously",
                    INVALID_PARAM,
                )
                target = stream.submitted
            else:
                self._check_stream_context(stream, stream_handle)
                allocs = tuple(a for a in (dst_alloc, src_alloc) if a is not None)

                def run() -> None:
                    ctypes.memmove(real_dst, real_src, count)

                self._submit(stream, Task(run, allocs=allocs, is_memory=True))
                return ()
        self._wait_stream(stream, target, None)
        with self.lock:
            for alloc in (dst_alloc, src_alloc):
                if alloc is not None and alloc.freed:
                    self.violate(
                        "stale_handle",
                        f"{alloc.kind} 0x{alloc.ptr:x} was freed while memcpy_async waited",
                    )
                    raise Fail(RT_PARAM_INVALID, f"0x{alloc.ptr:x} was freed during the copy")
            ctypes.memmove(real_dst, real_src, count)
        return ()

    def api_get_mem_info(self, attr: int) -> tuple[int, int]:
        # api_error.cc MemGetInfoEx: an attribute outside the enum -> RT_ERROR_INVALID_MEMORY_TYPE
        if not 0 <= attr <= _MEM_ATTR_MAX:
            raise Fail(RT_INVALID_MEMORY_TYPE, f"memory attribute {attr} is out of range 0..17")
        ctx = self._current()
        device = self._device(ctx.device)
        total = self.config.memory_per_device
        hbm_device = self.config.soc_name.startswith(("Ascend910", "Ascend950"))
        # A device has one kind of memory: HBM on Ascend910/950 parts, DDR on the others
        # (Ascend310*). Queries for the other kind report (0, 0); the generic ACL_MEM_*
        # attributes report the device's memory.
        if (attr in _DDR_ATTRS and hbm_device) or (attr in _HBM_ATTRS and not hbm_device):
            return (0, 0)
        try:
            others = self._ledger(device).others(sweep=True)
        except OSError as exc:
            raise Fail(RT_DRV_INTERNAL_ERROR, f"simulator memory ledger: {exc}") from None
        return (max(0, total - device.used - others), total)

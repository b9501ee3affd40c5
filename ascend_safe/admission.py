"""Memory admission: decide before a device allocation whether it can succeed.

In RC mode (run mode ``ACL_DEVICE``: the program runs on the device's own CPU) an
``acl.rt.malloc`` or ``acl.media.dvpp_malloc`` that does not fit does not fail: it waits, without
limit, for memory to come free (CANN's restriction pages; the OS's
``/proc/sys/vm/enable_oom_killer`` makes it exit instead). An OOM policy decides before the call:

- ``raise``: :class:`~ascend_safe.errors.OutOfDeviceMemoryError` at once, saying what was asked
  for, what is free, and the largest live allocations of this process;
- ``wait``: wait up to a timeout for memory to come free (woken when this process frees memory,
  polling ``get_mem_info`` for frees by other processes), then raise as above;
- ``native``: call pyacl straight away (in RC mode, a call that does not fit hangs).

The decision compares the padded size of the allocation (pyacl rounds ``malloc`` and
``dvpp_malloc`` up to a multiple of 32 and adds 32; ``malloc_align32`` only rounds) plus the
allocations this process has admitted but not yet seen return, with the free memory
``get_mem_info`` reports. The check, the reservation and its release happen under one lock per
device, so two threads are never both admitted against the same free bytes. Before refusing or
waiting, the registered cache releasers (see :func:`on_release_cached`) are asked to give cached
blocks back.

Which policy applies: a device's own (:meth:`ascend_safe.Device.set_oom_policy`), else the
process-wide one (:func:`set_oom_policy`), else ``ASCEND_SAFE_OOM_POLICY`` (with
``ASCEND_SAFE_OOM_TIMEOUT`` for ``wait``; read at the first allocation), else the default:
``raise`` in RC mode, ``native`` in host mode (where pyacl returns 207001 itself, which becomes
an ``OutOfDeviceMemoryError`` with the same details).

Limit: processes do not share reservations. Two processes (of this library or not) admitted at
the same instant against the same free memory can both pass; one of their calls then blocks in
RC mode as it would have without admission (only the window between the check and the call).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
import weakref
from typing import Any, Callable, NamedTuple, Optional

from . import _backend, _lifetime, _process, _validate
from .constants import MallocPolicy, MemAttr, RunMode
from .errors import AclError, MemoryWaitTimeoutError, OutOfDeviceMemoryError

__all__ = [
    "ENV_POLICY",
    "ENV_TIMEOUT",
    "OOM_POLICIES",
    "OomSetting",
    "allocate",
    "effective_policy",
    "environment_setting",
    "freed",
    "get_oom_policy",
    "on_release_cached",
    "padded_size",
    "refresh_environment",
    "set_oom_policy",
]

#: The policies :func:`set_oom_policy` and ``ASCEND_SAFE_OOM_POLICY`` accept.
OOM_POLICIES = ("raise", "wait", "native")
ENV_POLICY = "ASCEND_SAFE_OOM_POLICY"
#: Seconds the ``wait`` policy waits when set from the environment (unset: no limit).
ENV_TIMEOUT = "ASCEND_SAFE_OOM_TIMEOUT"

#: The allocation calls that take from the device budget, and whether pyacl adds 32 bytes.
_PLUS32 = {
    "rt.malloc": True,
    "rt.malloc_cached": True,
    "media.dvpp_malloc": True,
    "rt.malloc_align32": False,
}
#: A refusal while this process has admitted calls still running waits this long for them to
#: return first (their bytes may be counted twice meanwhile: once reserved, once in use).
_INFLIGHT_GRACE = 2.0
#: Polling for frees by other processes (first, most), in seconds.
_POLL_FIRST = 0.005
_POLL_MAX = 0.1
#: How many of the largest live allocations an error lists.
_LARGEST = 5


class OomSetting(NamedTuple):
    """A policy and the ``wait`` timeout in seconds (``None``: no limit)."""

    policy: str
    timeout: Optional[float]


def _check_policy(policy: object) -> str:
    if not isinstance(policy, str) or policy.strip().lower() not in OOM_POLICIES:
        raise ValueError(
            f"OOM policy must be one of {', '.join(map(repr, OOM_POLICIES))}, not {policy!r}"
        )
    return policy.strip().lower()


class _Settings:
    """The process-wide setting, the per-device ones, and each device session's run mode."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.process: Optional[OomSetting] = None
        self.devices: weakref.WeakKeyDictionary[Any, OomSetting] = weakref.WeakKeyDictionary()
        self.run_modes: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


_settings = _Settings()


def set_oom_policy(
    policy: Optional[str], *, timeout: Optional[float] = None, device: Any = None
) -> None:
    """Choose what a device allocation that does not fit does: ``"raise"``, ``"wait"`` (up to
    *timeout* seconds; ``None`` or ``math.inf``: no limit) or ``"native"``.

    With *device* (a :class:`~ascend_safe.Device`), only allocations on that session; otherwise
    the whole process. ``None`` drops the setting, so the next level applies again (device,
    process, ``ASCEND_SAFE_OOM_POLICY``, the default: ``raise`` in RC mode, ``native`` in host
    mode).
    """
    seconds = _validate.timeout(timeout, "OOM wait timeout", maximum=None)
    setting = None if policy is None else OomSetting(_check_policy(policy), seconds)
    with _settings.lock:
        if device is None:
            _settings.process = setting
        elif setting is None:
            _settings.devices.pop(device, None)
        else:
            _settings.devices[device] = setting


def get_oom_policy(device: Any = None) -> Optional[OomSetting]:
    """The setting in force for *device* (or the process) from the API or the environment;
    ``None`` when the default applies (``raise`` in RC mode, ``native`` in host mode)."""
    if device is not None and _settings.devices:  # read without the lock: one dict lookup
        setting = _settings.devices.get(device)
        if setting is not None:
            return setting
    setting = _settings.process
    if setting is not None:
        return setting
    return _from_env()


class _EnvCache:
    """``ASCEND_SAFE_OOM_POLICY`` / ``_TIMEOUT``, parsed at first use (reading the environment
    costs about a microsecond, too much for every allocation)."""

    loaded = False
    setting: Optional[OomSetting] = None


_env = _EnvCache()


def _from_env() -> Optional[OomSetting]:
    if not _env.loaded:
        _env.setting = environment_setting()
        _env.loaded = True
    return _env.setting


def refresh_environment() -> None:
    """Read ``ASCEND_SAFE_OOM_POLICY`` and ``ASCEND_SAFE_OOM_TIMEOUT`` again at the next
    allocation (they are read once, at the first one)."""
    _env.loaded = False


def environment_setting() -> Optional[OomSetting]:
    """The setting ``ASCEND_SAFE_OOM_POLICY`` / ``ASCEND_SAFE_OOM_TIMEOUT`` ask for now (None:
    unset); ``ValueError`` for a bad value."""
    return _parse_env(os.environ.get(ENV_POLICY, ""), os.environ.get(ENV_TIMEOUT, ""))


def _parse_env(raw: str, raw_timeout: str) -> Optional[OomSetting]:
    raw, raw_timeout = raw.strip(), raw_timeout.strip()
    if not raw:
        return None
    try:
        policy = _check_policy(raw)
    except ValueError:
        raise ValueError(
            f"{ENV_POLICY}={raw!r} is not valid: use one of {', '.join(OOM_POLICIES)}"
        ) from None
    if not raw_timeout:
        return OomSetting(policy, None)
    try:
        seconds = _validate.timeout(float(raw_timeout), ENV_TIMEOUT, maximum=None)
    except ValueError:
        raise ValueError(
            f"{ENV_TIMEOUT}={raw_timeout!r} is not valid: give seconds >= 0, or 'inf'"
        ) from None
    return OomSetting(policy, seconds)


def _run_mode(device: Any) -> int:
    """The run mode, asked once per device session (the device's context is current)."""
    mode = _settings.run_modes.get(device)
    if mode is None:
        mode = int(_backend.call("rt.get_run_mode", resource=device))
        _settings.run_modes[device] = mode
    return mode


def effective_policy(device: Any) -> OomSetting:
    """The setting that applies to an allocation on *device* (asks pyacl for the run mode when
    no policy is set; the device's context must be current)."""
    setting = get_oom_policy(device)
    if setting is not None:
        return setting
    if _run_mode(device) == RunMode.DEVICE:
        return OomSetting("raise", None)
    return OomSetting("native", None)


# -- cached memory ---------------------------------------------------------------------------

#: Callbacks ``(device_id, nbytes) -> bytes released`` run before an allocation is refused.
_releasers: list[Callable[[int, int], int]] = []


def on_release_cached(callback: Callable[[int, int], int]) -> Callable[[], None]:
    """Register *callback* ``(device_id, nbytes) -> bytes freed``, called before an allocation
    of *nbytes* on *device_id* is refused or made to wait, to give cached device memory back
    (a caching allocator's free blocks). Returns a function that unregisters it.

    It runs in the allocating thread, with no admission lock held; it may free memory through
    the library. An exception from it is not raised: the allocation goes on being decided.
    """
    _releasers.append(callback)

    def unregister() -> None:
        try:
            _releasers.remove(callback)
        except ValueError:
            pass

    return unregister


def _release_cached(device_id: int, nbytes: int) -> int:
    total = 0
    for callback in list(_releasers):
        try:
            total += max(0, int(callback(device_id, nbytes)))
        except Exception:
            pass
    return total


# -- the per-device budget -------------------------------------------------------------------


class _Budget:
    """This process's reservations in flight on one device, under one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.reserved: dict[int, int] = {}
        self.generation = 0
        self.waiters = 0


_budgets: dict[int, _Budget] = {}
_budgets_lock = threading.Lock()
_tokens = itertools.count(1)


def _budget(device_id: int) -> _Budget:
    budget = _budgets.get(device_id)
    if budget is None:
        with _budgets_lock:
            budget = _budgets.setdefault(device_id, _Budget())
    return budget


def _new_budgets_in_child() -> None:
    """In a forked child: the parent's locks may be held by threads that are not here."""
    global _budgets_lock
    _budgets.clear()
    _budgets_lock = threading.Lock()
    _settings.lock = threading.Lock()


_process.on_fork_child(_new_budgets_in_child)


def freed(device_id: int) -> None:
    """Device memory of *device_id* was freed in this process: wake allocations waiting for it."""
    budget = _budgets.get(device_id)
    if budget is not None:
        with budget.lock:
            budget.generation += 1
            if budget.waiters:
                budget.changed.notify_all()


def padded_size(api: str, size: int) -> int:
    """Bytes *api* takes from the device for *size*: rounded up to 32, plus 32 for ``malloc``,
    ``malloc_cached`` and ``dvpp_malloc`` (the 950 series and 1 GB huge pages skip the +32, so
    this may count 32 bytes too many there: on the safe side)."""
    rounded = (size + 31) // 32 * 32
    return rounded + 32 if _PLUS32.get(api, True) else rounded


#: Malloc page policy -> the specific attributes to ask first.
_POLICY_ATTRS: dict[int, tuple[MemAttr, ...]] = {
    MallocPolicy.HUGE_ONLY: (MemAttr.HBM_MEM_HUGE, MemAttr.DDR_MEM_HUGE),
    MallocPolicy.NORMAL_ONLY: (MemAttr.HBM_MEM_NORMAL, MemAttr.DDR_MEM_NORMAL),
    MallocPolicy.HUGE_ONLY_P2P: (MemAttr.HBM_MEM_P2P_HUGE, MemAttr.DDR_MEM_P2P_HUGE),
    MallocPolicy.NORMAL_ONLY_P2P: (MemAttr.HBM_MEM_P2P_NORMAL, MemAttr.DDR_MEM_P2P_NORMAL),
    MallocPolicy.HUGE1G_ONLY: (MemAttr.HBM_MEM_HUGE1G,),
    MallocPolicy.HUGE1G_ONLY_P2P: (MemAttr.HBM_MEM_P2P_HUGE1G,),
}
_GENERAL_ATTRS = (MemAttr.HBM_MEM, MemAttr.DDR_MEM)
_DVPP_ATTRS = (MemAttr.HBM_MEM_HUGE, MemAttr.DDR_MEM_HUGE, *_GENERAL_ATTRS)


def _attributes(api: str, malloc_policy: int) -> tuple[MemAttr, ...]:
    """The ``get_mem_info`` attributes to ask, best first: one the hardware lacks reports 0/0
    (the runtime maps HBM kinds to DDR on devices without HBM: ``npu_driver_mem.cc``)."""
    if api == "media.dvpp_malloc":
        return _DVPP_ATTRS
    return (*_POLICY_ATTRS.get(malloc_policy & 0xFF, ()), *_GENERAL_ATTRS)


def _mem_info(attrs: tuple[MemAttr, ...], resource: object) -> tuple[int, int]:
    """``(free, total)`` of the first attribute the hardware has (``(0, 0)``: none)."""
    for attr in attrs:
        free, total = _backend.call("rt.get_mem_info", int(attr), resource=resource)
        if total:
            return int(free), int(total)
    return 0, 0


# -- the decision ----------------------------------------------------------------------------


class _Refusal(NamedTuple):
    free: int
    total: int
    inflight: int


def allocate(
    api: Optional[str],
    device: Any,
    size: int,
    call: Callable[[], int],
    *,
    malloc_policy: int = 0,
    resource: object = None,
) -> int:
    """Run *call* (the pyacl allocation *api* of *size* bytes on *device*, whose context is
    current) if the OOM policy admits it, and return its pointer.

    ``api`` None (host memory) calls straight through. An out-of-memory error from the call
    itself gains the same details as a refusal.
    """
    if api is None:
        return call()
    device_id: int = device.id
    setting = effective_policy(device)
    attrs = _attributes(api, malloc_policy)
    extent = padded_size(api, size)
    if setting.policy == "native":
        return _call(call, api, device_id, size, extent, attrs, resource)
    budget = _budget(device_id)
    token = next(_tokens)
    try:  # the reservation is dropped whatever happens, an interrupt included
        _admit(budget, token, setting, api, device_id, size, extent, attrs, resource)
        return _call(call, api, device_id, size, extent, attrs, resource)
    finally:
        with budget.lock:
            if budget.reserved.pop(token, None) is not None:
                budget.generation += 1
                if budget.waiters:
                    budget.changed.notify_all()


def _call(
    call: Callable[[], int],
    api: str,
    device_id: int,
    size: int,
    extent: int,
    attrs: tuple[MemAttr, ...],
    resource: object,
) -> int:
    try:
        return call()
    except OutOfDeviceMemoryError as exc:
        try:
            free, total = _mem_info(attrs, resource)
        except AclError:
            free = total = -1
        exc.add_details(_details(api, device_id, size, extent, free, total, 0, None))
        raise


def _admit(
    budget: _Budget,
    token: int,
    setting: OomSetting,
    api: str,
    device_id: int,
    size: int,
    extent: int,
    attrs: tuple[MemAttr, ...],
    resource: object,
) -> None:
    """Reserve *extent* bytes under *token* once they fit, or raise."""
    start = time.monotonic()
    deadline = start + setting.timeout if setting.timeout is not None else math.inf
    if setting.policy == "raise":
        deadline = start
    flushed = False
    poll = _POLL_FIRST
    while True:
        with budget.lock:
            free, total = _mem_info(attrs, resource)
            inflight = sum(budget.reserved.values())
            if total == 0 or extent + inflight <= free:  # total 0: the device cannot tell
                budget.reserved[token] = extent
                return
            generation = budget.generation
        if not flushed:
            flushed = True
            if _release_cached(device_id, extent):
                continue
        now = time.monotonic()
        # Admitted calls still running may be counted twice (reserved, and already taken from
        # the free memory): while there are some, give them a moment to return and recheck.
        end = max(deadline, start + _INFLIGHT_GRACE) if inflight else deadline
        if now >= end:
            seen = _Refusal(free, total, inflight)
            raise _refusal(setting, api, device_id, size, extent, seen, now - start, resource)
        wait = min(poll, end - now)
        poll = min(poll * 2, _POLL_MAX)
        with budget.lock:
            if budget.generation == generation:
                budget.waiters += 1
                try:
                    budget.changed.wait(wait)
                finally:
                    budget.waiters -= 1


def _refusal(
    setting: OomSetting,
    api: str,
    device_id: int,
    size: int,
    extent: int,
    seen: _Refusal,
    waited: float,
    resource: object,
) -> OutOfDeviceMemoryError:
    if setting.policy == "raise":
        how = "refused before the call (OOM policy 'raise'"
    else:
        how = f"still no room after waiting {waited:.3g}s (OOM policy 'wait'"
    how += "; in RC mode the call would hang until memory is freed)"
    # the 'wait' policy ran out of time: also a TimeoutError
    cls = OutOfDeviceMemoryError if setting.policy == "raise" else MemoryWaitTimeoutError
    err = cls(207001, "acl." + api, None, None if resource is None else repr(resource))
    err.add_details(
        _details(api, device_id, size, extent, seen.free, seen.total, seen.inflight, how)
    )
    return err


def _details(
    api: str,
    device_id: int,
    size: int,
    extent: int,
    free: int,
    total: int,
    inflight: int,
    how: Optional[str],
) -> dict[str, Any]:
    return {
        "device": device_id,
        "requested": size,
        "padded": extent,
        "free": free,
        "total": total,
        "in_flight": inflight,
        "largest": largest_allocations(device_id),
        "decision": how,
    }


def largest_allocations(device_id: int, count: int = _LARGEST) -> list[tuple[str, int]]:
    """``(repr, size)`` of the largest live device allocations of this process on
    *device_id*, largest first (from the lifetime registry)."""
    found: list[tuple[int, str]] = []
    for res in _lifetime.live_resources():
        if getattr(res, "alloc_api", None) is None:
            continue
        try:
            if res.device.id != device_id:  # type: ignore[attr-defined]
                continue
            found.append((int(res.size), repr(res)))  # type: ignore[attr-defined]
        except Exception:
            continue
    found.sort(key=lambda item: -item[0])
    return [(text, nbytes) for nbytes, text in found[:count]]

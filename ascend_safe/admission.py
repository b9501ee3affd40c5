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
``dvpp_malloc`` up to a multiple of 32 and adds 32; ``malloc_align32`` only rounds) with the free
memory ``get_mem_info`` reports. The check and the call happen under one lock per device: a
thread lock, and in RC mode an ``flock`` on ``dev<N>.admission`` in the process-slot directory
(:func:`ascend_safe.slots.open_lock_file`), so neither two threads nor two processes are
admitted against the same free bytes. An admitted call fits, so it returns at once and the lock
is held only briefly; one held longer than 5 s (a call hanging because a program outside
admission took the memory) makes ``raise`` refuse instead of queueing behind it. Before refusing
or waiting, the registered cache releasers (see :func:`on_release_cached`) are asked to give
cached blocks back.

Which policy applies: a device's own (:meth:`ascend_safe.Device.set_oom_policy`), else the
process-wide one (:func:`set_oom_policy`), else ``ASCEND_SAFE_OOM_POLICY`` (with
``ASCEND_SAFE_OOM_TIMEOUT`` for ``wait``; read at the first allocation), else the default:
``raise`` in RC mode, ``native`` in host mode (where pyacl returns 207001 itself, which becomes
an ``OutOfDeviceMemoryError`` with the same details).

Programs that do not use admission (or use ``native``) allocate outside this order; in RC mode
``/proc/sys/vm/enable_oom_killer`` covers them. A model load allocates inside pyacl: ``Model``
admits its work and weight bytes (``acl.mdl.query_size``) the same way.
"""

from __future__ import annotations

import fcntl
import math
import os
import threading
import time
import weakref
from typing import Any, Callable, NamedTuple, Optional, TypeVar

from . import _backend, _lifetime, _process, _validate, slots
from .constants import MallocPolicy, MemAttr, RunMode
from .errors import AclError, MemoryWaitTimeoutError, OutOfDeviceMemoryError

__all__ = [
    "ENV_POLICY",
    "ENV_TIMEOUT",
    "OOM_POLICIES",
    "OomSetting",
    "allocate",
    "checks",
    "effective_policy",
    "environment_setting",
    "freed",
    "get_oom_policy",
    "on_release_cached",
    "padded_size",
    "refresh_environment",
    "set_oom_policy",
]

_T = TypeVar("_T")

#: The policies :func:`set_oom_policy` and ``ASCEND_SAFE_OOM_POLICY`` accept.
OOM_POLICIES = ("raise", "wait", "native")
ENV_POLICY = _process.variable("ASCEND_SAFE_OOM_POLICY", "the OOM policy: raise, wait, native")
#: Seconds the ``wait`` policy waits when set from the environment (unset: no limit).
ENV_TIMEOUT = _process.variable("ASCEND_SAFE_OOM_TIMEOUT", "seconds the 'wait' policy waits")

#: The allocation calls that take from the device budget, and whether pyacl adds 32 bytes.
_PLUS32 = {
    "rt.malloc": True,
    "rt.malloc_cached": True,
    "media.dvpp_malloc": True,
    "rt.malloc_align32": False,
}
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
        self.lock_fds: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


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


def checks(device: Any) -> bool:
    """Whether allocations on *device* are decided before the call (the policy is not
    ``native``); the device's context must be current."""
    return effective_policy(device).policy != "native"


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


# -- the per-device admission lock ----------------------------------------------------------


class _Budget:
    """One device's admission lock in this process, and the wake-up for allocations waiting."""

    def __init__(self) -> None:
        # Reentrant: a free made from inside the allocation call (a deferred release run by
        # the lifetime core) wakes waiters through freed() on the same thread.
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.generation = 0
        self.waiters = 0


_budgets: dict[int, _Budget] = {}
_budgets_lock = threading.Lock()
#: ``(slot directory, device id) -> descriptor`` of the per-device admission lock files.
_lock_files: dict[tuple[str, int], int] = {}
#: How long an admission waits for another process's admitted call to return (its lock):
#: such a call fits, so it does not block unless memory was taken behind admission's back.
_LOCK_PATIENCE = 5.0
_LOCK_POLL_FIRST = 0.0001
_LOCK_POLL_MAX = 0.01


def _budget(device_id: int) -> _Budget:
    budget = _budgets.get(device_id)
    if budget is None:
        with _budgets_lock:
            budget = _budgets.setdefault(device_id, _Budget())
    return budget


def _lock_file(device: Any, device_id: int) -> int:
    """The descriptor of device *device_id*'s admission lock file in the slot directory (found
    once per device session: the directory of the slot that session holds)."""
    fd = _settings.lock_fds.get(device)
    if fd is None:
        key = (slots.slot_dir(), device_id)
        fd = _lock_files.get(key)
        if fd is None:
            fd, _path = slots.open_lock_file(f"dev{device_id}.admission")
            _lock_files[key] = fd
        _settings.lock_fds[device] = fd
    return fd


def _patience(deadline: float, start: float) -> float:
    """Until when to wait for the admission lock: the policy's deadline, at least 5 s."""
    return max(deadline, start + _LOCK_PATIENCE)


def _stuck(api: str, device_id: int, waited: float, who: str) -> OutOfDeviceMemoryError:
    return OutOfDeviceMemoryError(
        207001,
        "acl." + api,
        None,
        None,
        {
            "device": device_id,
            "decision": (
                f"{who} admitted allocation on device {device_id} has not returned after "
                f"{waited:.3g}s (in RC mode it hangs when memory was taken by a program that "
                "does not use admission, e.g. with OOM policy 'native'); refused rather than "
                "queued behind it"
            ),
        },
    )


def _lock_across_processes(fd: int, api: str, device_id: int, deadline: float) -> None:
    """``flock`` *fd* (polling, so the wait is bounded and interruptible) or raise."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    poll = _LOCK_POLL_FIRST
    start = time.monotonic()
    end = _patience(deadline, start)
    while True:
        time.sleep(poll)
        poll = min(poll * 2, _LOCK_POLL_MAX)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            now = time.monotonic()
            if now >= end:
                raise _stuck(api, device_id, now - start, "another process's") from None


def _new_budgets_in_child() -> None:
    """In a forked child: the parent's locks may be held by threads that are not here; the
    lock files' descriptors were closed by the slots module's hook (never unlocked)."""
    global _budgets_lock
    _budgets.clear()
    _lock_files.clear()
    _settings.lock_fds = weakref.WeakKeyDictionary()
    _budgets_lock = threading.Lock()
    _settings.lock = threading.Lock()


_process.on_fork_child(_new_budgets_in_child)


def freed(device_id: int) -> None:
    """Device memory of *device_id* was freed in this process: wake allocations waiting for it."""
    budget = _budgets.get(device_id)
    if budget is not None:
        # Not under the lock, which an allocation holds across its call: a check that read
        # the generation before this free sees it changed and does not wait.
        budget.generation += 1
        if budget.waiters:
            with budget.lock:
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


def allocate(
    api: Optional[str],
    device: Any,
    size: int,
    call: Callable[[], _T],
    *,
    malloc_policy: int = 0,
    resource: object = None,
    extent: Optional[int] = None,
) -> _T:
    """Run *call* (the pyacl allocation *api* of *size* bytes on *device*, whose context is
    current) if the OOM policy admits it, and return what it returns (a pointer).

    ``api`` None (host memory) calls straight through. *extent* is the bytes the call takes
    from the device when not :func:`padded_size` (a model load). An out-of-memory error from
    the call itself gains the same details as a refusal.
    """
    if api is None:
        return call()
    device_id: int = device.id
    setting = effective_policy(device)
    attrs = _attributes(api, malloc_policy)
    if extent is None:
        extent = padded_size(api, size)
    if setting.policy == "native":
        return _call(call, api, device_id, size, extent, attrs, resource)
    shared = _run_mode(device) == RunMode.DEVICE  # only RC mode hangs: only it pays the flock
    start = time.monotonic()
    deadline = start + setting.timeout if setting.timeout is not None else math.inf
    if setting.policy == "raise":
        deadline = start
    budget = _budget(device_id)
    flushed = False
    poll = _POLL_FIRST
    while True:
        # The check and the call under one lock per device: across threads (the RLock) and,
        # in RC mode, across processes (an flock), so two callers are never both admitted
        # against the same free bytes. An admitted call fits, so it returns at once.
        end = _patience(deadline, time.monotonic())
        patience = -1.0 if math.isinf(end) else max(0.0, end - time.monotonic())
        if not budget.lock.acquire(timeout=patience):
            raise _stuck(api, device_id, time.monotonic() - start, "another thread's")
        try:
            fd = _lock_file(device, device_id) if shared else -1
            locked = False
            try:
                if fd >= 0:
                    locked = True  # before the call: an interrupt after it still unlocks
                    _lock_across_processes(fd, api, device_id, deadline)
                generation = budget.generation
                free, total = _mem_info(attrs, resource)
                if total == 0 or extent <= free:  # total 0: the device cannot tell
                    return _call(call, api, device_id, size, extent, attrs, resource)
            finally:
                if locked:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            budget.lock.release()
        if not flushed:
            flushed = True
            if _release_cached(device_id, extent):
                continue
        now = time.monotonic()
        if now >= deadline:
            seen = _Refusal(free, total)
            raise _refusal(setting, api, device_id, size, extent, seen, now - start, resource)
        wait = min(poll, deadline - now)
        poll = min(poll * 2, _POLL_MAX)
        with budget.lock:
            if budget.generation == generation:
                budget.waiters += 1
                try:
                    budget.changed.wait(wait)
                finally:
                    budget.waiters -= 1


def _call(
    call: Callable[[], _T],
    api: str,
    device_id: int,
    size: int,
    extent: int,
    attrs: tuple[MemAttr, ...],
    resource: object,
) -> _T:
    try:
        return call()
    except OutOfDeviceMemoryError as exc:
        try:
            free, total = _mem_info(attrs, resource)
        except AclError:
            free = total = -1
        exc.add_details(_details(api, device_id, size, extent, free, total, None))
        raise


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
        _details(api, device_id, size, extent, seen.free, seen.total, how)
    )
    return err


def _details(
    api: str,
    device_id: int,
    size: int,
    extent: int,
    free: int,
    total: int,
    how: Optional[str],
) -> dict[str, Any]:
    return {
        "device": device_id,
        "requested": size,
        "padded": extent,
        "free": free,
        "total": total,
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

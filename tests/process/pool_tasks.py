"""Worker functions for the pool tests (importable by spawned workers)."""

from __future__ import annotations

import os

import ascend_safe as asf
from ascend_safe import sim


@asf.worker()
def round_trip(payload: bytes) -> tuple[int, int, bytes]:
    dev = asf.current_device()
    with dev.stream() as s, dev.malloc(len(payload)) as mem:
        mem.copy_from(payload, stream=s)
        out = bytearray(len(payload))
        mem.copy_to(out, stream=s)
        s.synchronize()
    return os.getpid(), dev.id, bytes(out)


@asf.worker(leaks="raise")
def leaky(n: int) -> int:
    dev = asf.current_device()
    for _ in range(n):
        dev.malloc(64)
    dev.stream()
    return n


@asf.worker(leaks="warn")
def leaky_warn() -> int:
    asf.current_device().malloc(64)
    return os.getpid()


@asf.worker()
def simulator_state() -> tuple[int, dict[str, list[int]], list[str]]:
    """The simulator's live handles, less the session's pooled staging buffers."""
    handles = sim.live_handles()
    staging = sorted(r.ptr for r in asf.live_resources(internal=True) if r.kind == "staging memory")
    assert handles.pop("host_memory", []) == staging
    return os.getpid(), handles, [v.kind for v in sim.violations()]


@asf.worker(device=1)
def on_device_one() -> int:
    return asf.current_device().id


@asf.worker()
def meet(barrier) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Wait until every worker holds one of these calls: proves they all run at once."""
    barrier.wait(60)
    return os.getpid(), asf.current_device().id


@asf.worker(leaks="raise")
def keep_then_close(seconds: float) -> int:
    """Holds a resource across a sleep, then closes it: never another call's leak."""
    import time

    mem = asf.current_device().malloc(64)
    time.sleep(seconds)
    mem.copy_from(b"\x01" * 64)
    mem.close()
    return os.getpid()


@asf.worker(leaks="warn")
def leaky_then_fails() -> int:
    asf.current_device().stream()
    raise ValueError("the call failed after leaving a stream open")


@asf.worker()
def session_oom_policy() -> tuple[str, float | None] | None:
    setting = asf.get_oom_policy(device=asf.current_device())
    return None if setting is None else (setting.policy, setting.timeout)


@asf.worker()
def device_id(_: object = None) -> int:
    return asf.current_device().id

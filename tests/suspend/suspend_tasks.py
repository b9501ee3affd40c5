"""Units of device work for the suspend tests (importable by spawned pool workers)."""

from __future__ import annotations

import os
import signal

import ascend_safe as asf


def round_trip(dev: asf.Device, stream: asf.Stream, payload: bytes) -> bytes:
    """Copy *payload* to the device and back through *stream*."""
    with dev.malloc(len(payload)) as mem:
        mem.copy_from(payload, stream=stream)
        out = bytearray(len(payload))
        mem.copy_to(out, stream=stream)
        stream.synchronize()
    return bytes(out)


@asf.worker()
def pool_unit(unit_id: int, log_path: str) -> tuple[int, int]:
    """One unit in a pool worker: device work, then one line in the shared log per execution."""
    dev = asf.current_device()
    with dev.stream() as stream:
        payload = unit_id.to_bytes(4, "little") * 16
        assert round_trip(dev, stream, payload) == payload
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{unit_id}\n".encode())
    finally:
        os.close(fd)
    return unit_id, os.getpid()


@asf.worker()
def hold_device() -> int:
    """Open this worker's device session and keep it (worker sessions live across calls)."""
    return asf.current_device().id


def coordinator_state() -> str:
    """The state of this pool worker's coordinator (a plain function: not gated)."""
    coordinator = asf.SuspendCoordinator.active()
    return "none" if coordinator is None else coordinator.state


def fail_next_resume(message: str) -> int:
    """Register a resume callback in this pool worker that fails once (a plain function)."""
    coordinator = asf.SuspendCoordinator.active()
    assert coordinator is not None
    failures = [message]

    def reload() -> None:
        if failures:
            raise RuntimeError(failures.pop())

    coordinator.on_resume(reload)
    return os.getpid()


def meet(barrier) -> int:  # type: ignore[no-untyped-def]
    """Hold one call in every worker at once (proves each worker got one), then open the
    worker's device session."""
    barrier.wait(60)
    return hold_device()


def hold_then_stop() -> None:
    """Open the device, then stop this whole worker process (SIGSTOP): it cannot answer."""
    hold_device()
    os.kill(os.getpid(), signal.SIGSTOP)

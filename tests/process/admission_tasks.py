"""Worker functions for the cross-process admission tests (importable by spawned processes)."""

from __future__ import annotations

import time
from typing import Any

import ascend_safe as asf


def race(policy: str, rounds: int, size: int, barrier: Any, results: Any) -> None:
    """Each round: wait at *barrier* with the other process, ask for *size* bytes under
    *policy*, hold what was admitted until both have decided (raise) or briefly (wait), free it,
    and report ``(round, "admitted" | "refused" | "hang: ...")`` on *results*."""
    asf.set_oom_policy(policy, timeout=30)
    with asf.Device(0) as dev:
        dev.malloc(64).close()  # the run mode and the lock file are ready before the races
        for index in range(rounds):
            barrier.wait()
            mem = None
            try:
                mem = dev.malloc(size)
                outcome = "admitted"
            except asf.OutOfDeviceMemoryError as exc:
                outcome = "refused" if exc.details.get("decision") else f"hang: {exc}"
            if policy == "raise":
                barrier.wait()  # both have decided while the admitted one still holds
            elif mem is not None:
                time.sleep(0.05)  # the other one is waiting meanwhile
            if mem is not None:
                mem.close()
            results.put((index, outcome))
            barrier.wait()

"""Worker functions that run a model loaded once per worker process (importable by workers)."""

from __future__ import annotations

import functools
import os
from typing import Any

import ascend_safe as asf
from ascend_safe import sim

LOADS: list[str] = []


@functools.cache
def load(path: str) -> asf.Model:
    LOADS.append(path)
    return asf.keep(asf.Model(asf.current_device(), path))


@asf.worker(leaks="raise")
def infer(path: str, x: Any) -> tuple[int, int, int, Any]:
    model = load(path)
    (y,) = model.execute([x])
    return os.getpid(), asf.current_device().id, len(LOADS), y


@asf.worker()
def live() -> dict[str, list[int]]:
    handles = sim.live_handles()
    handles.pop("host_memory", None)  # the session's pooled staging buffers
    return handles

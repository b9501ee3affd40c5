"""The model part of ``python -m ascend_safe demo``: a small classifier served by spawned
workers over two devices, each worker loading the model once and reusing it for every batch."""

from __future__ import annotations

import functools
import os
import tempfile
import time
from typing import Any

from . import sim
from ._lifetime import live_resources
from .model import Model
from .workers import current_device, keep, worker, worker_pool

__all__ = ["run"]

BATCH = 8
FEATURES = 64
HIDDEN = 128
CLASSES = 10
_LOADS: list[str] = []


def _weights(np: Any) -> tuple[Any, Any]:
    rng = np.random.default_rng(1234)
    w1 = (rng.standard_normal((FEATURES, HIDDEN)) / 8).astype(np.float32)
    w2 = (rng.standard_normal((HIDDEN, CLASSES)) / 8).astype(np.float32)
    return w1, w2


def _write(path: str, np: Any) -> None:
    w1, w2 = _weights(np)
    sim.write_model(
        path,
        inputs=[("features", "float32", (BATCH, FEATURES))],
        outputs=[("probabilities", "float32", (BATCH, CLASSES)), ("label", "int32", (BATCH,))],
        ops=[
            {"op": "matmul", "weight": w1},
            {"op": "relu"},
            {"op": "matmul", "weight": w2},
            {"op": "softmax"},
            {"op": "output", "name": "probabilities"},
            {"op": "argmax"},
        ],
    )


@functools.cache
def _load(path: str) -> Model:
    _LOADS.append(path)
    return keep(Model(current_device(), path))


@worker(leaks="raise")
def infer(path: str, features: Any) -> tuple[int, int, int, Any, list[str]]:
    """One batch in a worker: (pid, device, model loads so far, labels, open resources)."""
    model = _load(path)
    _, labels = model.execute([features])
    open_now = sorted(type(r).__name__ for r in live_resources())
    return os.getpid(), current_device().id, len(_LOADS), labels, open_now


def run(batches: int, workers: int) -> bool:
    """Serve *batches* batches with *workers* spawned workers over devices 0 and 1; report."""
    try:
        import numpy as np
    except ImportError:
        print("model serving: skipped (needs numpy: pip install numpy)")
        return True
    rng = np.random.default_rng(7)
    inputs = [rng.standard_normal((BATCH, FEATURES)).astype(np.float32) for _ in range(batches)]
    w1, w2 = _weights(np)
    expected = [np.argmax(np.maximum(x @ w1, 0) @ w2, -1) for x in inputs]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "classifier.simmdl")
        _write(path, np)
        print(
            f"model serving: {batches} batches of {BATCH}x{FEATURES} float32 through a 2-layer "
            f"classifier, {workers} spawned workers over devices 0 and 1"
        )
        with worker_pool(workers=workers, devices=[0, 1]) as pool:
            list(pool.map(infer, [path] * workers, inputs[:workers]))  # warm-up: start, load
            started = time.perf_counter()
            results = list(pool.map(infer, [path] * batches, inputs))
            elapsed = time.perf_counter() - started
    correct = sum(bool((r[3] == e).all()) for r, e in zip(results, expected))
    per_worker: dict[int, tuple[int, int, list[str], int]] = {}
    for pid, device, loads, _, open_now in results:
        seen = per_worker.get(pid, (device, loads, open_now, 0))
        per_worker[pid] = (device, max(loads, seen[1]), open_now, seen[3] + 1)
    for pid, (device, loads, open_now, count) in sorted(per_worker.items()):
        print(
            f"  worker {pid} on device {device}: {count} batches, model loaded {loads} time(s); "
            f"open in the worker: {', '.join(open_now)}"
        )
    rate = batches * BATCH / elapsed if elapsed > 0 else float("inf")
    print(
        f"  verified {correct}/{batches} batches against numpy; throughput {rate:.0f} "
        f"samples/s ({elapsed * 1000:.1f} ms)"
    )
    loaded_once = all(loads == 1 for _, loads, _, _ in per_worker.values())
    return correct == batches and loaded_once

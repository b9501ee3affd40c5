"""Cost of the process-creation guard, side by side with a process that has no guard.

The guard is an audit hook, so every audited operation in the process pays for it, not only
process creation. This times two cheap audited operations (``open`` of /dev/null, ``compile``)
and ``subprocess.run(["true"])`` in a child without ascend_safe and in a child that imported it
(guard installed, nothing in flight), interleaved, and prints the ratios.

Usage: ``python benchmarks/guard.py``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, os, subprocess, sys, time
if sys.argv[1] == "guarded":
    os.environ["ASCEND_SAFE_BACKEND"] = "sim"
    import ascend_safe
    assert ascend_safe.get_fork_policy() == "sync"

def per_call(fn, n):
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n

def open_close():
    open(os.devnull, "rb").close()

def compile_small():
    compile("x = 1", "<bench>", "exec")

def spawn_true():
    subprocess.run(["true"], check=True)

print(json.dumps({
    "open+close": per_call(open_close, 20000),
    "compile": per_call(compile_small, 20000),
    "subprocess.run(['true'])": per_call(spawn_true, 40),
}))
"""


def _run(mode: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True,
        env=dict(os.environ, ASCEND_SAFE_BACKEND="sim"),
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def main() -> None:
    rounds = 5
    plain: dict[str, list[float]] = {}
    guarded: dict[str, list[float]] = {}
    for _ in range(rounds):  # interleaved, so machine noise hits both alike
        for store, mode in ((plain, "plain"), (guarded, "guarded")):
            for name, value in _run(mode).items():
                store.setdefault(name, []).append(value)
    print(f"median of {rounds} child processes each")
    print(f"{'operation':<28} {'plain us':>10} {'guarded us':>11} {'ratio':>7}")
    for name in plain:
        p, g = statistics.median(plain[name]), statistics.median(guarded[name])
        print(f"{name:<28} {p * 1e6:10.2f} {g * 1e6:11.2f} {g / p:7.2f}")


if __name__ == "__main__":
    main()

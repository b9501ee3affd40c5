"""Library overhead against raw pyacl, measured side by side in one run.

Usage::

    python benchmarks/run.py [--quick] [--json FILE]

Every figure compares the same work done with raw ``acl`` calls and through ascend_safe, in
the same process, as interleaved pairs (raw batch, library batch, raw batch, ...), so machine
drift hits both alike. Reported per case: the median time per operation of each side, the
interquartile range (IQR) of the library side's per-batch times, the median of the per-pair
differences in microseconds and in E, one empty Python function call measured in the same
process, and the ratio library/raw. The garbage collector stays enabled (as in a program),
and its state is stated in the output.

The run has four parts, each in a child process of its own (the backend is process-wide):

- overhead on the null backend (``ASCEND_SAFE_BACKEND=null``: every pyacl call returns at
  once), which is the library's own cost;
- end-to-end ratios on the simulator, and on real pyacl when ``import acl`` works;
- the caching pool against malloc+memset+free, on the simulator with its per-call latency at
  0 and at a realistic figure;
- teardown of many live resources (at a parent close and at exit), Python heap per object,
  and the process-creation guard's cost on ``subprocess.run(["true"])``.

``--quick`` runs every part with fewer repetitions and sizes (a smoke run: the figures are
noisier). Absolute times depend on the machine; ratios and E are what to compare.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
KiB = 1024
MiB = 1024 * KiB
SIZES = (4 * KiB, 64 * KiB, 1 * MiB, 16 * MiB, 64 * MiB)
QUICK_SIZES = (4 * KiB, 64 * KiB)
#: Per-call latency for the pool's "realistic" case: a small synchronous aclrtMemcpy takes
#: about 9.5 us on Atlas A2/A3 (the order of magnitude of one runtime call; a figure quoted for
#: that product, not measured here). The simulator sleeps it, so the effective figure, which
#: the sleep's granularity makes larger, is measured and reported next to it.
REALISTIC_LATENCY = 9.5e-6

Fn = Callable[[], Any]


# ------------------------------------------------------------------------------ measuring


def _batch(fn: Fn, inner: int) -> float:
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - start) / inner


def _empty() -> None:
    pass


def _quantiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


class Meter:
    """Interleaved raw/library pairs, with E measured between them."""

    def __init__(self, repeat: int, budget: float) -> None:
        self.repeat = repeat
        self.budget = budget  # seconds per batch, to choose the batch size
        self.e_samples: list[float] = []

    def inner_for(self, fn: Fn) -> int:
        fn()
        probe = _batch(fn, 3)
        return max(1, min(20000, int(self.budget / max(probe, 1e-9))))

    def pair(self, raw: Fn, lib: Fn, *, inner: int | None = None) -> dict[str, float]:
        n = inner or max(self.inner_for(raw), self.inner_for(lib))
        raw_t: list[float] = []
        lib_t: list[float] = []
        for _ in range(self.repeat):
            raw_t.append(_batch(raw, n))
            lib_t.append(_batch(lib, n))
            self.e_samples.append(_batch(_empty, 2000))
        diffs = [b - a for a, b in zip(raw_t, lib_t)]
        r1, r, r3 = _quantiles(raw_t)
        l1, lt, l3 = _quantiles(lib_t)
        d1, d, d3 = _quantiles(diffs)
        e = self.e
        return {
            "raw_us": r * 1e6,
            "lib_us": lt * 1e6,
            "raw_iqr_us": (r3 - r1) * 1e6,
            "lib_iqr_us": (l3 - l1) * 1e6,
            "overhead_us": d * 1e6,
            "overhead_iqr_us": (d3 - d1) * 1e6,
            "overhead_E": d / e,
            "ratio": lt / r if r else float("nan"),
            "inner": n,
        }

    @property
    def e(self) -> float:
        return statistics.median(self.e_samples) if self.e_samples else _batch(_empty, 20000)


# ------------------------------------------------------------------------------ cases


def _cases(asf: Any, acl: Any, dev: Any, sizes: tuple[int, ...]) -> dict[str, tuple[Fn, Fn]]:
    """Raw and library versions of each operation, on open resources; cleanup registered."""
    import ctypes

    try:
        import numpy as np
    except ImportError:  # numpy is optional: its cases are skipped
        np = None
    S = 4 * KiB
    H2D, D2H, D2D = 1, 2, 3
    cases: dict[str, tuple[Fn, Fn]] = {}
    stream = dev.stream()
    raw_stream = acl.rt.create_stream()[0]
    event = dev.event()
    raw_event = acl.rt.create_event()[0]
    biggest = max(sizes)
    mem = dev.malloc(biggest)
    mem2 = dev.malloc(biggest)
    raw_ptr = acl.rt.malloc(biggest, 0)[0]
    raw_ptr2 = acl.rt.malloc(biggest, 0)[0]
    raw_pinned = acl.rt.malloc_host(biggest)[0]
    _cleanup.append(lambda: acl.rt.free_host(raw_pinned))
    _cleanup.append(lambda: acl.rt.free(raw_ptr2))
    _cleanup.append(lambda: acl.rt.free(raw_ptr))
    _cleanup.append(lambda: acl.rt.destroy_event(raw_event))
    _cleanup.append(lambda: acl.rt.destroy_stream(raw_stream))

    def bytes_ptr(data: bytes) -> int:
        return acl.util.bytes_to_ptr(data)  # type: ignore[no-any-return]

    def writable_ptr(buf: bytearray) -> int:
        return ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))

    # -- synchronous copies, every size ---------------------------------------------------
    for size in sizes:
        label = _size_label(size)
        payload = bytes(size)
        host = bytearray(size)
        cases[f"copy_from(bytes) {label}"] = (
            lambda p=payload, n=size: acl.rt.memcpy(raw_ptr, n, bytes_ptr(p), n, H2D),
            lambda p=payload: mem.copy_from(p),
        )
        cases[f"copy_to(bytearray) {label}"] = (
            lambda h=host, n=size: acl.rt.memcpy(writable_ptr(h), n, raw_ptr, n, D2H),
            lambda h=host, n=size: mem.copy_to(h, nbytes=n),
        )
    payload = bytes(S)
    host = bytearray(S)
    cases["copy_from(bytearray) 4 KiB"] = (
        lambda: acl.rt.memcpy(raw_ptr, S, writable_ptr(host), S, H2D),
        lambda: mem.copy_from(host),
    )
    if np is not None:
        arr = np.zeros(S, dtype=np.uint8)
        cases["copy_from(numpy) 4 KiB"] = (
            lambda: acl.rt.memcpy(raw_ptr, S, arr.ctypes.data, S, H2D),
            lambda: mem.copy_from(arr),
        )
        out = np.empty(S, dtype=np.uint8)
        cases["copy_to(numpy) 4 KiB"] = (
            lambda: acl.rt.memcpy(out.ctypes.data, S, raw_ptr, S, D2H),
            lambda: mem.copy_to(out, nbytes=S),
        )
    cases["copy_from(memory) 4 KiB"] = (
        lambda: acl.rt.memcpy(raw_ptr, S, raw_ptr2, S, D2D),
        lambda: mem.copy_from(mem2, nbytes=S),
    )
    cases["to_bytes 4 KiB"] = (
        lambda: _raw_to_bytes(acl, raw_ptr, S),
        lambda: mem.to_bytes(S),
    )

    # -- asynchronous copies (submit + synchronize) ----------------------------------------
    def raw_async_from_bytes() -> None:
        ctypes.memmove(raw_pinned, payload, S)  # a careful raw user reuses a pinned buffer
        acl.rt.memcpy_async(raw_ptr, S, raw_pinned, S, H2D, raw_stream)
        acl.rt.synchronize_stream(raw_stream)

    def lib_async_from_bytes() -> None:
        mem.copy_from(payload, stream=stream)
        stream.synchronize()

    cases["async copy_from(bytes)+sync 4 KiB"] = (raw_async_from_bytes, lib_async_from_bytes)

    def raw_async_to_bytearray() -> None:
        acl.rt.memcpy_async(raw_pinned, S, raw_ptr, S, D2H, raw_stream)
        acl.rt.synchronize_stream(raw_stream)
        ctypes.memmove(writable_ptr(host), raw_pinned, S)

    def lib_async_to_bytearray() -> None:
        mem.copy_to(host, stream=stream, nbytes=S)
        stream.synchronize()

    cases["async copy_to(bytearray)+sync 4 KiB"] = (raw_async_to_bytearray, lib_async_to_bytearray)

    def raw_async_d2d() -> None:
        acl.rt.memcpy_async(raw_ptr, S, raw_ptr2, S, D2D, raw_stream)
        acl.rt.synchronize_stream(raw_stream)

    def lib_async_d2d() -> None:
        mem.copy_from(mem2, stream=stream, nbytes=S)
        stream.synchronize()

    cases["async copy_from(memory)+sync 4 KiB"] = (raw_async_d2d, lib_async_d2d)

    # -- streams and events ----------------------------------------------------------------
    cases["Event.record"] = (
        lambda: acl.rt.record_event(raw_event, raw_stream),
        lambda: event.record(stream),
    )
    cases["Stream.synchronize (idle)"] = (
        lambda: acl.rt.synchronize_stream(raw_stream),
        stream.synchronize,
    )
    cases["Event.synchronize"] = (
        lambda: acl.rt.synchronize_event(raw_event),
        event.synchronize,
    )
    cases["Event.query"] = (
        lambda: acl.rt.query_event_status(raw_event),
        event.query,
    )
    cases["Stream.wait(event)"] = (
        lambda: acl.rt.stream_wait_event(raw_stream, raw_event),
        lambda: stream.wait(event),
    )

    # -- create + close ----------------------------------------------------------------------
    def raw_stream_cycle() -> None:
        s = acl.rt.create_stream()[0]
        acl.rt.destroy_stream(s)

    cases["create+close Stream"] = (raw_stream_cycle, lambda: asf.Stream(dev).close())

    def raw_event_cycle() -> None:
        e = acl.rt.create_event()[0]
        acl.rt.destroy_event(e)

    cases["create+close Event"] = (raw_event_cycle, lambda: asf.Event(dev).close())

    def raw_buffer_cycle() -> None:
        acl.destroy_data_buffer(acl.create_data_buffer(raw_ptr, S))

    cases["create+close DataBuffer"] = (raw_buffer_cycle, lambda: asf.DataBuffer(mem).close())

    memory_kinds: tuple[tuple[str, Fn, Callable[[int], Any], Any], ...] = (
        ("DeviceMemory", lambda: acl.rt.malloc(S, 0)[0], acl.rt.free, asf.DeviceMemory),
        ("HostMemory", lambda: acl.rt.malloc_host(S)[0], acl.rt.free_host, asf.HostMemory),
        ("DvppMemory", lambda: acl.media.dvpp_malloc(S)[0], acl.media.dvpp_free, asf.DvppMemory),
    )
    for name, allocate, free, kind in memory_kinds:

        def raw_cycle(allocate: Fn = allocate, free: Callable[[int], Any] = free) -> None:
            p = allocate()
            acl.rt.memset(p, S, 0, S)
            free(p)

        cases[f"create+close {name} (zeroed) 4 KiB"] = (
            raw_cycle,
            lambda kind=kind: kind(dev, S).close(),
        )
    return cases


def _raw_to_bytes(acl: Any, ptr: int, size: int) -> bytes:
    """What a raw user writes for ``to_bytes``: a host buffer, a memcpy, a bytes copy."""
    import ctypes

    out = bytearray(size)
    window = (ctypes.c_char * size).from_buffer(out)
    acl.rt.memcpy(ctypes.addressof(window), size, ptr, size, 2)
    del window
    return bytes(out)


def _size_label(size: int) -> str:
    return f"{size // MiB} MiB" if size >= MiB else f"{size // KiB} KiB"


_cleanup: list[Fn] = []


def _setup(backend: str) -> tuple[Any, Any]:
    os.environ["ASCEND_SAFE_BACKEND"] = backend
    import ascend_safe as asf
    from ascend_safe import _backend

    return asf, _backend.acl()


# ------------------------------------------------------------------------------ workers


def worker_ops(backend: str, quick: bool) -> dict[str, Any]:
    asf, acl = _setup(backend)
    meter = Meter(repeat=5 if quick else 15, budget=0.002 if quick else 0.02)
    sizes = QUICK_SIZES if quick else SIZES
    if backend == "sim":
        from ascend_safe import sim

        sim.configure(memory_per_device=max(1 << 30, 4 * max(sizes) + (64 << 20)))
    results: dict[str, Any] = {}
    with asf.Device(0) as dev:
        cases = _cases(asf, acl, dev, sizes)
        for name, (raw, lib) in cases.items():
            results[name] = meter.pair(raw, lib)
        for fn in reversed(_cleanup):
            fn()
    return {
        "backend": asf.backend_name(),
        "E_ns": meter.e * 1e9,
        "gc_enabled": gc.isenabled(),
        "repeat": meter.repeat,
        "cases": results,
    }


def worker_pool(quick: bool) -> dict[str, Any]:
    asf, acl = _setup("sim")
    from ascend_safe import sim

    meter = Meter(repeat=5 if quick else 15, budget=0.002 if quick else 0.02)
    results: dict[str, Any] = {}
    sizes = (4 * KiB, 1 * MiB) if quick else (4 * KiB, 64 * KiB, 1 * MiB)
    for latency in (0.0, REALISTIC_LATENCY):
        sim.configure(call_latency=latency)
        with asf.Device(0) as dev, asf.MemoryPool(dev) as pool:
            effective = _batch(lambda: acl.rt.get_device(), 200)  # one runtime call
            for size in sizes:

                def raw(n: int = size) -> None:
                    p = acl.rt.malloc(n, 0)[0]
                    acl.rt.memset(p, n, 0, n)
                    acl.rt.free(p)

                def pooled(n: int = size) -> None:
                    pool.malloc(n).close()

                key = f"pool {_size_label(size)}, call latency {latency * 1e6:g} us"
                results[key] = meter.pair(raw, pooled)
                results[key]["effective_call_us"] = effective * 1e6
            stats = pool.stats
            results[f"pool stats, call latency {latency * 1e6:g} us"] = stats._asdict()
    sim.configure(call_latency=0.0)
    return {"backend": "sim", "E_ns": meter.e * 1e9, "gc_enabled": gc.isenabled(), "cases": results}


_EXIT_CHILD = r"""
import atexit, os, sys, time
marks = []
atexit.register(lambda: print(time.perf_counter() - marks[0], flush=True))
os.environ["ASCEND_SAFE_BACKEND"] = "null"
import ascend_safe as asf
n = int(sys.argv[1])
dev = asf.Device(0)
kept = [asf.Event(dev) for _ in range(n)]
atexit.register(lambda: marks.append(time.perf_counter()))
"""


def _exit_seconds(n: int) -> float:
    """The library's exit teardown of a process with a device and *n* live events: from the
    last exit handler registered (run first) to the first (run last, after the library's)."""
    proc = subprocess.run(
        [sys.executable, "-c", _EXIT_CHILD, str(n)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(proc.stdout.split()[-1])


def worker_teardown(quick: bool) -> dict[str, Any]:
    asf, acl = _setup("null")
    counts = (1000, 10000) if quick else (1000, 10000, 100000)
    rounds = 3 if quick else 5
    out: dict[str, Any] = {"close": {}, "exit": {}}
    for n in counts:
        per: list[float] = []
        for _ in range(rounds):
            dev = asf.Device(0)
            kept = [asf.Event(dev) for _ in range(n)]  # streams are capped per device
            start = time.perf_counter()
            dev.close()
            per.append((time.perf_counter() - start) / n)
            del kept
        out["close"][str(n)] = statistics.median(per) * 1e6
    # At exit: the library's exit teardown with n live events over the same with none.
    for n in counts:
        per = [(_exit_seconds(n) - _exit_seconds(0)) / n for _ in range(rounds)]
        out["exit"][str(n)] = statistics.median(per) * 1e6
    first, last = str(counts[0]), str(counts[-1])
    out["flatness_close"] = out["close"][last] / out["close"][first]
    out["flatness_exit"] = out["exit"][last] / out["exit"][first]
    out["heap"] = _heap(asf, acl, 500 if quick else 5000)
    return out


def _heap(asf: Any, acl: Any, n: int) -> dict[str, float]:
    import tracemalloc

    def grown(make: Fn) -> tuple[int, Any]:
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        kept = make()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        return sum(s.size_diff for s in after.compare_to(before, "filename")), kept

    result: dict[str, float] = {}
    with asf.Device(0) as dev:
        kinds: dict[str, tuple[Fn, Fn]] = {
            "Stream": (lambda: acl.rt.create_stream()[0], dev.stream),
            "Event": (lambda: acl.rt.create_event()[0], dev.event),
            "DeviceMemory": (lambda: acl.rt.malloc(64, 0)[0], lambda: dev.malloc(64)),
        }
        for kind, (raw, lib) in kinds.items():
            # streams are capped per device (max_streams): stay below the cap
            count = min(n, dev.max_streams // 2) if kind == "Stream" else n
            raw_bytes, raw_kept = grown(lambda r=raw, c=count: [r() for _ in range(c)])
            lib_bytes, lib_kept = grown(lambda f=lib, c=count: [f() for _ in range(c)])
            for obj in lib_kept:
                obj.close()
            del raw_kept
            result[kind] = (lib_bytes - raw_bytes) / count
    return result


_GUARD_CHILD = r"""
import json, os, subprocess, sys, time
if sys.argv[1] == "guarded":
    os.environ["ASCEND_SAFE_BACKEND"] = "null"
    import ascend_safe
n = int(sys.argv[2])
subprocess.run(["true"], check=True)
start, cpu = time.perf_counter(), time.process_time()
for _ in range(n):
    subprocess.run(["true"], check=True)
print((time.perf_counter() - start) / n, (time.process_time() - cpu) / n)
"""


def worker_guard(quick: bool) -> dict[str, Any]:
    """``subprocess.run(["true"])`` in a child without ascend_safe and in one that imported it
    (guard installed, nothing in flight), in many short alternating rounds. The parent's CPU
    time is reported next to wall time: it is what the guard adds, and other load on the
    machine disturbs it far less."""
    rounds, per_round = (3, 30) if quick else (60, 100)
    samples: dict[str, dict[str, list[float]]] = {
        "wall": {"plain": [], "guarded": []},
        "cpu": {"plain": [], "guarded": []},
    }
    for _ in range(rounds):
        for mode in ("plain", "guarded"):
            proc = subprocess.run(
                [sys.executable, "-c", _GUARD_CHILD, mode, str(per_round)],
                capture_output=True,
                text=True,
                check=True,
            )
            wall, cpu = (float(x) for x in proc.stdout.split())
            samples["wall"][mode].append(wall)
            samples["cpu"][mode].append(cpu)
    out: dict[str, Any] = {"runs_per_side": rounds * per_round}
    for clock, sides in samples.items():
        plain, guarded = sides["plain"], sides["guarded"]
        ratios = [g / p for p, g in zip(plain, guarded)]
        q1, _, q3 = _quantiles(ratios)
        out[clock] = {
            "plain_us": statistics.median(plain) * 1e6,
            "guarded_us": statistics.median(guarded) * 1e6,
            # the ratio of the medians; its resolution: the spread (IQR) of the per-round
            # ratios over the square root of the number of rounds
            "ratio": statistics.median(guarded) / statistics.median(plain),
            "resolution": (q3 - q1) / len(ratios) ** 0.5,
        }
    return out


# ------------------------------------------------------------------------------ driver


def _child(part: str, quick: bool, backend: str | None = None) -> dict[str, Any]:
    args = [sys.executable, os.path.abspath(__file__), "--part", part]
    if backend:
        args += ["--backend", backend]
    if quick:
        args.append("--quick")
    env = dict(os.environ)
    env.pop("ASCEND_SAFE_BACKEND", None)
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"benchmark part {part} ({backend}) failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _pyacl_present() -> bool:
    return importlib.util.find_spec("acl") is not None


def _table(title: str, data: dict[str, Any], cols: str) -> list[str]:
    lines = [
        f"\n{title}  [{data['backend']}; E = {data['E_ns']:.1f} ns; GC "
        f"{'enabled' if data['gc_enabled'] else 'disabled'}]"
    ]
    if cols == "overhead":
        lines.append(
            f"{'operation':<44} {'raw us':>9} {'lib us':>9} {'+us':>8} {'IQR':>6} "
            f"{'+E':>7} {'ratio':>6}"
        )
    else:
        lines.append(f"{'operation':<44} {'raw us':>9} {'lib us':>9} {'IQR':>7} {'ratio':>6}")
    for name, r in data["cases"].items():
        if "raw_us" not in r:
            continue
        if cols == "overhead":
            lines.append(
                f"{name:<44} {r['raw_us']:9.2f} {r['lib_us']:9.2f} {r['overhead_us']:8.2f} "
                f"{r['overhead_iqr_us']:6.2f} {r['overhead_E']:7.0f} {r['ratio']:6.2f}"
            )
        else:
            lines.append(
                f"{name:<44} {r['raw_us']:9.2f} {r['lib_us']:9.2f} {r['lib_iqr_us']:7.2f} "
                f"{r['ratio']:6.3f}"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    parser.add_argument(
        "--backends",
        default="null,sim,acl",
        help="comma-separated backends to measure operations on (default: null,sim,acl; acl "
        "only where pyacl imports); the pool part runs when sim is listed",
    )
    parser.add_argument("--part", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:  # a child: one part, JSON on stdout
        if args.part == "ops":
            result = worker_ops(args.backend, args.quick)
        elif args.part == "pool":
            result = worker_pool(args.quick)
        elif args.part == "teardown":
            result = worker_teardown(args.quick)
        else:
            result = worker_guard(args.quick)
        print(json.dumps(result))
        return
    started = time.time()
    report: dict[str, Any] = {
        "quick": args.quick,
        "python": sys.version.split()[0],
        "command": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]]),
    }
    wanted = {b.strip() for b in args.backends.split(",")}
    for backend in ("null", "sim", "acl"):
        if backend in wanted and (backend != "acl" or _pyacl_present()):
            report[backend] = _child("ops", args.quick, backend)
    if "sim" in wanted:
        report["pool"] = _child("pool", args.quick)
    report["teardown"] = _child("teardown", args.quick)
    report["guard"] = _child("guard", args.quick)
    report["seconds"] = time.time() - started
    lines = [
        f"ascend_safe benchmarks ({'quick' if args.quick else 'full'} run, "
        f"Python {report['python']}): medians of interleaved raw/library batches"
    ]
    if "null" in report:
        lines += _table("Library overhead on the null backend", report["null"], "overhead")
    if "sim" in report:
        lines += _table("End to end on the simulator", report["sim"], "ratio")
    if "acl" in report:
        lines += _table("End to end on real pyacl", report["acl"], "ratio")
    if "pool" in report:
        lines += _table("Caching pool vs malloc+memset+free (simulator)", report["pool"], "ratio")
        eff = [
            r["effective_call_us"]
            for r in report["pool"]["cases"].values()
            if "effective_call_us" in r
        ]
        lines.append(
            f"(call latency {REALISTIC_LATENCY * 1e6:g} us asked; one call measured at "
            f"{max(eff):.1f} us, as the simulator sleeps it)"
        )
    td = report["teardown"]
    lines.append("\nTeardown per resource (null backend, events; us)")
    lines.append(
        "  at device close: "
        + ", ".join(f"{n}: {v:.2f}" for n, v in td["close"].items())
        + f"  (flatness {td['flatness_close']:.2f})"
    )
    lines.append(
        "  at exit (over raw): "
        + ", ".join(f"{n}: {v:.2f}" for n, v in td["exit"].items())
        + f"  (flatness {td['flatness_exit']:.2f})"
    )
    lines.append(
        "Heap per live object beyond the raw handle (tracemalloc): "
        + ", ".join(f"{k} {v:.0f} B" for k, v in td["heap"].items())
    )
    g = report["guard"]
    for clock in ("cpu", "wall"):
        c = g[clock]
        lines.append(
            f"Process-creation guard, subprocess.run(['true']) {clock} time: "
            f"{c['plain_us']:.0f} us plain, {c['guarded_us']:.0f} us guarded, ratio "
            f"{c['ratio']:.3f} (resolution {c['resolution']:.3f}, {g['runs_per_side']} runs "
            "per side)"
        )
    lines.append(f"\n{report['seconds']:.0f} s; command: {report['command']}")
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(HERE))
    main()

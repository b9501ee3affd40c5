"""Command line: ``python -m ascend_safe demo | doctor | conformance``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    if args.backend != "auto":
        os.environ["ASCEND_SAFE_BACKEND"] = args.backend
    import ascend_safe as asf

    backend = asf.backend_name()
    if backend == "sim":
        from . import sim

        # A little latency per queued task, so that stage timings and overlap are visible.
        sim.configure(async_delay=0.0005)
    print(f"ascend_safe {asf.__version__} demo on backend '{backend}'")
    print(
        f"pipeline: {args.batches} batches of {args.batch_bytes} bytes over "
        f"{args.streams} streams on device {args.device}"
    )
    started = time.perf_counter()
    timings: dict[str, float] = {"copy in": 0.0, "device work": 0.0, "copy out": 0.0}
    checked = 0
    with asf.Device(args.device) as dev:
        lanes = [_Lane(dev, args.batch_bytes) for _ in range(args.streams)]
        try:
            inflight: list[tuple[_Lane, bytes, bytearray]] = []
            for index in range(args.batches):
                lane = lanes[index % len(lanes)]
                if lane.busy is not None:  # reuse a lane: finish its previous batch first
                    checked += lane.finish(timings)
                payload = _batch(index, args.batch_bytes)
                result = bytearray(args.batch_bytes)
                lane.submit(payload, result)
                inflight.append((lane, payload, result))
            for lane in lanes:
                if lane.busy is not None:
                    checked += lane.finish(timings)
        finally:
            for lane in lanes:
                lane.close()
        free, total = dev.mem_info()
    elapsed = time.perf_counter() - started
    print(f"verified {checked}/{args.batches} batches in {elapsed * 1000:.1f} ms wall time")
    for stage, ms in timings.items():
        print(f"  {stage:<12} {ms:8.2f} ms (device time summed over batches, from events)")
    busy = sum(timings.values())
    print(
        f"streams overlapped: {busy:.1f} ms of device time in {elapsed * 1000:.1f} ms of wall "
        f"time ({busy / (elapsed * 1000):.1f}x)"
    )
    print(f"device memory after the run: {free} free of {total} bytes")
    served = True
    if args.model_workers > 0 and backend == "sim":
        from . import _model_demo

        served = _model_demo.run(args.model_batches, args.model_workers)
    print("leak report:", asf.leak_report())
    return 0 if checked == args.batches and served and not asf.live_resources() else 1


def _batch(index: int, size: int) -> bytes:
    seed = (index * 2654435761) & 0xFF
    pattern = bytes(range(256)) * (size // 256 + 2)
    return pattern[seed : seed + size]


class _Lane:
    """One stream with its buffers and stage events: copy in, transform, copy out."""

    def __init__(self, dev: object, size: int) -> None:
        import ascend_safe as asf

        assert isinstance(dev, asf.Device)
        self.stream = asf.Stream(dev)
        self.inp = asf.DeviceMemory(dev, size)
        self.out = asf.DeviceMemory(dev, size)
        self.events = [asf.Event(dev) for _ in range(4)]
        self.busy: tuple[bytes, bytearray] | None = None

    def submit(self, payload: bytes, result: bytearray) -> None:
        ev = self.events
        ev[0].record(self.stream)
        self.inp.copy_from(payload, stream=self.stream)
        ev[1].record(self.stream)
        # The "model": clear the output, then move the input through it on the device.
        self.out.fill(0, stream=self.stream)
        self.out.copy_from(self.inp, stream=self.stream)
        ev[2].record(self.stream)
        self.out.copy_to(result, stream=self.stream)
        ev[3].record(self.stream)
        self.busy = (payload, result)

    def finish(self, timings: dict[str, float]) -> int:
        assert self.busy is not None
        payload, result = self.busy
        ev = self.events
        ev[3].synchronize()
        timings["copy in"] += ev[0].elapsed_time(ev[1])
        timings["device work"] += ev[1].elapsed_time(ev[2])
        timings["copy out"] += ev[2].elapsed_time(ev[3])
        self.busy = None
        return 1 if bytes(result) == payload else 0

    def close(self) -> None:
        for event in self.events:
            event.close()
        self.inp.close()
        self.out.close()
        self.stream.close()


def _doctor(args: argparse.Namespace) -> int:
    from . import __version__, doctor

    report = doctor.run(args.timeout, version=__version__)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.text())
    return 0 if report.ok else 1


def _conformance(args: argparse.Namespace) -> int:
    from . import _backend, conformance

    models: list[str] = list(args.model or [])
    with tempfile.TemporaryDirectory(prefix="ascend_safe-conformance-") as directory:
        if _backend.backend_name() == "sim":
            from . import sim

            # A little latency per queued stream task, so that a copy the simulator runs
            # asynchronously is still in flight when a case looks (as a DMA would be).
            sim.configure(async_delay=0.005)
            if not models:  # the simulator loads its own model format
                try:
                    models = conformance.write_sample_models(sim.write_model, directory)
                except Exception as exc:  # numpy missing: the model cases are skipped
                    print(f"sample models not written ({exc})", file=sys.stderr)
        report = conformance.run(pattern=args.only, risky=args.risky, models=models)
    if not report.results:
        print(f"no conformance case matches {args.only!r}", file=sys.stderr)
        return 2
    print(report.text())
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report.to_json(), fh, indent=2)
            fh.write("\n")
        print(f"full report written to {args.json}")
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m ascend_safe``."""
    parser = argparse.ArgumentParser(prog="python -m ascend_safe")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run an inference-style pipeline and print a report")
    demo.add_argument("--backend", choices=("auto", "sim", "acl"), default="sim")
    demo.add_argument("--device", type=int, default=0)
    demo.add_argument("--streams", type=int, default=3)
    demo.add_argument("--batches", type=int, default=24)
    demo.add_argument("--batch-bytes", type=int, default=64 * 1024)
    demo.add_argument(
        "--model-workers", type=int, default=2, help="spawned workers serving a model (0: skip)"
    )
    demo.add_argument("--model-batches", type=int, default=64)
    demo.set_defaults(run=_demo)
    doctor = sub.add_parser(
        "doctor",
        help="diagnose this machine: backend, devices, limits, OOM and fork settings",
        description="Check the backend, versions, SoC, run mode, each device, process slots, "
        "RC-mode OOM handling, fork settings, logind, warnings and ASCEND_SAFE_* variables; "
        "print each check with its fix. Exits 1 if any check fails. See docs/doctor.md.",
    )
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long each device probe may take before the device is reported wedged",
    )
    doctor.set_defaults(run=_doctor)
    check = sub.add_parser(
        "conformance",
        help="check the pyacl in use against the behaviour the simulator implements",
        description="Run the conformance cases against the backend in use "
        "(ASCEND_SAFE_BACKEND=acl on an NPU machine) and report pass/differ/error per case; "
        "exits non-zero if any case differs or errors. See docs/conformance.md.",
    )
    check.add_argument("--json", metavar="FILE", help="write the full report as JSON to FILE")
    check.add_argument(
        "--risky",
        action="store_true",
        help="also run cases that could disturb a production machine (device memory "
        "exhaustion, process-limit probes), each in a child process",
    )
    check.add_argument(
        "--only",
        metavar="PATTERN",
        help="run only cases whose id or category matches this glob (no wildcard: substring)",
    )
    check.add_argument(
        "--model",
        metavar="PATH",
        action="append",
        help="a model file (.om built for this SoC) for the model cases; repeat to give a "
        "static model and ones with dynamic batch or image sizes. Without one, the cases that "
        "need a model are skipped (the simulator uses its own sample models)",
    )
    check.set_defaults(run=_conformance)
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result

"""Running cases: in phases in the caller, or in child processes for isolated and risky ones.

In the caller, cases run in three phases: before ``acl.init``, after it with no device set,
and with the kit's device set in the calling thread; the kit undoes its own ``init`` and
``set_device`` afterwards. Isolated and risky cases run in a child process
(``python -m ascend_safe.conformance --child``) that reports one line per case, so a case
that crashes or hangs its process costs only that case: the parent reports it as an error
and starts a fresh child for the cases after it.
"""

from __future__ import annotations

import importlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Optional

from ._case import Case, NotApplicable, Probe, SetupError, normalize

__all__ = ["Result", "load_wrapper", "run_in_children", "run_inline"]

#: Prefix of the child's report lines (anything else on its stdout is ignored).
MARK = "@@ascend_safe-conformance "


@dataclass
class Result:
    """How one case went: ``pass``, ``differ`` (observed != expected), ``error`` (the probe
    could not observe), or ``skipped`` (the case does not apply to this machine)."""

    case: Case
    status: str
    observed: Any = None
    detail: str = ""
    notes: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The result as JSON data (what ``--json`` writes per case)."""
        return {
            "id": self.case.id,
            "category": self.case.category,
            "status": self.status,
            "expected": self.case.expect,
            "observed": self.observed,
            "detail": self.detail,
            "notes": self.notes,
            "evidence": self.case.evidence,
            "risky": self.case.risky,
            "in_child": self.case.in_child,
            "seconds": round(self.seconds, 4),
        }

    @classmethod
    def from_json(cls, case: Case, data: dict[str, Any]) -> Result:
        """Rebuild a result that a child process reported."""
        return cls(
            case=case,
            status=str(data["status"]),
            observed=data.get("observed"),
            detail=str(data.get("detail", "")),
            notes=dict(data.get("notes", {})),
            seconds=float(data.get("seconds", 0.0)),
        )


def _run_one(acl: Any, case: Case, device: int, models: tuple[str, ...] = ()) -> Result:
    probe = Probe(acl=acl, device=device, models=models)
    started = time.perf_counter()
    status, observed, detail = "error", None, ""
    try:
        observed = normalize(case.probe(probe))
        status = "pass" if observed == case.expect else "differ"
    except NotApplicable as exc:
        status, detail = "skipped", f"not applicable: {exc}"
    except SetupError as exc:
        detail = f"setup failed: {exc}"
    except Exception as exc:
        detail = f"probe raised {type(exc).__name__}: {exc}"
    finally:
        problems = probe.cleanup()
    if problems:
        detail = "; ".join(filter(None, [detail, "cleanup raised " + "; ".join(problems)]))
    return Result(case, status, observed, detail, probe.notes, time.perf_counter() - started)


def _failed(case: Case, detail: str) -> Result:
    return Result(case=case, status="error", detail=detail)


def run_inline(
    acl: Any,
    cases: list[Case],
    *,
    device: int = 0,
    on_device: Optional[Callable[[Any], None]] = None,
    report: Optional[Callable[[Result], None]] = None,
    starting: Optional[Callable[[Case], None]] = None,
    models: Sequence[str] = (),
) -> list[Result]:
    """Run *cases* in this process, phase by phase; the kit's init and device are undone.

    *on_device* is called once with the device set (the report collects the environment
    there); *starting* and *report* see each case begin and end; *models* are the model files
    the model cases may load.
    """
    model_files = tuple(str(m) for m in models)
    results: list[Result] = []

    def run(selected: list[Case]) -> None:
        for case in selected:
            if starting is not None:
                starting(case)
            result = _run_one(acl, case, device, model_files)
            results.append(result)
            if report is not None:
                report(result)

    def fail(selected: list[Case], detail: str) -> None:
        for case in selected:
            if starting is not None:
                starting(case)
            result = _failed(case, detail)
            results.append(result)
            if report is not None:
                report(result)

    by_phase = {
        phase: [c for c in cases if c.phase == phase] for phase in ("bare", "init", "device")
    }
    run(by_phase["bare"])
    ret = acl.init()
    if ret != 0:
        fail(by_phase["init"] + by_phase["device"], f"acl.init() returned {ret}")
        return results
    try:
        run(by_phase["init"])
        ret = acl.rt.set_device(device)
        if ret != 0:
            fail(by_phase["device"], f"acl.rt.set_device({device}) returned {ret}")
            return results
        try:
            if on_device is not None:
                on_device(acl)
            run(by_phase["device"])
        finally:
            acl.rt.reset_device(device)
    finally:
        acl.finalize()
    return results


def load_wrapper(spec: str) -> Callable[[Any], Any]:
    """The callable named by ``"module:attribute"`` (the test-only ``--wrap`` hook)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"--wrap expects 'module:function', got {spec!r}")
    wrapper: Callable[[Any], Any] = getattr(importlib.import_module(module_name), attribute)
    return wrapper


def _reader(stream: IO[str], lines: queue.Queue[Optional[str]]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _child_command(
    ids: list[str], device: int, wrap: Optional[str], models: Sequence[str] = ()
) -> list[str]:
    command = [sys.executable, "-m", "ascend_safe.conformance", "--child", "--device", str(device)]
    if wrap:
        command += ["--wrap", wrap]
    for model in models:
        command += ["--model", str(model)]
    return command + ids


def _describe_exit(code: Optional[int]) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def run_in_children(
    cases: list[Case],
    *,
    device: int = 0,
    wrap: Optional[str] = None,
    report: Optional[Callable[[Result], None]] = None,
    models: Sequence[str] = (),
) -> list[Result]:
    """Run *cases* in child processes; a crash or hang fails only the case it happened in."""
    by_id = {c.id: c for c in cases}
    remaining = [c.id for c in cases]
    results: list[Result] = []

    def done(result: Result) -> None:
        results.append(result)
        remaining.remove(result.case.id)
        if report is not None:
            report(result)

    while remaining:
        child = subprocess.Popen(
            _child_command(list(remaining), device, wrap, models),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: a hung child is killed whole
        )
        assert child.stdout is not None and child.stderr is not None
        lines: queue.Queue[Optional[str]] = queue.Queue()
        errors: queue.Queue[Optional[str]] = queue.Queue()
        threading.Thread(target=_reader, args=(child.stdout, lines), daemon=True).start()
        threading.Thread(target=_reader, args=(child.stderr, errors), daemon=True).start()
        current: Optional[str] = None
        deadline = time.monotonic() + 60.0
        progressed = False
        try:
            while remaining:
                try:
                    line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    name = current or remaining[0]
                    os.killpg(child.pid, signal.SIGKILL)
                    done(
                        _failed(
                            by_id[name],
                            f"timed out after {by_id[name].timeout:g} s in a "
                            "child process (killed)",
                        )
                    )
                    progressed = True
                    break
                if line is None:  # the child ended
                    child.wait()
                    if remaining:
                        name = current or remaining[0]
                        tail = _stderr_tail(errors)
                        done(
                            _failed(
                                by_id[name],
                                f"child process {_describe_exit(child.returncode)}"
                                f" during this case{tail}",
                            )
                        )
                        progressed = True
                    break
                if not line.startswith(MARK):
                    continue
                kind, _, payload = line[len(MARK) :].rstrip("\n").partition(" ")
                if kind == "start" and payload in by_id:
                    current = payload
                    deadline = time.monotonic() + by_id[payload].timeout
                elif kind == "result":
                    data = json.loads(payload)
                    name = str(data["id"])
                    if name in by_id and name in remaining:
                        done(Result.from_json(by_id[name], data))
                        progressed = True
                    current = None
                    deadline = time.monotonic() + 60.0
        finally:
            if child.poll() is None:
                try:
                    os.killpg(child.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            child.wait()
            child.stdout.close()
            child.stderr.close()
        if not progressed:  # pragma: no cover - defensive: never loop forever
            for name in list(remaining):
                done(_failed(by_id[name], "child process reported nothing"))
    order = {c.id: i for i, c in enumerate(cases)}
    return sorted(results, key=lambda r: order[r.case.id])


def _stderr_tail(errors: queue.Queue[Optional[str]]) -> str:
    lines: list[str] = []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        try:
            line = errors.get(timeout=0.1)
        except queue.Empty:
            continue
        if line is None:
            break
        lines.append(line.rstrip())
    text = " | ".join(line for line in lines[-3:] if line)
    return f" (stderr: {text[-300:]})" if text else ""

"""The benchmark script runs (quick, null backend) and writes its figures as documented.

Only the shape of the report is checked: timings depend on the machine and are never asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"


def test_quick_run_on_the_null_backend_writes_every_part(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--backends", "null", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr
    assert "Library overhead on the null backend" in proc.stdout
    report = json.loads(out.read_text())
    assert report["quick"] is True
    null = report["null"]
    assert null["backend"] == "null"
    assert null["E_ns"] > 0 and isinstance(null["gc_enabled"], bool)
    names = set(null["cases"])
    for expected in (
        "copy_from(bytes) 4 KiB",
        "copy_to(bytearray) 64 KiB",
        "copy_from(memory) 4 KiB",
        "to_bytes 4 KiB",
        "async copy_from(bytes)+sync 4 KiB",
        "Event.record",
        "Stream.synchronize (idle)",
        "Stream.wait(event)",
        "Event.query",
        "create+close Stream",
        "create+close DataBuffer",
        "create+close DvppMemory (zeroed) 4 KiB",
    ):
        assert expected in names
    for figures in null["cases"].values():
        for key in ("raw_us", "lib_us", "lib_iqr_us", "overhead_us", "overhead_E", "ratio"):
            assert isinstance(figures[key], float), key
    assert "sim" not in report and "pool" not in report
    teardown = report["teardown"]
    assert set(teardown["close"]) == set(teardown["exit"]) == {"1000", "10000"}
    assert {"flatness_close", "flatness_exit"} <= set(teardown)
    assert set(teardown["heap"]) == {"Stream", "Event", "DeviceMemory"}
    guard = report["guard"]
    assert guard["runs_per_side"] > 0
    for clock in ("cpu", "wall"):
        assert guard[clock]["ratio"] > 0 and guard[clock]["resolution"] >= 0

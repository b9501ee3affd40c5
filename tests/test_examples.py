"""Every script in examples/ runs on the simulator, exits 0 and prints its key line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: script -> lines its output must contain (what the example demonstrates)
EXPECTED = {
    "basic_copies.py": ["read back: b'hello, device!!'", "0 live resources"],
    "streams_and_events.py": [
        "snapshot: b'original bytes!!'",
        "double buffering: results match",
        "stream closed after its with block: True",
        "0 live resources",
    ],
    "worker_pool.py": [
        "16 batches on devices",  # which devices served them depends on scheduling
        "worker error: OutOfDeviceMemoryError code 207001 from acl.rt.malloc",
        "leak caught: leaky left resources open",
        "parent holds: 0 live resources",
    ],
    "raw_copy_pipeline.py": ["round trip ok: 4096 bytes", "live handles 0 violations 0"],
    "safe_copy_pipeline.py": ["round trip ok: 4096 bytes", "is closed;", "0 live resources"],
    "model_inference.py": [
        "batch sizes: (1, 2, 4)",
        "refused (ValueError): input 'x' must have shape",
        "async into own memory:",
        "model unloaded: True",
    ],
    "suspend_service.py": ["1 suspend(s), 0 unit(s) cancelled"],
    "rc_memory_admission.py": [
        "refused: 400000 bytes requested",
        "then got 400000 bytes",
        "gave up after the timeout",
        "0 live resources",
    ],
}


def test_every_example_is_tested() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


def test_raw_programs_have_a_port() -> None:
    for raw in EXAMPLES.glob("raw_*.py"):
        assert (EXAMPLES / raw.name.replace("raw_", "safe_", 1)).exists(), raw.name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str, tmp_path: Path) -> None:
    env = dict(os.environ, ASCEND_SAFE_BACKEND="sim", PYTHONWARNINGS="default::ResourceWarning")
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"{name}:\n{proc.stdout}\n{proc.stderr}"
    for line in EXPECTED[name]:
        assert line in proc.stdout, f"{name}: {line!r} not in output:\n{proc.stdout}"
    assert "ResourceWarning" not in proc.stderr, proc.stderr
    docstring = (EXAMPLES / name).read_text(encoding="utf-8").lstrip()
    assert docstring.startswith('"""'), f"{name} needs a docstring saying what it shows"

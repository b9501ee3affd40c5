"""Exit paths in real subprocesses: exit code kept, teardown ordered, no library traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

PRELUDE = """
import os, sys, json, atexit
os.environ["ASCEND_SAFE_BACKEND"] = "sim"
import ascend_safe as asf
from ascend_safe import sim
sim.configure(async_delay=0.005)

def report():
    # registered before pyacl is loaded, so it runs after the library's own exit teardown
    with open(os.environ["REPORT"], "w") as fh:
        json.dump({
            "handles": sim.live_handles(),
            "violations": [v.kind for v in sim.violations()],
            "initialized": sim.initialized(),
        }, fh)
atexit.register(report)

dev = asf.Device(0)
s = dev.stream()
mem = dev.malloc(1 << 16)
buf = asf.DataBuffer(mem)
ev = dev.event()
mem.fill(1, stream=s)
ev.record(s)
out = bytearray(1 << 16)
mem.copy_to(out, stream=s)
"""

ENDINGS = {
    "normal": ("pass", 0),
    "sys_exit": ("sys.exit(3)", 3),
    "exception": ("raise RuntimeError('boom')", 1),
    "keyboard_interrupt": ("raise KeyboardInterrupt", None),
    "closed_properly": ("dev.close()", 0),
}


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_exit_paths(tmp_path, ending):
    code, expected = ENDINGS[ending]
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(PRELUDE) + code + "\n")
    report = tmp_path / "report.json"
    env = dict(os.environ, REPORT=str(report), PYTHONWARNINGS="default")
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    if expected is None:  # KeyboardInterrupt: 130 on some shells, -2 (SIGINT) from Python
        assert proc.returncode in (130, -2, 1), proc.stderr
    else:
        assert proc.returncode == expected, proc.stderr
    data = json.loads(report.read_text())
    assert data["handles"] == {}, data
    assert data["violations"] == [], data
    assert data["initialized"] is False  # ascend_safe called init, so it finalized
    library_frames = [
        line for line in proc.stderr.splitlines() if "ascend_safe" in line and "File" in line
    ]
    if ending == "exception":
        assert "RuntimeError: boom" in proc.stderr
        assert all("prog.py" in line for line in library_frames)
    else:
        assert library_frames == [], proc.stderr
    if ending != "closed_properly":
        assert "releasing at exit what was left open" in proc.stderr
    else:
        assert "left open" not in proc.stderr


def test_user_initialised_pyacl_is_not_finalized_by_library(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(
        textwrap.dedent(
            """
            import os
            os.environ["ASCEND_SAFE_BACKEND"] = "sim"
            from ascend_safe import sim
            acl = sim.install()
            assert acl.init() == 0
            import ascend_safe as asf
            with asf.Device(0) as dev:
                dev.malloc(8).close()
            assert sim.initialized()
            assert acl.finalize() == 0
            print("ok")
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert proc.stderr == ""


def test_program_finalizing_pyacl_itself_gets_a_quiet_exit(tmp_path):
    """The library initialised pyacl, the program finalized it with a raw call: at exit there
    is nothing left to finalize, and nothing to report (no 100037 warning)."""
    script = tmp_path / "prog.py"
    script.write_text(
        textwrap.dedent(
            """
            import os
            os.environ["ASCEND_SAFE_BACKEND"] = "sim"
            from ascend_safe import sim
            import ascend_safe as asf
            with asf.Device(0) as dev:
                dev.malloc(8).close()
            assert sim.initialized()
            assert sim.acl_module().finalize() == 0
            print("ok")
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert proc.stderr == ""


def test_exit_teardown_frees_host_memory_under_a_live_numpy_view(tmp_path):
    pytest.importorskip("numpy")
    script = tmp_path / "prog.py"
    script.write_text(
        textwrap.dedent(PRELUDE) + "view = dev.malloc_host(64, fill=2).numpy()\n"
    )
    report = tmp_path / "report.json"
    env = dict(os.environ, REPORT=str(report), PYTHONWARNINGS="default")
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "LiveViewError" not in proc.stderr and "exit teardown" not in proc.stderr
    data = json.loads(report.read_text())
    assert data["handles"] == {} and data["violations"] == [], data

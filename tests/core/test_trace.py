"""ASCEND_SAFE_TRACE=1: every resource records the user's line that created it, whatever the
call depth inside the library, and leak reports and warnings show it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

USER_MODULE = """\
import ascend_safe as asf

dev = asf.Device(0)                      # line 3: module level
mem = dev.malloc(64)                     # line 4: factory method at module level


def make_stream():
    return dev.stream()                  # line 8: factory method in a function


def make_event():
    return asf.Event(dev)                # line 12: constructor in a function


def helper_made_host_memory():
    return make_host()


def make_host():
    return dev.malloc_host(32)           # line 20: two calls deep


stream = make_stream()
event = make_event()
host = helper_made_host_memory()
"""

MAIN = """\
import warnings
import usermod

print(usermod.asf.leak_report())
dropped = usermod.dev.malloc(16)         # line 5 of the main script
warnings.simplefilter("always", ResourceWarning)
del dropped
print("created_at:", usermod.mem.created_at)
"""


def _run(tmp_path: Path, trace: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "usermod.py").write_text(USER_MODULE)
    (tmp_path / "main.py").write_text(MAIN)
    env = dict(os.environ, ASCEND_SAFE_TRACE=trace, ASCEND_SAFE_BACKEND="sim")
    return subprocess.run(
        [sys.executable, "main.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_sites_are_the_user_lines_at_any_depth(tmp_path: Path) -> None:
    proc = _run(tmp_path, "1")
    assert proc.returncode == 0, proc.stderr
    mod = str(tmp_path / "usermod.py")
    report = proc.stdout
    assert "5 live resources" in report
    expected = {
        "Device": f"{mod}:3 in <module>",
        "DeviceMemory": f"{mod}:4 in <module>",
        "Stream": f"{mod}:8 in make_stream",
        "Event": f"{mod}:12 in make_event",
        "HostMemory": f"{mod}:20 in make_host",
    }
    lines = report.splitlines()
    for kind, site in expected.items():
        assert any(f"<{kind} #" in ln and ln.endswith(f"created at {site}") for ln in lines), (
            kind,
            report,
        )
    assert f"created_at: {mod}:4 in <module>" in report
    # the dropped object's ResourceWarning names the line that made it
    main = str(tmp_path / "main.py")
    assert f"created at {main}:5 in <module>" in proc.stderr, proc.stderr
    # exit teardown reports the leaks with their sites, and nothing fails
    assert "list index out of range" not in proc.stderr
    assert "exit teardown" not in proc.stderr, proc.stderr
    assert f"created at {mod}:3 in <module>" in proc.stderr


def test_without_tracing_the_report_says_how_to_get_sites(tmp_path: Path) -> None:
    proc = _run(tmp_path, "0")
    assert proc.returncode == 0, proc.stderr
    assert "created at" not in proc.stdout
    assert "ASCEND_SAFE_TRACE=1" in proc.stdout
    assert "created_at: None" in proc.stdout
    assert "unclosed <DeviceMemory" in proc.stderr

"""Objects inherited by a forked child are abandoned: no cleanup, use raises ForkSafetyError."""

from __future__ import annotations

import gc
import os
import sys
import warnings

import pytest

import ascend_safe as asf

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="fork semantics are Linux's")


def _in_child(fn) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = fn()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_forked_child_abandons_parent_objects(sim, tmp_path):
    record = tmp_path / "violations.jsonl"
    sim.configure(record_file=str(record))
    dev = asf.Device(0)
    mem = dev.malloc(64, fill=3)
    stream = dev.stream()

    def child() -> int:
        try:
            mem.to_bytes()
        except asf.ForkSafetyError as exc:
            if "spawn" not in str(exc) or "ascend_safe.worker" not in str(exc):
                return 3
        else:
            return 2
        try:
            asf.Device(0)
        except asf.ForkSafetyError:
            pass
        else:
            return 4
        mem.close()  # abandoned: does nothing
        stream.close()
        dev.close()
        if not (mem.closed and dev.closed):
            return 5
        gc.collect()
        return 0

    assert _in_child(child) == 0
    # the parent goes on working; the child made no pyacl call
    assert mem.to_bytes() == b"\x03" * 64
    mem.copy_from(b"\x01" * 64, stream=stream)
    stream.synchronize()
    dev.close()
    assert sim.violations() == []
    assert not record.exists() or record.read_text() == ""


def test_fork_before_use_is_legal(tmp_path):
    """In a fresh process: forking before any pyacl use leaves the child free to use it."""
    import subprocess
    import textwrap

    script = tmp_path / "prog.py"
    script.write_text(
        textwrap.dedent(
            """
            import os
            os.environ["ASCEND_SAFE_BACKEND"] = "sim"
            import ascend_safe as asf
            pid = os.fork()
            if pid == 0:
                with asf.Device(0) as dev, dev.malloc(16, fill=1) as mem:
                    ok = mem.to_bytes() == b"\\x01" * 16
                os._exit(0 if ok else 1)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            with asf.Device(0) as dev, dev.malloc(16, fill=2) as mem:
                assert mem.to_bytes() == b"\\x02" * 16
            print("ok")
            """
        )
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"

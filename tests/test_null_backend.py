"""The null backend (ASCEND_SAFE_BACKEND=null, benchmarks only): pyacl's return shapes from
the simulator's table, fresh handles, and the library running on it end to end."""

from __future__ import annotations

import os
import subprocess
import sys

from ascend_safe import _null
from ascend_safe.sim._api import SPECS


def test_every_function_returns_pyacls_shape_for_it() -> None:
    acl = _null.build(SPECS)
    for spec in SPECS:
        target = acl
        for part in spec.name.split("."):
            target = getattr(target, part)
        if spec.name.startswith("util.") and spec.name != "util.bytes_to_ptr":
            continue  # take objects; checked below where the library uses them
        result = target(*([0] * len((spec.fmt or "").replace("|", ""))))
        if spec.outs is None:
            assert not isinstance(result, tuple) or spec.name == "util.ptr_to_bytes", spec.name
        elif not spec.outs:
            assert result == 0, spec.name
        else:
            assert isinstance(result, tuple) and len(result) == len(spec.outs) + 1, spec.name
            assert result[-1] == 0, spec.name


def test_creates_return_fresh_unique_handles() -> None:
    acl = _null.build(SPECS)
    streams = {acl.rt.create_stream()[0] for _ in range(100)}
    pointers = {acl.rt.malloc(64, 0)[0] for _ in range(100)}
    buffers = {acl.create_data_buffer(0, 0) for _ in range(100)}
    assert len(streams | pointers | buffers) == 300
    assert 0 not in streams | pointers | buffers


def test_pinned_host_memory_is_real_writable_memory() -> None:
    import ctypes

    acl = _null.build(SPECS)
    ptr, ret = acl.rt.malloc_host(64)
    assert ret == 0
    ctypes.memmove(ptr, b"x" * 64, 64)
    assert ctypes.string_at(ptr, 64) == b"x" * 64
    assert acl.rt.free_host(ptr) == 0


def test_the_library_runs_on_it_and_names_it() -> None:
    code = (
        "import ascend_safe as a\n"
        "with a.Device(0) as d:\n"
        "    s = d.stream(); m = d.malloc(4096); e = d.event()\n"
        "    m.copy_from(bytes(4096), stream=s); e.record(s); s.wait(e); s.synchronize()\n"
        "    assert m.to_bytes() == bytes(4096) and e.query()\n"
        "print(a.backend_name(), a.live_resources())\n"
    )
    env = dict(os.environ, ASCEND_SAFE_BACKEND="null")
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["null", "[]"]

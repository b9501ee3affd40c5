"""Process rules: init/finalize refcounts, a forked child, process slots. Each runs in a child
process of the kit (never in the caller); the slot probe also starts its own holders."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from typing import Any

from ._case import NotApplicable, Probe, case

INIT = "src/acl/aclrt_impl/acl.cpp: "
HOLD_MARK = "@@ascend_safe-conformance-hold "


@case(
    "init.twice_then_finalize",
    "process",
    expect=[0, 100002, 0, 100037],
    phase="bare",
    isolated=True,
    evidence=INIT + "a second aclInit counts a reference and returns ACL_ERROR_REPEAT_INITIALIZE; "
    "aclFinalize clears the count; a second finalize -> ACL_ERROR_REPEAT_FINALIZE",
)
def _init_twice(p: Probe) -> Any:
    acl = p.acl
    return [acl.init(), acl.init(), acl.finalize(), acl.finalize()]


@case(
    "init.finalize_reference",
    "process",
    expect=[0, 100002, [1, 0], [0, 0], [0, 100037]],
    phase="bare",
    isolated=True,
    evidence=INIT + "aclFinalizeReference decrements the init count, finalizes at 0 and returns "
    "ACL_ERROR_REPEAT_FINALIZE when it is already 0",
)
def _finalize_reference(p: Probe) -> Any:
    acl = p.acl
    out: list[Any] = [acl.init(), acl.init()]
    out += [list(acl.finalize_reference()) for _ in range(3)]
    return out


@case(
    "init.finalize_before_init",
    "process",
    expect=100037,
    phase="bare",
    isolated=True,
    evidence=INIT + "aclFinalize with no init -> ACL_ERROR_REPEAT_FINALIZE",
)
def _finalize_first(p: Probe) -> Any:
    return p.acl.finalize()


@case(
    "process.forked_child_call",
    "process",
    expect=[0, 507899],
    isolated=True,
    evidence="pyacl Restrictions page: pyacl in a child forked after use is unsupported; the "
    "code is the simulator's choice (docs/simulator.md); a hang is reported as 'hang'",
)
def _forked(p: Probe) -> Any:
    if not hasattr(os, "fork"):
        raise NotApplicable("no os.fork on this platform")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the forked child: one call, its result through the pipe, no cleanup
        try:
            os.close(read_fd)
            result: Any = list(p.acl.rt.get_device_count())
        except BaseException as exc:
            result = f"{type(exc).__name__}: {exc}"
        try:
            os.write(write_fd, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        ready, _, _ = select.select([read_fd], [], [], 20.0)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            return "hang"
        data = b""
        while True:
            chunk = os.read(read_fd, 4096)
            if not chunk:
                break
            data += chunk
        return json.loads(data.decode()) if data else "no result"
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)


@case(
    "process.slots_per_device",
    "process",
    expect=207012,
    phase="bare",
    risky=True,
    timeout=600.0,
    evidence="pyacl Restrictions page: at most 64 processes per device (63 on A2/A3, 32 in a "
    "VM); the code for one more is the simulator's choice (docs/simulator.md)",
)
def _slots(p: Probe) -> Any:
    holders: list[subprocess.Popen[str]] = []

    def release() -> None:
        for holder in holders:
            if holder.stdin is not None:
                holder.stdin.close()
        deadline = time.monotonic() + 30.0
        for holder in holders:
            try:
                holder.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                holder.kill()
                holder.wait()

    p.defer(release)
    for count in range(1, 130):
        holder = subprocess.Popen(
            [sys.executable, "-m", "ascend_safe.conformance", "--hold-device", str(p.device)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        holders.append(holder)
        assert holder.stdout is not None
        line = holder.stdout.readline()
        while line and not line.startswith(HOLD_MARK):
            line = holder.stdout.readline()
        if not line:
            return f"holder {count} exited with status {holder.wait()} before reporting"
        ret = int(line[len(HOLD_MARK) :].strip())
        if ret != 0:
            p.note("processes_admitted", count - 1)
            return ret
    return "129 processes set the device without refusal"

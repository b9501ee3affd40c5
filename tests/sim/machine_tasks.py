"""A simulator client run in spawned processes by the machine tests (importable by children)."""

from __future__ import annotations

import os
from multiprocessing.connection import Connection
from typing import Any

from ascend_safe import sim


def serve(conn: Connection) -> None:
    """Use device 0 as told through *conn*: ``("malloc", n)``, ``("free", None)``,
    ``("info", None)``, ``("options", None)``, ``("exit", None)``; answer each one."""
    acl = sim.acl_module()
    ptrs: list[int] = []
    ready = acl.init(), acl.rt.set_device(0)
    conn.send((os.getpid(), ready))
    while True:
        command, arg = conn.recv()
        reply: Any
        if command == "malloc":
            ptr, ret = acl.rt.malloc(arg, 0)
            if ret == 0:
                ptrs.append(ptr)
            reply = ret
        elif command == "free":
            reply = acl.rt.free(ptrs.pop())
        elif command == "info":
            reply = acl.rt.get_mem_info(12)
        elif command == "options":
            reply = options(acl)
        else:
            break
        conn.send(reply)
    for ptr in ptrs:
        acl.rt.free(ptr)
    acl.rt.reset_device(0)
    acl.finalize()
    conn.send("bye")


def options(acl: Any) -> dict[str, Any]:
    """What the simulator in this process was configured with, seen through pyacl calls."""
    return {
        "soc_name": acl.get_soc_name(),
        "device_count": acl.rt.get_device_count()[0],
        "total": acl.rt.get_mem_info(12)[1],
        "run_mode": acl.rt.get_run_mode()[0],
        "state_dir": sim.state_dir(),
    }


def report_options() -> dict[str, Any]:
    """Start the simulated runtime and report :func:`options` (for a multiprocessing child)."""
    acl = sim.acl_module()
    assert acl.init() == 0 and acl.rt.set_device(0) == 0
    try:
        return options(acl)
    finally:
        acl.rt.reset_device(0)
        acl.finalize()

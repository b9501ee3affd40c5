"""Worker functions for the simulated-machine tests of the library (importable by workers)."""

from __future__ import annotations

from typing import Any

import ascend_safe as asf
from ascend_safe import sim, slots


@asf.worker()
def what_the_worker_sees() -> dict[str, Any]:
    """The simulator options and slot directories a pool worker runs with."""
    asf.current_device()
    acl = sim.acl_module()
    return {
        "soc_name": acl.get_soc_name(),
        "total": acl.rt.get_mem_info(12)[1],
        "state_dir": sim.state_dir(),
        "slot_paths": [slot.path for slot in slots.held_slots()],
    }

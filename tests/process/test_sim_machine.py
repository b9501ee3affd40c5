"""On the simulator, the library's process slots live in the simulated machine's state
directory, and worker pools run with the parent's simulator configuration."""

from __future__ import annotations

import os
import types
from pathlib import Path

import machine_pool_tasks
import pytest

import ascend_safe as asf
from ascend_safe import slots


def test_library_slots_live_in_the_simulated_machine(
    sim: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ASCEND_SAFE_SLOT_DIR", raising=False)
    machine = sim.state_dir()
    assert slots.slot_dir() == os.path.join(machine, "ascend_safe-slots")
    with asf.Device(0):
        held = slots.held_slots()
        assert held
        assert all(slot.path.startswith(machine + os.sep) for slot in held)


def test_worker_pool_runs_with_the_parents_configuration(
    sim: types.ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ASCEND_SAFE_SLOT_DIR", raising=False)
    sim.configure(soc_name="Ascend310P3", memory_per_device=3 << 30, state_dir=str(tmp_path))
    with asf.worker_pool(1) as pool:
        seen = pool.submit(machine_pool_tasks.what_the_worker_sees).result(timeout=60)
    assert seen["soc_name"] == "Ascend310P3"
    assert seen["total"] == 3 << 30
    assert seen["state_dir"] == str(tmp_path)
    assert seen["slot_paths"]
    assert all(p.startswith(str(tmp_path) + os.sep) for p in seen["slot_paths"])

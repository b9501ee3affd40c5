"""Kit tests: a fresh simulator per test, and the wrapper module importable by kit children."""

from __future__ import annotations

import os
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from ascend_safe import sim

HERE = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _fresh_simulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in ("RECORD_FILE", "ASYNC_DELAY", "RUN_MODE", "MAX_PROCS_PER_DEVICE"):
        monkeypatch.delenv("ASCEND_SAFE_SIM_" + name, raising=False)
    monkeypatch.setenv("ASCEND_SAFE_SIM_STATE_DIR", str(tmp_path / "sim-state"))
    # Kit children import the test-only wrappers (--wrap acl_proxy:...) from here.
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(HERE) + (os.pathsep + path if path else ""))
    sim.reset()
    sim.configure(async_delay=0.005)
    yield
    sim.reset()


@pytest.fixture
def acl() -> types.ModuleType:
    """The simulated acl module (not installed in sys.modules)."""
    return sim.acl_module()


@pytest.fixture(scope="session")
def sample_models(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The conformance kit's sample models, written in the simulator's model format."""
    from ascend_safe import conformance

    pytest.importorskip("numpy")
    directory = tmp_path_factory.mktemp("conformance-models")
    return conformance.write_sample_models(sim.write_model, str(directory))

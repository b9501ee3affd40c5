"""Every simulator test starts and ends with a fresh simulator."""

from __future__ import annotations

import types
from collections.abc import Iterator

import pytest

from ascend_safe import sim


@pytest.fixture(autouse=True)
def _fresh_simulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    names = ("RECORD_FILE", "ASYNC_DELAY", "RUN_MODE", "MAX_PROCS_PER_DEVICE", "CONFIG")
    names += ("STRICT",)
    for name in names:
        monkeypatch.delenv("ASCEND_SAFE_SIM_" + name, raising=False)
    sim.reset()
    yield
    sim.reset()


@pytest.fixture
def acl() -> types.ModuleType:
    """The simulated acl module (not installed in sys.modules)."""
    return sim.acl_module()


@pytest.fixture
def device(acl: types.ModuleType) -> Iterator[types.ModuleType]:
    """acl initialised with device 0 set in this thread; torn down cleanly afterwards."""
    assert acl.init() == 0
    assert acl.rt.set_device(0) == 0
    yield acl
    acl.rt.reset_device(0)
    acl.finalize()


@pytest.fixture(scope="session")
def sample_models(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The conformance kit's sample models, written in the simulator's model format."""
    from ascend_safe import conformance

    pytest.importorskip("numpy")
    directory = tmp_path_factory.mktemp("conformance-models")
    return conformance.write_sample_models(sim.write_model, str(directory))

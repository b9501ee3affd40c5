"""Every simulator test starts and ends with a fresh simulator."""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Callable

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


@pytest.fixture
def assert_case(acl: types.ModuleType) -> Callable[..., None]:
    """Run one conformance-kit case (by id) against the simulator and assert that it passes.

    The expectation is the case's, written once in ``ascend_safe.conformance``; keyword
    arguments are simulator options for a machine with the property the case needs. The kit
    does its own ``acl.init`` and ``set_device``, so the test starts uninitialised. Cases the
    kit isolates in a child process (on hardware a misuse could crash the caller) run inline
    here: the simulator does not crash.
    """
    from ascend_safe import conformance

    def run(case_id: str, **options: object) -> None:
        (case,) = [c for c in conformance.cases() if c.id == case_id]
        assert not case.risky, f"{case_id} is risky: it runs in test_conformance's children"
        assert not sim.initialized(), "assert_case runs the kit, which calls acl.init itself"
        if options:
            sim.configure(**options)
        (result,) = conformance.run_inline(acl, [case])
        assert (result.status, result.observed, result.detail) == ("pass", case.expect, "")
        assert sim.live_handles() == {}

    return run


@pytest.fixture(scope="session")
def sample_models(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The conformance kit's sample models, written in the simulator's model format."""
    from ascend_safe import conformance

    pytest.importorskip("numpy")
    directory = tmp_path_factory.mktemp("conformance-models")
    return conformance.write_sample_models(sim.write_model, str(directory))

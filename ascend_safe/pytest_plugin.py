"""pytest fixtures for code that uses ascend_safe: a fresh simulator per test, leak-checked.

Enable with ``pytest_plugins = ["ascend_safe.pytest_plugin"]`` in a ``conftest.py``. The
``ascend_sim`` fixture resets the simulator, yields its module, and fails the test if any
resource is still open or the simulator recorded a violation. The test session runs on a
simulated machine of its own (``ascend_sim_machine``), so concurrent sessions and other
simulated programs never share device memory or process slots with it.
"""

from __future__ import annotations

import os
import types
from collections.abc import Iterator

import pytest

__all__ = ["ascend_sim", "ascend_sim_machine"]

_STATE_DIR = "ASCEND_SAFE_SIM_STATE_DIR"


@pytest.fixture(scope="session")
def ascend_sim_machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The state directory of this session's simulated machine: a temporary one, set in the
    environment so processes the tests start use it too (kept if ``ASCEND_SAFE_SIM_STATE_DIR``
    is already set)."""
    given = os.environ.get(_STATE_DIR)
    if given:
        yield given
        return
    path = str(tmp_path_factory.mktemp("ascend_sim_machine"))
    os.environ[_STATE_DIR] = path
    try:
        yield path
    finally:
        if os.environ.get(_STATE_DIR) == path:
            del os.environ[_STATE_DIR]


@pytest.fixture
def ascend_sim(ascend_sim_machine: str) -> Iterator[types.ModuleType]:
    """The simulator, fresh for this test; asserts no leak and no violation afterwards."""
    os.environ.setdefault("ASCEND_SAFE_BACKEND", "sim")
    from . import _backend, _lifetime, sim

    if _backend.backend_name() != "sim":
        pytest.skip("the ascend_sim fixture needs ASCEND_SAFE_BACKEND=sim")

    _reset()
    yield sim
    left = _lifetime.live_resources()
    for root in _lifetime.roots():
        root.close()
    handles = sim.live_handles()
    violations = sim.violations()
    _reset()
    assert not left, f"resources left open by the test: {_lifetime.leak_report(left)}"
    assert handles == {}, f"simulator handles left live: {handles}"
    assert violations == [], f"simulator recorded violations: {violations}"


def _reset() -> None:
    from . import _lifetime, _runtime, sim

    for root in _lifetime.roots():
        try:
            root.close()
        except Exception:
            pass
    sim.reset()
    _runtime.forget_initialization()

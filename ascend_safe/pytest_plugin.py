"""pytest support for code that uses ascend_safe or raw pyacl: a fresh simulator per test,
leak-checked.

Installed with ascend_safe, the plugin is registered through the ``pytest11`` entry point and
does nothing unless asked, in one of three ways:

- request the ``ascend_sim`` fixture;
- mark a test (or module, with ``pytestmark``) ``@pytest.mark.ascend_sim``;
- run ``pytest --ascend-sim`` to apply it to every test.

A checked test runs on a reset simulator, with ``import acl`` giving the simulator (so raw
pyacl code can be tested too) and creation sites recorded. Afterwards it fails if a resource
is still open (naming each one and where it was created), if the simulator still holds handles,
or if it recorded a violation. The test session runs on a simulated machine of its own
(``ascend_sim_machine``), so concurrent sessions and other simulated programs never share
device memory or process slots with it.

Without the entry point (a source checkout), enable it with
``pytest_plugins = ["ascend_safe.pytest_plugin"]`` in the root ``conftest.py``.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Iterator

import pytest

__all__ = ["ascend_sim", "ascend_sim_machine"]

_STATE_DIR = "ASCEND_SAFE_SIM_STATE_DIR"
_MARKER = "ascend_sim"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ascend_safe")
    group.addoption(
        "--ascend-sim",
        action="store_true",
        default=False,
        help="run every test on a fresh pyacl simulator and fail tests that leave ascend_safe "
        "resources or pyacl handles open",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_MARKER}: run the test on a fresh pyacl simulator (import acl included) and fail it "
        "if it leaves resources or handles open",
    )


@pytest.fixture(autouse=True)
def _ascend_sim_when_asked(request: pytest.FixtureRequest) -> None:
    """Applies ``ascend_sim`` to marked tests, or to all with ``--ascend-sim``; else nothing."""
    if "ascend_sim" in request.fixturenames:
        return
    if request.node.get_closest_marker(_MARKER) is not None or request.config.getoption(
        "ascend_sim", default=False
    ):
        request.getfixturevalue("ascend_sim")


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
    """The simulator, fresh for this test, also as ``import acl``; fails the test if anything
    is left open or a violation was recorded."""
    os.environ.setdefault("ASCEND_SAFE_BACKEND", "sim")
    from . import _backend, _lifetime, sim

    if _backend.backend_name() != "sim":
        pytest.skip("the ascend_sim fixture needs ASCEND_SAFE_BACKEND=sim")

    _reset()
    installed = sys.modules.get("acl") is None
    if installed:
        sim.install()
    tracing = _lifetime.set_tracing(True)
    try:
        yield sim
    finally:
        _lifetime.set_tracing(tracing)
        if installed:
            sim.uninstall()
    left = _lifetime.live_resources()
    described = [_describe(r) for r in left]
    for root in _lifetime.roots():
        try:
            root.close()
        except Exception:
            pass
    handles = sim.live_handles()
    violations = sim.violations()
    _reset()
    problems = []
    if described:
        count = f"{len(described)} resource{'s' if len(described) != 1 else ''}"
        problems.append(
            f"the test left {count} open (closed now; close them in the test, or use `with`):\n"
            + "\n".join(f"  - {text}" for text in described)
        )
    if handles:
        held = ", ".join(f"{len(ids)} {kind.replace('_', ' ')}" for kind, ids in handles.items())
        problems.append(
            f"pyacl handles were still live after the test ({held}): raw acl calls created "
            "them without the matching destroy, free or reset_device"
        )
    if violations:
        problems.append(
            "the simulator caught pyacl misuse:\n"
            + "\n".join(f"  - {v.api}: {v.kind}: {v.detail}" for v in violations)
        )
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def _describe(resource: object) -> str:
    site = getattr(resource, "created_at", None)
    return repr(resource) if site is None else f"{resource!r}, created at {site}"


def _reset() -> None:
    from . import _lifetime, _runtime, sim

    for root in _lifetime.roots():
        try:
            root.close()
        except Exception:
            pass
    sim.reset()
    _runtime.forget_initialization()

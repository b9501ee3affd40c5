"""Process-safety tests: a fresh simulator per test, leak- and violation-checked."""

from __future__ import annotations

import types
from collections.abc import Iterator

import pytest

import ascend_safe as asf


@pytest.fixture(autouse=True)
def sim(ascend_sim: types.ModuleType) -> Iterator[types.ModuleType]:
    """The simulator module; the fork policy is back to its default afterwards."""
    yield ascend_sim
    asf.set_fork_policy("sync")

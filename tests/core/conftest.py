"""Core-resource tests: each test gets a fresh simulator and must leave nothing behind."""

from __future__ import annotations

import types
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def sim(ascend_sim: types.ModuleType) -> Iterator[types.ModuleType]:
    """The simulator module, reset before the test and leak-checked after it."""
    yield ascend_sim

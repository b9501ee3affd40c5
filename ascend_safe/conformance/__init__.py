"""The conformance kit: the simulator's claims about pyacl, checked against a real NPU.

Each case probes one behaviour of the ``acl`` module (return shapes, error codes, argument
parsing, async semantics, events, memory, models, process rules) and compares what it observes
with the expectation the simulator implements, written once next to the case with its evidence in
pyACL's source or docs. The simulator's own tests run the same cases, so an expectation is
stated in one place. ``python -m ascend_safe conformance`` runs the kit (docs/conformance.md).

The kit talks only to an ``acl`` module object: it imports no resource class of the library.
"""

from __future__ import annotations

# The case modules register their cases on import.
from . import (  # noqa: F401
    cases_async,
    cases_callbacks,
    cases_descriptors,
    cases_errors,
    cases_memory,
    cases_models,
    cases_parsing,
    cases_process,
    cases_shapes,
)
from ._case import CATEGORIES, Case, NotApplicable, Probe, SetupError, case, cases, shape
from ._report import Report, run, select
from ._runner import Result, run_in_children, run_inline
from .cases_models import SAMPLE_MODELS, write_sample_models

__all__ = [
    "CATEGORIES",
    "SAMPLE_MODELS",
    "Case",
    "NotApplicable",
    "Probe",
    "Report",
    "Result",
    "SetupError",
    "case",
    "cases",
    "run",
    "run_in_children",
    "run_inline",
    "select",
    "shape",
    "write_sample_models",
]

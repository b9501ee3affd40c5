"""The kit's entry point (:func:`run`) and its report: environment, per-case results, summary."""

from __future__ import annotations

import fnmatch
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Optional

from .. import _backend
from ..errors import describe
from ._case import CATEGORIES, Case, cases
from ._runner import Result, run_in_children, run_inline

__all__ = ["Report", "collect_environment", "run", "select"]

#: ``get_cann_version`` package ids (aclCANNPackageName in acl_base_rt.h).
_PKG_CANN = 0
_PKG_DRIVER = 7


def _try(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def _version(acl: Any, package: int) -> Optional[str]:
    get = getattr(acl, "get_cann_version", None)
    if get is None:
        return None
    result = _try(get, package)
    if isinstance(result, tuple) and len(result) == 2 and result[1] == 0:
        info = result[0]
        if isinstance(info, dict):
            return str(info.get("version", info))
        return str(info)
    return None


def collect_environment(acl: Any, into: dict[str, Any]) -> None:
    """What the report says about the machine; each item is best-effort (called with the
    kit's device set, so that calls needing a device work)."""
    into["soc"] = _try(acl.get_soc_name)
    into["cann_version"] = _version(acl, _PKG_CANN)
    into["driver_version"] = _version(acl, _PKG_DRIVER)
    version = _try(acl.get_version)
    if isinstance(version, tuple) and len(version) == 4 and version[3] == 0:
        into["acl_api_version"] = ".".join(str(v) for v in version[:3])
    mode = _try(acl.rt.get_run_mode)
    if isinstance(mode, tuple) and len(mode) == 2 and mode[1] == 0:
        into["run_mode"] = {0: "ACL_DEVICE (0)", 1: "ACL_HOST (1)"}.get(mode[0], str(mode[0]))
    count = _try(acl.rt.get_device_count)
    if isinstance(count, tuple) and len(count) == 2 and count[1] == 0:
        into["device_count"] = count[0]


def select(
    pattern: Optional[str] = None, *, risky: bool = False, selected: Optional[list[Case]] = None
) -> tuple[list[Case], list[Case]]:
    """Cases to run and risky cases left out. *pattern* is a glob matched against the id and
    the category (a pattern without wildcards matches as a substring of the id)."""
    chosen = cases() if selected is None else list(selected)
    if pattern:
        glob = pattern if any(ch in pattern for ch in "*?[") else f"*{pattern}*"
        chosen = [
            c
            for c in chosen
            if fnmatch.fnmatchcase(c.id, glob) or fnmatch.fnmatchcase(c.category, pattern)
        ]
    left_out = [c for c in chosen if c.risky and not risky]
    return [c for c in chosen if risky or not c.risky], left_out


@dataclass
class Report:
    """Results of one run, with what is known about the machine."""

    environment: dict[str, Any]
    results: list[Result]
    left_out: list[Case] = field(default_factory=list)

    def count(self, status: str) -> int:
        """How many cases ended with *status*."""
        return sum(1 for r in self.results if r.status == status)

    @property
    def ok(self) -> bool:
        """True when no case differed or errored (skipped cases do not apply here)."""
        return all(r.status in ("pass", "skipped") for r in self.results)

    def by_category(self) -> dict[str, dict[str, int]]:
        """Per category: how many cases passed, differed and errored."""
        table: dict[str, dict[str, int]] = {}
        for category in CATEGORIES:
            rows = [r for r in self.results if r.case.category == category]
            if rows:
                table[category] = {
                    s: sum(1 for r in rows if r.status == s)
                    for s in ("pass", "differ", "error", "skipped")
                }
        return table

    def environment_line(self) -> str:
        """One line naming backend, CANN, driver, SoC and run mode."""
        env = self.environment
        parts = [
            f"backend {env.get('backend')}",
            f"CANN {env.get('cann_version') or 'unknown'}",
            f"driver {env.get('driver_version') or 'unknown'}",
            f"SoC {env.get('soc') or 'unknown'}",
            f"run mode {env.get('run_mode') or 'unknown'}",
            f"ACL API {env.get('acl_api_version') or 'unknown'}",
            f"Python {env.get('python')}",
            f"ascend_safe {env.get('ascend_safe')}",
        ]
        return " · ".join(parts)

    def summary(self) -> str:
        """A short text ready to paste into a bug report."""
        total = len(self.results)
        lines = [
            f"ascend_safe conformance: {total} case{'' if total == 1 else 's'}, "
            f"{self.count('pass')} pass, "
            f"{self.count('differ')} differ, {self.count('error')} error, "
            f"{self.count('skipped')} not applicable",
            self.environment_line(),
        ]
        if self.left_out:
            lines.append(f"{len(self.left_out)} risky cases not run (use --risky)")
        for result in self.results:
            if result.status == "pass":
                continue
            lines.append(f"- {result.status}: {result.case.id}")
            lines.append(f"    expected {_show(result.case.expect)}")
            if result.status == "differ":
                lines.append(f"    observed {_show(result.observed)}")
            if result.detail:
                lines.append(f"    {result.detail}")
            lines.append(f"    evidence: {result.case.evidence}")
        return "\n".join(lines)

    def text(self) -> str:
        """The full human-readable report: every case, then the summary."""
        lines = []
        for result in self.results:
            lines.append(f"{result.status.upper():6} {result.case.id}")
        lines.append("")
        for category, counts in self.by_category().items():
            lines.append(
                f"{category:<14} {counts['pass']:3} pass {counts['differ']:3} differ "
                f"{counts['error']:3} error {counts['skipped']:3} n/a"
            )
        lines.append("")
        lines.append(self.summary())
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The whole report as JSON data."""
        return {
            "environment": self.environment,
            "summary": {
                "cases": len(self.results),
                "pass": self.count("pass"),
                "differ": self.count("differ"),
                "error": self.count("error"),
                "skipped": self.count("skipped"),
                "risky_not_run": [c.id for c in self.left_out],
                "by_category": self.by_category(),
                "text": self.summary(),
            },
            "cases": [r.to_json() for r in self.results],
        }


def _show(value: Any) -> str:
    text = repr(value)
    if type(value) is int and value >= 100000:
        text += f" ({describe(value).name})"
    return text


def run(
    acl: Any = None,
    *,
    pattern: Optional[str] = None,
    risky: bool = False,
    device: int = 0,
    selected: Optional[list[Case]] = None,
    wrap: Optional[str] = None,
    models: Sequence[str] = (),
) -> Report:
    """Run the conformance cases against *acl* (default: the backend in use).

    Cases that need a child process run in ``python -m ascend_safe.conformance --child``
    children, which use the backend that ``ASCEND_SAFE_BACKEND`` selects, wrapped by *wrap*
    (``"module:function"``; a test-only hook) when given. *models* are model files for the
    model cases (``--model PATH``); without one that fits, a model case is skipped.
    """
    if acl is None:
        acl = _backend.acl()
    chosen, left_out = select(pattern, risky=risky, selected=selected)
    environment: dict[str, Any] = {
        "backend": "sim" if getattr(acl, "__ascend_safe_sim__", False) else "acl",
        "python": platform.python_version(),
        "platform": f"{sys.platform} {platform.machine()}",
        "ascend_safe": _package_version(),
        "device": device,
        "models": [str(m) for m in models],
    }
    inline = [c for c in chosen if not c.in_child]
    children = [c for c in chosen if c.in_child]
    results = run_inline(
        acl,
        inline,
        device=device,
        on_device=lambda m: collect_environment(m, environment),
        models=models,
    )
    if children:
        results += run_in_children(children, device=device, wrap=wrap, models=models)
    order = {c.id: i for i, c in enumerate(chosen)}
    results.sort(key=lambda r: order[r.case.id])
    return Report(environment=environment, results=results, left_out=left_out)


def _package_version() -> str:
    try:
        return version("ascend-safe")
    except PackageNotFoundError:
        return "unknown"

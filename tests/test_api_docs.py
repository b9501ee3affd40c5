"""The reference docs match the code: docs/api.md is what docs/gen_api.py makes of the public
names, and docs/troubleshooting.md covers every public exception class."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import ascend_safe
import ascend_safe.errors

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_api_md_is_current() -> None:
    proc = subprocess.run(
        [sys.executable, str(DOCS / "gen_api.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, ASCEND_SAFE_BACKEND="sim"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_public_name_has_an_entry() -> None:
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^### `([\w]+)", text, re.M))
    missing = sorted(set(ascend_safe.__all__) - headings)
    assert not missing, f"not in docs/api.md: {missing}"


def split_top_level(params: str) -> list[str]:
    """Split a parameter list at the commas outside brackets."""
    parts, depth, current = [], 0, ""
    for ch in params:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current)
    return parts


def test_listed_signatures_match_the_code() -> None:
    # Independent of the generator's formatting: the parameter names, in order, of every
    # function and class heading are those inspect.signature reports.
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    checked = 0
    for name, params in re.findall(r"^### `(\w+)\((.*)\)", text, re.M):
        listed = [
            p.split(":")[0].split("=")[0].strip().lstrip("*")
            for p in split_top_level(params)
            if p.strip() not in ("*", "/")
        ]
        actual = [
            p for p in inspect.signature(getattr(ascend_safe, name)).parameters if p != "self"
        ]
        assert listed == actual, f"{name}: api.md lists {listed}, the code has {actual}"
        checked += 1
    assert checked >= 30


def public_exception_classes() -> list[str]:
    return sorted(
        name
        for name, obj in vars(ascend_safe.errors).items()
        if not name.startswith("_")
        and inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == ascend_safe.errors.__name__
    )


def test_troubleshooting_covers_every_exception_class() -> None:
    names = public_exception_classes()
    assert "ResourceClosedError" in names and "OutOfDeviceMemoryError" in names
    text = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^#+ .*?`(\w+)`", text, re.M))
    missing = [n for n in names if n not in headings]
    assert not missing, f"docs/troubleshooting.md has no section for {missing}"


def test_troubleshooting_covers_every_code_family() -> None:
    text = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    for family in ("1xxxxx", "107xxx", "207xxx", "507xxx", "145xxx", "545xxx"):
        assert re.search(rf"^#+ .*{family}", text, re.M), family

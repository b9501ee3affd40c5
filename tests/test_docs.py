"""Every code block in README.md and docs/*.md runs as written.

Each ```python block runs as a script of its own in a fresh interpreter on the simulator (a
block written for ``python file.py``, with ``if __name__ == "__main__":`` and spawned workers,
runs that way). A block preceded by ``<!-- not-run: reason -->`` is a fragment and is skipped;
the reason must be given. ``python -m ascend_safe <subcommand>`` lines in ```sh blocks must
name a subcommand the CLI has.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
_NOT_RUN = re.compile(r"<!--\s*not-run:\s*(.*?)\s*-->\s*$")


class Block(NamedTuple):
    path: Path
    line: int
    lang: str
    code: str
    not_run: str | None

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(lang: str) -> list[Block]:
    found = []
    for path in DOC_FILES:
        text = path.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            if match.group(1) != lang:
                continue
            line = text.count("\n", 0, match.start()) + 1
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            marker = _NOT_RUN.search(before)
            found.append(
                Block(path, line, lang, match.group(2), marker.group(1) if marker else None)
            )
    return found


PYTHON_BLOCKS = blocks("python")
SH_BLOCKS = blocks("sh")


def test_blocks_are_found() -> None:
    # The README alone has several runnable examples; an empty list means the parser broke.
    assert sum(1 for b in PYTHON_BLOCKS if b.path.name == "README.md") >= 3
    assert any(b.path.parent.name == "docs" for b in PYTHON_BLOCKS)


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[b.id for b in PYTHON_BLOCKS])
def test_python_block_runs(block: Block, tmp_path: Path) -> None:
    if block.not_run is not None:
        assert block.not_run.strip(), f"{block.id}: a not-run marker must give its reason"
        pytest.skip(f"fragment: {block.not_run}")
    script = tmp_path / "block.py"
    script.write_text(block.code, encoding="utf-8")
    env = dict(os.environ, ASCEND_SAFE_BACKEND="sim", PYTHONWARNINGS="default::ResourceWarning")
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, (
        f"{block.id} failed (exit {proc.returncode}):\n{block.code}\n"
        f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )
    # A block that leaves a resource open is a bad example even when it exits 0.
    assert "ResourceWarning" not in proc.stderr, f"{block.id}:\n{proc.stderr}"


def _cli_subcommands() -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "ascend_safe", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, ASCEND_SAFE_BACKEND="sim"),
    )
    assert proc.returncode == 0, proc.stderr
    match = re.search(r"\{([\w,-]+)\}", proc.stdout)
    assert match, proc.stdout
    return set(match.group(1).split(","))


def test_sh_blocks_name_real_subcommands() -> None:
    subcommands = _cli_subcommands()
    used = []
    for block in SH_BLOCKS:
        for match in re.finditer(r"-m ascend_safe ([\w-]+)", block.code):
            used.append((block.id, match.group(1)))
    assert used, "no `python -m ascend_safe` command found in any sh block"
    unknown = [(where, name) for where, name in used if name not in subcommands]
    assert not unknown, f"unknown subcommands {unknown}; the CLI has {sorted(subcommands)}"


def test_not_run_markers_are_rare() -> None:
    skipped = [b.id for b in PYTHON_BLOCKS if b.not_run is not None]
    assert len(skipped) <= max(2, len(PYTHON_BLOCKS) // 5), skipped


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.*)$", text, re.M)}


def test_relative_links_resolve() -> None:
    broken = []
    for path in DOC_FILES:
        text = _FENCE.sub("", path.read_text(encoding="utf-8"))
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            if not dest.exists():
                broken.append(f"{path.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{path.name}: {target} (no such heading)")
    assert not broken, broken

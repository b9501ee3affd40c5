"""What a type checker sees of the public API (run only when mypy is installed)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

ROOT = Path(__file__).resolve().parent.parent


def _check(tmp_path: Path, code: str) -> tuple[str, int]:
    """Type-check *code* against the package; the library's own modules are not reported."""
    snippet = tmp_path / "snippet.py"
    snippet.write_text(textwrap.dedent(code))
    out, err, status = mypy_api.run(
        [
            "--strict",
            "--follow-imports=silent",
            "--no-error-summary",
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            str(snippet),
        ]
    )
    return out + err, status


def test_with_block_keeps_the_resource_type(tmp_path: Path) -> None:
    out, status = _check(
        tmp_path,
        """
        import ascend_safe as asf

        def f(dev: asf.Device) -> None:
            with asf.Stream(dev) as s:
                s.synchronize()
            with asf.Event(dev) as e, dev.malloc(16) as m, dev.malloc_host(16) as h:
                e.synchronize()
                m.copy_from(h)
            with asf.Device(0) as d:
                d.synchronize()
            with asf.Context(dev) as c, c.stream(priority=0) as cs:
                c.event(enable_timing=True).record(cs)
                c.malloc_host(8).copy_from(b"12345678")
        """,
    )
    assert status == 0, out


def test_misspelled_member_and_keyword_are_caught(tmp_path: Path) -> None:
    out, status = _check(
        tmp_path,
        """
        import ascend_safe as asf

        def f(dev: asf.Device) -> None:
            with asf.Stream(dev) as s:
                s.synchronise()
            asf.Stream(dev, priorty=1)
            dev.event(enable_timng=True)
            dev.context().event(enable_timing="yes")
        """,
    )
    assert status == 1, out
    assert '"Stream" has no attribute "synchronise"' in out
    assert 'Unexpected keyword argument "priorty"' in out
    assert 'Unexpected keyword argument "enable_timng"' in out
    assert 'Argument "enable_timing" to "event"' in out

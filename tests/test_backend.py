"""Backend selection (ASCEND_SAFE_BACKEND) and the pyacl boundary, in fresh interpreters."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest


def _run(code: str, backend: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ASCEND_SAFE_BACKEND"}
    if backend is not None:
        env["ASCEND_SAFE_BACKEND"] = backend
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )


def _pyacl_installed() -> bool:
    probe = "import importlib.util,sys; sys.exit(importlib.util.find_spec('acl') is None)"
    return subprocess.run([sys.executable, "-c", probe]).returncode == 0


needs_no_pyacl = pytest.mark.skipif(_pyacl_installed(), reason="real pyacl is installed here")


@needs_no_pyacl
@pytest.mark.parametrize("backend", [None, "auto", ""])
def test_auto_falls_back_to_the_simulator_with_one_warning(backend):
    proc = _run(
        "import ascend_safe as a; print(a.backend_name()); print(a.backend_name())", backend
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["sim", "sim"]
    assert proc.stderr.count("ascend_safe uses its simulator") == 1


def test_sim_is_silent():
    proc = _run("import ascend_safe as a; print(a.backend_name())", "sim")
    assert proc.returncode == 0 and proc.stdout.strip() == "sim"
    assert proc.stderr == ""


@needs_no_pyacl
def test_acl_without_pyacl_is_an_error_not_a_fallback():
    proc = _run(
        "import ascend_safe as a\n"
        "try:\n    a.Device(0)\n"
        "except a.BackendUnavailableError as e:\n    print('refused:', e)\n",
        "acl",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("refused:")
    assert "ASCEND_SAFE_BACKEND=sim" in proc.stdout


def test_bad_backend_value_is_explained():
    proc = _run("import ascend_safe as a; a.backend_name()", "cuda")
    assert proc.returncode != 0
    assert "ASCEND_SAFE_BACKEND='cuda' is not valid" in proc.stderr


def test_installed_simulator_counts_as_sim():
    proc = _run(
        "from ascend_safe import sim; sim.install()\n"
        "import acl, ascend_safe as a; print(a.backend_name(), acl.__name__)",
        "auto",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["sim", "acl"]


def test_only_the_boundary_imports_acl():
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1] / "ascend_safe"
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if "sim" not in p.relative_to(root).parts
        and p.name != "_backend.py"
        and any(
            line.strip().startswith(("import acl", "from acl"))
            for line in p.read_text().splitlines()
        )
    ]
    assert offenders == []


def test_demo_runs_and_ends_with_an_empty_leak_report():
    proc = subprocess.run(
        [sys.executable, "-m", "ascend_safe", "demo", "--batches", "12"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "verified 12/12 batches" in proc.stdout
    if importlib.util.find_spec("numpy") is not None:
        assert "verified 64/64 batches against numpy" in proc.stdout
        assert proc.stdout.count("model loaded 1 time(s)") == 2  # once per worker process
    assert proc.stdout.rstrip().endswith("leak report: 0 live resources")
    assert proc.stderr == ""


def test_doctor_reports_the_environment():
    proc = subprocess.run(
        [sys.executable, "-m", "ascend_safe", "doctor"],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, ASCEND_SAFE_BACKEND="sim", ASCEND_SAFE_MAX_PROCS="7"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "backend: the simulator (ASCEND_SAFE_BACKEND=sim)" in proc.stdout
    assert "process_slots: 7 processes allowed per device" in proc.stdout
    assert "oom_killer:" in proc.stdout


POOL_TASKS = """\
import os
import ascend_safe as asf


@asf.worker()
def where():
    return os.getpid(), asf.current_device().id, asf.backend_name()
"""

POOL_MAIN = """\
import ascend_safe as asf
import tasks

if __name__ == "__main__":
    with asf.worker_pool(6, devices=[0, 1]) as pool:
        answers = [f.result() for f in [pool.submit(tasks.where) for _ in range(24)]]
    print(len({pid for pid, _, _ in answers}), sorted({b for _, _, b in answers}))
"""


def _run_pool(tmp_path, *flags: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "tasks.py").write_text(POOL_TASKS)
    (tmp_path / "main.py").write_text(POOL_MAIN)
    env = {k: v for k, v in os.environ.items() if k != "ASCEND_SAFE_BACKEND"}
    return subprocess.run(
        [sys.executable, *flags, "main.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@needs_no_pyacl
def test_a_worker_pool_falls_back_with_one_warning(tmp_path):
    proc = _run_pool(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("[")[1].strip() == "'sim']"
    assert proc.stderr.count("ascend_safe uses its simulator") == 1, proc.stderr
    assert "BackendFallbackWarning" in proc.stderr


@needs_no_pyacl
def test_the_fallback_warning_obeys_warning_filters(tmp_path):
    # -W resolves only built-in categories at startup: filter by message, or by the base class
    quiet = _run_pool(tmp_path, "-W", "ignore:pyacl (import acl) is not available")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "", quiet.stderr
    strict = _run_pool(tmp_path, "-W", "error::UserWarning")
    assert strict.returncode != 0
    assert "BackendFallbackWarning: pyacl (import acl) is not available" in strict.stderr


@needs_no_pyacl
def test_the_fallback_warning_category_can_be_filtered_in_code():
    proc = _run(
        "import warnings, ascend_safe as a\n"
        "warnings.simplefilter('error', a.BackendFallbackWarning)\n"
        "try:\n    a.Device(0)\n"
        "except a.BackendFallbackWarning as w:\n    print('caught:', type(w).__name__)\n",
        "auto",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "caught: BackendFallbackWarning"

"""The conformance kit itself: it detects a changed behaviour, isolates crashes and hangs,
cleans up after failing cases, and reports through ``python -m ascend_safe conformance``."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any, Callable

import pytest
from acl_proxy import AclProxy

from ascend_safe import _backend, cli, conformance, sim
from ascend_safe.conformance import Case, Probe

Changes = dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]]


def _by_id(case_id: str) -> Case:
    return next(c for c in conformance.cases() if c.id == case_id)


def _outcomes(report: conformance.Report) -> dict[str, tuple[str, Any]]:
    return {r.case.id: (r.status, r.observed) for r in report.results}


def _inline_cases() -> list[Case]:
    return [c for c in conformance.cases() if not c.in_child]


@pytest.fixture(scope="module")
def baseline(sample_models: list[str]) -> dict[str, tuple[str, Any]]:
    """Every in-process case on the unchanged simulator (pending simulator fixes differ)."""
    sim.reset()
    sim.configure(async_delay=0.005)
    report = conformance.run(sim.acl_module(), selected=_inline_cases(), models=sample_models)
    sim.reset()
    return _outcomes(report)


#: One sample per category at least: the case, and the one behaviour changed to upset it.
SAMPLES: dict[str, Changes] = {
    # (after acl.init the SoC name is an input of other cases: left alone there)
    "get_soc_name.before_init": {
        "get_soc_name": lambda f: lambda: f() if sim.initialized() else None
    },
    "get_version.before_init": {"get_version": lambda f: lambda *a: f(*a)[1:]},
    "rt.stream.shapes": {
        "rt.create_stream_with_config": lambda f: lambda *a: list(f(*a)) if a == (0, 0) else f(*a)
    },
    "get_cann_version.keys": {
        "get_cann_version": lambda f: (
            lambda pkg: (
                lambda r: (
                    ({k: v for k, v in r[0].items() if k != "reserved"}, r[1]) if r[1] == 0 else r
                )
            )(f(pkg))
        )
    },
    "rt.null_handles": {"rt.destroy_event": lambda f: lambda h: 107017 if h == 0 else f(h)},
    "rt.synchronize_with_timeout.below_minus_one": {
        "rt.synchronize_event_with_timeout": lambda f: lambda e, t: 0 if t == -2 else f(e, t)
    },
    "args.type_error.rt.malloc.float_size": {
        "rt.malloc": lambda f: lambda *a: (0, 100000) if a and isinstance(a[0], float) else f(*a)
    },
    "args.keyword_arguments": {"rt.get_mem_info": lambda f: lambda *a, **k: f(*a, *k.values())},
    "rt.memcpy_async.pinned_round_trip_in_order": {
        "rt.memset_async": lambda f: lambda d, m, v, c, s: 0 if c == 16 else f(d, m, v, c, s)
    },
    "rt.memcpy_async.host_to_host_in_host_mode": {
        "rt.memcpy_async": lambda f: lambda d, m, s, c, k, st: 0 if k == 0 else f(d, m, s, c, k, st)
    },
    "rt.query_event.status_polarity": {
        "rt.query_event_status": lambda f: lambda e: (lambda r: (1 - r[0], r[1]))(f(e))
    },
    "rt.stream_query.complete_after_sync": {"rt.stream_query": lambda f: lambda s: (1, 0)},
    "rt.memset.fills": {"rt.memset": lambda f: lambda d, m, v, c: f(d, m, v ^ 1, c)},
    "mdl.execute.sync_and_async_agree": {"mdl.execute_async": lambda f: lambda *a: 507011},
    "rt.get_mem_info.counts_allocations": {
        "rt.get_mem_info": lambda f: (
            lambda a: (lambda r: (1 << 20, r[1], r[2]) if r[2] == 0 else r)(f(a))
        )
    },
}


def test_samples_cover_every_category() -> None:
    sampled = {_by_id(case_id).category for case_id in SAMPLES}
    # The process category runs in children: test_child_wrapper_makes_its_case_differ.
    assert sampled | {"process"} == set(conformance.CATEGORIES)


@pytest.mark.parametrize("case_id", sorted(SAMPLES))
def test_one_changed_behaviour_makes_exactly_its_case_differ(
    case_id: str,
    baseline: dict[str, tuple[str, Any]],
    acl: types.ModuleType,
    sample_models: list[str],
) -> None:
    assert baseline[case_id][0] == "pass"
    report = conformance.run(
        AclProxy(acl, SAMPLES[case_id]), selected=_inline_cases(), models=sample_models
    )
    outcomes = _outcomes(report)
    changed = {i for i in outcomes if outcomes[i] != baseline[i]}
    assert changed == {case_id}
    assert outcomes[case_id][0] == "differ"
    assert sim.live_handles() == {}


def test_child_wrapper_makes_its_case_differ() -> None:
    children = [c for c in conformance.cases() if c.category == "process" and not c.risky]
    plain = _outcomes(conformance.run(selected=children))
    assert {status for status, _ in plain.values()} == {"pass"}
    wrapped = _outcomes(
        conformance.run(selected=children, wrap="acl_proxy:wrap_forked_child_sees_five_devices")
    )
    changed = {i for i in wrapped if wrapped[i] != plain[i]}
    assert changed == {"process.forked_child_call"}
    assert wrapped["process.forked_child_call"] == ("differ", [5, 0])


def test_a_crash_costs_only_its_case() -> None:
    selected = [
        _by_id("rt.free.double_free"),
        _by_id("rt.free_host.double_free"),
        _by_id("destroy_data_buffer.twice"),
    ]
    results = conformance.run_in_children(selected, wrap="acl_proxy:wrap_free_host_kills_process")
    assert [r.status for r in results] == ["pass", "error", "pass"]
    assert "killed by SIGKILL during this case" in results[1].detail


def test_a_hang_costs_only_its_case() -> None:
    hanging = dataclasses.replace(_by_id("rt.destroy_stream.twice"), timeout=1.0)
    selected = [hanging, _by_id("rt.destroy_event.twice")]
    started = time.monotonic()
    results = conformance.run_in_children(selected, wrap="acl_proxy:wrap_destroy_stream_hangs")
    assert time.monotonic() - started < 30
    assert [r.status for r in results] == ["error", "pass"]
    assert "timed out after 1 s" in results[0].detail


def _crashing_probe(p: Probe) -> Any:
    p.malloc(128)
    p.malloc_host(128)
    p.stream()
    p.event()
    p.context()
    p.stream()
    raise RuntimeError("the probe broke half-way")


def test_a_failing_case_leaves_nothing_allocated(acl: types.ModuleType) -> None:
    broken = Case("kit.broken", "memory", "test", True, _crashing_probe)
    failing_setup = Case("kit.setup", "memory", "test", True, lambda p: p.ok("rt.malloc", 0, 0))
    session: list[dict[str, list[int]]] = []
    after_case: list[dict[str, list[int]]] = []
    results = conformance.run_inline(
        acl,
        [broken, failing_setup],
        on_device=lambda _: session.append(sim.live_handles()),
        report=lambda _: after_case.append(sim.live_handles()),
    )
    # Right after each case, only the kit's own device session is left.
    assert session == [{"device": [0]}]
    assert after_case == session * 2
    assert [r.status for r in results] == ["error", "error"]
    assert results[0].detail == "probe raised RuntimeError: the probe broke half-way"
    assert results[1].detail.startswith("setup failed: setup call acl.rt.malloc(0, 0) returned")
    assert sim.live_handles() == {}
    assert not sim.initialized()


def test_case_table_is_well_formed() -> None:
    cases = conformance.cases()
    assert len({c.id for c in cases}) == len(cases)
    for case in cases:
        assert case.evidence.strip(), case.id
        assert "." in case.id and " " not in case.id, case.id
        assert json.loads(json.dumps(case.expect)) == case.expect, case.id
        assert not case.risky or case.in_child, case.id
    assert {c.category for c in cases} == set(conformance.CATEGORIES)


#: Functions only child-process cases call (their calls are not counted in this process).
CALLED_IN_CHILDREN = {"finalize_reference"}


def test_every_simulated_function_is_probed(
    acl: types.ModuleType, sample_models: list[str]
) -> None:
    """Each function of the simulated module tree is called by some case, or is one of the
    functions whose presence a case checks."""
    functions = {
        (prefix + name)
        for prefix, module in (
            ("", acl),
            ("rt.", acl.rt),
            ("media.", acl.media),
            ("util.", acl.util),
            ("mdl.", acl.mdl),
            ("op.", acl.op),
        )
        for name in dir(module)
        if not name.startswith("_")
        and callable(getattr(module, name))
        and not isinstance(getattr(module, name), types.ModuleType)
    }
    sim.reset_call_counts()
    conformance.run(acl, selected=_inline_cases(), models=sample_models)
    called = set(sim.call_counts())
    presence = set(conformance.cases_shapes.SAMPLE_CALLS)
    assert functions - called - presence - CALLED_IN_CHILDREN == set()


def test_selection() -> None:
    chosen, left_out = conformance.select("rt.malloc")
    assert chosen and all("rt.malloc" in c.id for c in chosen)
    assert [c.id for c in left_out] == ["rt.malloc.exhaustion"]
    chosen, left_out = conformance.select("memory", risky=True)
    assert {c.category for c in chosen} == {"memory"} and not left_out
    assert "rt.malloc.exhaustion" in {c.id for c in chosen}
    chosen, _ = conformance.select("rt.*.twice")
    assert {c.id for c in chosen} == {
        "rt.destroy_stream.twice",
        "rt.destroy_event.twice",
        "rt.destroy_context.twice",
    }
    everything, left_out = conformance.select()
    assert not any(c.risky for c in everything) and all(c.risky for c in left_out)


def test_cli_passing_run_writes_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "report.json"
    assert cli.main(["conformance", "--only", "rt.stream*", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ascend_safe conformance: 3 cases, 3 pass, 0 differ, 0 error" in out
    data = json.loads(path.read_text())
    env = data["environment"]
    assert env["backend"] == "sim" and env["soc"] == "Ascend910B4"
    assert env["cann_version"] == "9.0.0" and env["run_mode"] == "ACL_HOST (1)"
    assert [c["status"] for c in data["cases"]] == ["pass"] * 3
    assert data["summary"]["pass"] == 3 and "rt.stream" not in data["summary"]["text"]


def test_cli_exits_non_zero_on_a_difference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    changed = AclProxy(sim.acl_module(), SAMPLES["rt.null_handles"])
    monkeypatch.setattr(_backend, "acl", lambda: changed)
    path = tmp_path / "report.json"
    assert cli.main(["conformance", "--only", "rt.null_handles", "--json", str(path)]) == 1
    out = capsys.readouterr().out
    assert "- differ: rt.null_handles" in out
    assert "observed [100000, 100000, 100000, 107017, 100000, 100000]" in out
    (entry,) = json.loads(path.read_text())["cases"]
    assert entry["status"] == "differ"
    assert entry["expected"] == [100000] * 6
    assert entry["observed"] == [100000, 100000, 100000, 107017, 100000, 100000]
    assert entry["evidence"].startswith("src/acl/aclrt_impl/")


def test_cli_unknown_pattern(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["conformance", "--only", "no.such.case"]) == 2
    assert "no conformance case matches 'no.such.case'" in capsys.readouterr().err


def test_command_line_in_a_fresh_interpreter() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ascend_safe", "conformance", "--only", "error-codes"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "backend sim" in proc.stdout
    summary = re.search(
        r"ascend_safe conformance: (\d+) cases?, (\d+) pass, (\d+) differ, (\d+) error", proc.stdout
    )
    assert summary is not None, proc.stdout + proc.stderr
    cases, passed, differ, error = map(int, summary.groups())
    assert cases == len(conformance.select("error-codes")[0]) == passed + differ + error
    assert proc.returncode == (0 if differ == error == 0 else 1)


def test_model_cases_without_a_model_are_not_applicable(acl: types.ModuleType) -> None:
    selected = [c for c in conformance.cases() if c.category == "models" and not c.in_child]
    report = conformance.run(acl, selected=selected)
    statuses = {r.case.id: r.status for r in report.results}
    needing = {i for i, status in statuses.items() if status == "skipped"}
    # Those that need a file are skipped with the reason; the others still run and pass.
    assert "mdl.execute.sync_and_async_agree" in needing
    assert "mdl.desc_dataset.shapes" not in needing
    assert {statuses[i] for i in set(statuses) - needing} == {"pass"}
    for result in report.results:
        if result.status == "skipped":
            assert "pass --model PATH" in result.detail
    assert sim.live_handles() == {}


def test_model_cases_pick_a_fitting_model(acl: types.ModuleType, sample_models: list[str]) -> None:
    static, batch, hw = sample_models
    selected = [
        _by_id("mdl.dynamic_batch"),
        _by_id("mdl.dynamic_hw"),
        _by_id("mdl.desc.consistent"),
    ]
    only_static = _outcomes(conformance.run(acl, selected=selected, models=[static]))
    assert [only_static[c.id][0] for c in selected] == ["skipped", "skipped", "pass"]
    # The static model is found even when listed last.
    report = conformance.run(acl, selected=selected, models=[hw, batch, static])
    assert [r.status for r in report.results] == ["pass", "pass", "pass"]
    assert report.results[0].notes["model"] == "dynamic_batch.model"
    assert report.results[1].notes["model"] == "dynamic_hw.model"
    described = report.results[2].notes["description"]
    assert [d["name"] for d in described] == ["x", "y"]
    assert report.environment["models"] == [hw, batch, static]
    assert sim.live_handles() == {}


def test_model_files_reach_child_processes(sample_models: list[str]) -> None:
    in_child = dataclasses.replace(_by_id("mdl.execute.sync_and_async_agree"), isolated=True)
    (result,) = conformance.run_in_children([in_child], models=sample_models)
    assert (result.status, result.detail) == ("pass", "")
    (result,) = conformance.run_in_children([in_child])
    assert result.status == "skipped"


def test_cli_writes_sample_models_on_the_simulator(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("numpy")
    assert cli.main(["conformance", "--only", "mdl.*"]) == 0
    out = capsys.readouterr().out
    summary = re.search(r"(\d+) cases?, (\d+) pass, 0 differ, 0 error, 0 not applicable", out)
    assert summary is not None, out
    assert summary.group(1) == summary.group(2)

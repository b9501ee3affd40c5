"""``python -m ascend_safe doctor``: each check's status and fix, the JSON shape, the exit
status, the timeout path with a wedged (slow) simulated device, and that the caller can still
fork and use pyacl afterwards."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest

import ascend_safe as asf
from ascend_safe import doctor, slots

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the doctor reads Linux files")


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ascend_safe", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, ASCEND_SAFE_BACKEND="sim", **env),
    )


def _by_name(report: doctor.Report) -> dict[str, doctor.Check]:
    return {c.name: c for c in report.checks}


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("ASCEND_SAFE_") and name not in (
            "ASCEND_SAFE_BACKEND",
            "ASCEND_SAFE_SIM_STATE_DIR",
        ):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ASCEND_SAFE_SLOT_DIR", str(tmp_path / "slots"))
    return monkeypatch


def test_json_shape_and_exit_status_ok():
    proc = _cli("--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) == {"ascend_safe", "python", "ok", "counts", "checks"}
    assert data["ok"] is True and data["ascend_safe"] == asf.__version__
    names = [c["name"] for c in data["checks"]]
    for expected in (
        "python",
        "backend",
        "versions",
        "soc",
        "run_mode",
        "devices",
        "device:0",
        "device:1",
        "vm",
        "slot_directory",
        "process_slots",
        "oom_killer",
        "oom_policy",
        "fork",
        "logind",
        "resource_warnings",
        "environment",
    ):
        assert expected in names
    for check in data["checks"]:
        assert set(check) == {"name", "status", "summary", "fix", "details"}
        assert check["status"] in ("ok", "warn", "fail")
        assert (check["fix"] is None) == (check["status"] == "ok"), check
    assert sum(data["counts"].values()) == len(data["checks"])
    by_name = {c["name"]: c for c in data["checks"]}
    assert by_name["backend"]["status"] == "ok"  # the simulator was asked for
    assert by_name["soc"]["details"] == {
        "soc": "Ascend910B4",
        "family": doctor.product_family("Ascend910B4"),
    }
    assert by_name["device:0"]["details"]["memory"]["HBM_MEM"]["total"] == 1 << 30
    assert by_name["versions"]["details"]["cann"]


def test_exit_status_is_non_zero_when_a_check_fails():
    proc = _cli(ASCEND_SAFE_OOM_POLICY="sometimes")
    assert proc.returncode == 1
    assert "[FAIL] oom_policy: ASCEND_SAFE_OOM_POLICY='sometimes' is not valid" in proc.stdout
    assert "fix: set ASCEND_SAFE_OOM_POLICY to raise, wait or native" in proc.stdout


def test_a_wedged_device_is_reported_within_seconds():
    # Every simulated call sleeps a minute: without timeouts the doctor would take many.
    start = time.monotonic()
    proc = _cli("--timeout", "0.5", "--json", ASCEND_SAFE_SIM_CALL_LATENCY="60")
    assert time.monotonic() - start < 30
    assert proc.returncode == 1
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    soc = checks["soc"]
    assert soc["status"] == "fail" and "no answer within 0.5s" in soc["summary"]
    assert "npu-smi" in soc["fix"] and "--timeout" in soc["fix"]
    assert checks["devices"]["status"] == "warn"
    assert "not probed" in checks["devices"]["summary"]
    assert checks["environment"]["status"] == "ok"  # the checks of this process still ran


def test_the_caller_can_still_fork_and_use_pyacl():
    code = textwrap.dedent(
        """
        import os
        os.environ["ASCEND_SAFE_BACKEND"] = "sim"
        import ascend_safe as asf
        from ascend_safe import doctor
        report = doctor.run(10)
        assert any(c.name == "device:0" and c.status == "ok" for c in report.checks)
        pid = os.fork()
        if pid == 0:
            try:
                with asf.Device(0) as dev:
                    dev.malloc(64).close()
            except BaseException as exc:
                print("child failed:", exc, flush=True)
                os._exit(1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print("child exit", os.waitstatus_to_exitcode(status))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("child exit 0"), proc.stdout


def test_unknown_variable_gets_the_closest_name(clean_env):
    clean_env.setenv("ASCEND_SAFE_OOM_POLCY", "wait")
    check = doctor._env_check()
    assert check.status == "warn"
    assert "ASCEND_SAFE_OOM_POLCY is not a variable ascend_safe reads" in check.summary
    assert check.fix == "rename ASCEND_SAFE_OOM_POLCY to ASCEND_SAFE_OOM_POLICY"
    clean_env.setenv("ASCEND_SAFE_SIM_CALL_LATNCY", "1")
    assert "ASCEND_SAFE_SIM_CALL_LATENCY" in (doctor._env_check().fix or "")


def test_invalid_values_fail(clean_env):
    clean_env.setenv("ASCEND_SAFE_MAX_PROCS", "many")
    clean_env.setenv("ASCEND_SAFE_BACKEND", "npu")
    check = doctor._env_check()
    assert check.status == "fail"
    assert "ASCEND_SAFE_MAX_PROCS" in check.summary and "ASCEND_SAFE_BACKEND" in check.summary
    assert "correct ASCEND_SAFE_MAX_PROCS" in (check.fix or "")


def test_variables_in_force_are_listed(clean_env):
    clean_env.setenv("ASCEND_SAFE_OOM_POLICY", "wait")
    check = doctor._env_check()
    assert check.status == "ok" and "ASCEND_SAFE_OOM_POLICY=wait" in check.summary
    assert check.fix is None


@pytest.mark.parametrize(
    ("value", "run_mode", "status", "words"),
    [
        ("0", 0, "warn", "hangs"),
        ("1", 0, "ok", "= 1"),
        (None, 0, "warn", "missing (RC mode)"),
        ("0", 1, "ok", "not needed in host mode"),
    ],
)
def test_oom_killer(clean_env, tmp_path, value, run_mode, status, words):
    path = tmp_path / "enable_oom_killer"
    if value is not None:
        path.write_text(value + "\n")
    clean_env.setattr(doctor, "OOM_KILLER_PATH", str(path))
    killer, policy = doctor._oom_checks(run_mode)
    assert killer.status == status and words in killer.summary
    if value == "0" and run_mode == 0:
        assert killer.fix is not None
        assert killer.fix.startswith(f"as root on the device: echo 1 > {path}")
    assert policy.status == "ok"
    assert policy.details["effective"] == ("raise" if run_mode == 0 else "native")


def test_native_policy_in_rc_mode_warns(clean_env):
    clean_env.setenv("ASCEND_SAFE_OOM_POLICY", "native")
    _, policy = doctor._oom_checks(0)
    assert policy.status == "warn" and "ASCEND_SAFE_OOM_POLICY=raise" in (policy.fix or "")


def test_rc_mode_reaches_the_report(clean_env, tmp_path):
    path = tmp_path / "enable_oom_killer"
    path.write_text("0\n")
    clean_env.setattr(doctor, "OOM_KILLER_PATH", str(path))
    clean_env.setenv("ASCEND_SAFE_SIM_RUN_MODE", "0")
    checks = _by_name(doctor.run(10))
    assert checks["run_mode"].details == {"run_mode": 0}
    assert checks["oom_killer"].status == "warn"
    assert checks["oom_policy"].summary.startswith("default: raise")


def test_fork_check(clean_env):
    clean_env.setattr(multiprocessing, "get_start_method", lambda allow_none=False: "spawn")
    assert doctor._fork_check().status == "ok"
    clean_env.setattr(multiprocessing, "get_start_method", lambda allow_none=False: "fork")
    check = doctor._fork_check()
    assert check.status == "warn" and "set_start_method('spawn')" in (check.fix or "")
    asf.set_fork_policy("off")
    try:
        check = doctor._fork_check()
    finally:
        asf.set_fork_policy("sync")
    assert "ASCEND_SAFE_FORK_POLICY=sync" in (check.fix or "")


def test_logind_without_a_system_bus(clean_env, tmp_path):
    clean_env.setattr(doctor, "SYSTEM_BUS_SOCKET", str(tmp_path / "missing"))
    check = doctor._logind_check(1.0)
    assert check.status == "warn" and "missing" in check.summary
    assert "SuspendCoordinator" in (check.fix or "")


def test_logind_with_a_bus_that_does_not_answer(clean_env, tmp_path):
    path = str(tmp_path / "bus")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)  # present, but never accepts: no answer
    try:
        clean_env.setattr(doctor, "SYSTEM_BUS_SOCKET", path)
        check = doctor._logind_check(0.3)
    finally:
        server.close()
    assert check.status == "warn"
    if check.details["jeepney"]:
        assert "did not answer" in check.summary
    else:
        assert "pip install 'ascend_safe[logind]'" in (check.fix or "")
    assert check.details["inhibitor"] == "unknown"


def test_resource_warning_visibility():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        hidden = doctor._warnings_check()
    with warnings.catch_warnings():
        warnings.simplefilter("default", ResourceWarning)
        shown = doctor._warnings_check()
    assert hidden.status == "warn" and "-W default::ResourceWarning" in (hidden.fix or "")
    assert shown.status == "ok" and shown.fix is None


def test_slot_holders_and_junk_are_reported(clean_env, tmp_path):
    directory = tmp_path / "slots"
    with asf.Device(0):  # this process holds a slot of device 0
        os.mkdir(directory / "dev1.slot0")  # not a slot file: it blocks a slot
        checks = _by_name(doctor.run(10))
    slots_check = checks["process_slots"]
    assert slots_check.status == "warn"
    assert slots_check.details["holders"] == {"0": [os.getpid()]}
    assert f"device 0: PIDs {os.getpid()}" in slots_check.summary
    assert "remove these entries" in (slots_check.fix or "")
    assert str(directory / "dev1.slot0") in (slots_check.fix or "")
    assert checks["slot_directory"].status == "ok"


def test_unsafe_slot_directory_fails_and_is_left_alone(clean_env, tmp_path):
    directory = tmp_path / "slots"
    directory.mkdir()
    directory.chmod(0o777)  # writable by all, no sticky bit
    checks = _by_name(doctor.run(10))
    check = checks["slot_directory"]
    assert check.status == "fail" and "chmod +t" in (check.fix or "")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o777  # diagnosed, not repaired


def test_survey_reads_without_creating(tmp_path):
    missing = tmp_path / "nothing"
    found = slots.survey(str(missing))
    assert not found.exists and not missing.exists()


@pytest.mark.parametrize(
    ("soc", "family"),
    [
        ("Ascend910B4", "Atlas A2"),
        ("Ascend910_9391", "Atlas A3"),
        ("Ascend310P3", "310P"),
        ("Ascend310B1", "310B"),
        ("Ascend310", "(310)"),
        ("Ascend910A", "(910)"),
    ],
)
def test_product_family(soc, family):
    assert family in (doctor.product_family(soc) or "")
    assert doctor.product_family("Mystery1") is None


@pytest.fixture
def private_bus(tmp_path, monkeypatch):
    """A private dbus-daemon, made the system bus through DBUS_SYSTEM_BUS_ADDRESS."""
    if shutil.which("dbus-daemon") is None:
        pytest.skip("dbus-daemon is not installed (Debian package dbus-daemon)")
    pytest.importorskip("jeepney")
    address = f"unix:path={tmp_path / 'bus'}"
    proc = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--print-address=1", f"--address={address}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        printed = proc.stdout.readline().strip()
        assert printed.startswith(address)
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", printed)
        yield printed
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_logind_missing_on_a_live_bus(private_bus):
    check = doctor._logind_check(2.0)
    assert check.status == "warn" and "no logind" in check.summary
    assert check.details["logind"] is False


def test_logind_present_on_the_bus(private_bus):
    from jeepney import DBusAddress, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    conn = open_dbus_connection(bus="SYSTEM")
    try:
        bus = DBusAddress(
            "/org/freedesktop/DBus",
            bus_name="org.freedesktop.DBus",
            interface="org.freedesktop.DBus",
        )
        reply = conn.send_and_get_reply(
            new_method_call(bus, "RequestName", "su", ("org.freedesktop.login1", 0))
        )
        assert reply.body == (1,)  # primary owner
        check = doctor._logind_check(2.0)
    finally:
        conn.close()
    assert check.status == "ok" and check.fix is None
    assert "logind reachable" in check.summary
    assert check.details["inhibitor"] == "unknown"


def test_a_probe_process_that_dies_is_a_failure(clean_env, tmp_path):
    (tmp_path / "sitecustomize.py").write_text("import os\nos._exit(3)\n")
    clean_env.setenv("PYTHONPATH", str(tmp_path))
    report = doctor.run(10)
    checks = _by_name(report)
    assert not report.ok
    backend = checks["backend"]
    assert backend.status == "fail" and "the probe process died (exit status 3)" in (
        backend.summary
    )
    assert backend.fix is not None and "import ascend_safe" in backend.fix
    assert checks["environment"].status == "ok"


def test_a_bad_oom_policy_or_timeout_fails(clean_env):
    clean_env.setenv("ASCEND_SAFE_OOM_POLICY", "sometimes")
    check = doctor._env_check()
    assert check.status == "fail" and "ASCEND_SAFE_OOM_POLICY" in check.details["invalid"]
    clean_env.setenv("ASCEND_SAFE_OOM_POLICY", "wait")
    clean_env.setenv("ASCEND_SAFE_OOM_TIMEOUT", "soon")
    check = doctor._env_check()
    assert check.status == "fail" and list(check.details["invalid"]) == ["ASCEND_SAFE_OOM_TIMEOUT"]


def test_every_variable_the_library_reads_is_known():
    # Every ASCEND_SAFE_* name written in the library's source (outside the simulator, whose
    # options are added from its own config) is registered, so none is reported as a typo.
    root = Path(asf.__file__).parent
    names: set[str] = set()
    for path in root.glob("*.py"):
        names.update(re.findall(r"ASCEND_SAFE_[A-Z][A-Z_]*[A-Z]", path.read_text()))
    names = {n for n in names if not n.startswith("ASCEND_SAFE_SIM_")}
    assert names and names <= doctor.KNOWN_VARIABLES, names - doctor.KNOWN_VARIABLES
    assert "ASCEND_SAFE_SIM_CALL_LATENCY" in doctor.known_variables()
    readme_path = root.parent / "README.md"
    if not readme_path.exists():
        pytest.skip("not a source checkout")
    readme = readme_path.read_text()
    undocumented = [n for n in doctor.KNOWN_VARIABLES if f"`{n}`" not in readme]
    assert undocumented == []  # the README's table lists each one

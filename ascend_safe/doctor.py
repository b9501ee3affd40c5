"""``python -m ascend_safe doctor``: diagnose the machine before the first real run.

Each check has a status (``ok``, ``warn``, ``fail``), a one-line summary, details, and for every
``warn`` or ``fail`` the fix. Everything that needs pyacl (backend, versions, SoC, run mode,
devices, process slots) runs in a child interpreter started with ``subprocess``, never in the
calling process, so the caller can still fork after a diagnosis; every step of the child must
answer within *timeout* seconds, or the child is killed and the step reported as wedged. The
other checks read the environment, files and the system bus from this process.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import json
import multiprocessing
import os
import selectors
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from typing import Any, Callable, Optional

from . import _backend, _process, _runtime, admission, fork, slots
from .constants import MemAttr, RunMode

__all__ = ["KNOWN_VARIABLES", "Check", "Report", "product_family", "run"]

OK, WARN, FAIL = "ok", "warn", "fail"
#: Default seconds each probe of the child may take.
DEFAULT_TIMEOUT = 5.0
OOM_KILLER_PATH = "/proc/sys/vm/enable_oom_killer"
SYSTEM_BUS_SOCKET = "/run/dbus/system_bus_socket"

#: Environment variables ascend_safe reads, as the modules reading them registered them (the
#: simulator's own are added by :func:`known_variables`; ``ASCEND_SAFE_SIM_CONFIG`` carries them
#: all to child processes).
KNOWN_VARIABLES = frozenset({*_process.VARIABLES, "ASCEND_SAFE_SIM_CONFIG"})


@dataclasses.dataclass
class Check:
    """One diagnosis: *status* ``ok`` / ``warn`` / ``fail``; *fix* for every warn and fail."""

    name: str
    status: str
    summary: str
    fix: Optional[str] = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Report:
    """Every check, in the order they were made."""

    checks: list[Check]
    version: str

    @property
    def ok(self) -> bool:
        """No check failed (warnings allowed)."""
        return all(c.status != FAIL for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "ascend_safe": self.version,
            "python": sys.version.split()[0],
            "ok": self.ok,
            "counts": {s: sum(c.status == s for c in self.checks) for s in (OK, WARN, FAIL)},
            "checks": [c.to_json() for c in self.checks],
        }

    def text(self) -> str:
        lines = [f"ascend_safe {self.version}, Python {sys.version.split()[0]}"]
        for c in self.checks:
            lines.append(f"[{c.status.upper():4}] {c.name}: {c.summary}")
            if c.fix:
                lines.append(f"       fix: {c.fix}")
        counts = self.to_json()["counts"]
        lines.append(f"{counts[OK]} ok, {counts[WARN]} warn, {counts[FAIL]} fail")
        return "\n".join(lines)


# =============================================================================== the probe child

#: Steps of the child, in order. Each prints ``{"start": step}`` then ``{"step": ..}`` with
#: ``"result"`` or ``"error"``; the parent waits at most *timeout* between two lines.
_CHILD = "from ascend_safe import doctor; doctor._probe_main()"


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _step(name: str, fn: Callable[[], Any]) -> Any:
    _emit({"start": name})
    try:
        result = fn()
    except Exception as exc:
        _emit({"step": name, "error": f"{type(exc).__name__}: {exc}"})
        return None
    _emit({"step": name, "result": result})
    return result


def _probe_backend() -> dict[str, Any]:
    name = _backend.backend_name()
    module = _backend.acl()
    path = getattr(module, "__file__", None)
    if path is None and name == "sim":
        path = os.path.dirname(sys.modules["ascend_safe.sim"].__file__ or "ascend_safe/sim")
    return {
        "name": name,
        "requested": os.environ.get("ASCEND_SAFE_BACKEND", "auto").strip().lower() or "auto",
        "module": path or getattr(module, "__name__", "?"),
    }


def _probe_soc() -> dict[str, Any]:
    soc = _backend.call_value("get_soc_name")
    return {"soc": soc if isinstance(soc, str) else None}


def _probe_run_mode() -> dict[str, Any]:
    return {"run_mode": int(_backend.call("rt.get_run_mode"))}


def _probe_versions() -> dict[str, Any]:
    _runtime.ensure_initialized(check_environment=False)  # the environment check reports them
    out: dict[str, Any] = {}
    if _backend.has("get_version"):
        major, minor, patch = _backend.call("get_version")
        out["acl_api"] = f"{major}.{minor}.{patch}"
    if _backend.has("get_cann_version"):
        for key, pkg in (("cann", 0), ("runtime", 1), ("driver", 7)):
            try:
                info = _backend.call("get_cann_version", pkg)
            except Exception as exc:
                out[key] = None
                out[key + "_error"] = str(exc)
                continue
            out[key] = info.get("version") if isinstance(info, dict) else None
    return out


def _probe_device_count() -> dict[str, Any]:
    return {"count": int(_backend.call("rt.get_device_count"))}


def _probe_device(device_id: int) -> dict[str, Any]:
    _backend.call("rt.set_device", device_id)
    try:
        memory = {}
        for attr in (MemAttr.HBM_MEM, MemAttr.DDR_MEM):
            free, total = _backend.call("rt.get_mem_info", int(attr))
            memory[attr.name] = {"free": int(free), "total": int(total)}
        _backend.call("rt.synchronize_device")
    finally:
        _backend.call("rt.reset_device", device_id)
    return {"memory": memory}


def _probe_slots(soc: Optional[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"vm": slots.detect_vm()}
    out["limit"] = slots.process_limit(soc)
    out["directory"] = slots.slot_dir()
    try:
        found = slots.survey(out["directory"])
    except OSError as exc:  # SlotDirectoryError included: unsafe or unusable
        out["unsafe"] = str(exc)
        return out
    out.update(
        exists=found.exists,
        holders={str(d): p for d, p in found.holders.items()},
        unheld={str(d): n for d, n in found.unheld.items()},
        junk=found.junk,
        locks_readable=found.locks_readable,
    )
    return out


def _probe_main() -> None:
    """Run in the child: every probe that needs pyacl, one JSON line per event."""
    backend = _step("backend", _probe_backend)
    if backend is None:
        return
    soc = _step("soc", _probe_soc)
    _step("versions", _probe_versions)  # initializes pyacl (the simulator wants it for the next)
    _step("run_mode", _probe_run_mode)
    count = _step("device_count", _probe_device_count)
    for device_id in range(count["count"] if count else 0):
        _step(f"device:{device_id}", lambda d=device_id: _probe_device(d))  # type: ignore[misc]
    _step("slots", lambda: _probe_slots(soc["soc"] if soc else None))
    _emit({"done": True})


class _ChildResults:
    """What the child said: results and errors by step, and the step it got stuck in."""

    def __init__(self) -> None:
        self.results: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.stuck: Optional[str] = None
        self.done = False
        self.crash: Optional[str] = None
        self.seconds = 0.0


def _run_child(timeout: float) -> _ChildResults:
    out = _ChildResults()
    started = time.monotonic()
    with tempfile.TemporaryFile() as errfile:
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errfile,
            env=dict(os.environ),
        )
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        buffer = b""
        current: Optional[str] = "startup"
        deadline = time.monotonic() + timeout
        try:
            while not out.done:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    out.stuck = current
                    break
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break  # the child exited
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    deadline = time.monotonic() + timeout
                    if "start" in event:
                        current = event["start"]
                    elif "step" in event:
                        current = None
                        if "error" in event:
                            out.errors[event["step"]] = event["error"]
                        else:
                            out.results[event["step"]] = event["result"]
                    elif event.get("done"):
                        out.done = True
        finally:
            sel.close()
            if out.done:
                try:
                    proc.wait(timeout)  # the child releases the devices and finalizes
                except subprocess.TimeoutExpired:
                    proc.kill()
            else:
                proc.kill()
            proc.wait()
            proc.stdout.close()
        if not out.done and out.stuck is None and "backend" not in out.errors:
            errfile.seek(0)
            text = errfile.read().decode("utf-8", "replace").strip().splitlines()
            out.crash = (text[-1] if text else f"exit status {proc.returncode}")[:500]
    out.seconds = time.monotonic() - started
    return out


# ======================================================================== checks from the child

_FAMILIES = (
    ("ascend910_93", "Atlas A3 training / inference"),
    ("ascend910b", "Atlas A2 training / Atlas 800I A2 inference"),
    ("ascend910", "Atlas training (910)"),
    ("ascend310p", "Atlas inference (310P)"),
    ("ascend310b", "Atlas 200I / 500 A2 inference (310B)"),
    ("ascend310", "Atlas 200 / 300 / 500 inference (310)"),
)
_WEDGED_FIX = (
    "the device or driver did not answer: check 'npu-smi info' and the kernel log (dmesg), "
    "stop processes stuck on the device, reset it ('npu-smi set -t reset -i <id> -c 0') or "
    "reboot; on a slow machine raise --timeout"
)


def product_family(soc: Optional[str]) -> Optional[str]:
    """The product family of SoC *soc* (``"Ascend910B4"`` → Atlas A2), or None if unknown."""
    if not soc:
        return None
    low = soc.lower()
    for prefix, family in _FAMILIES:
        if low.startswith(prefix):
            return family
    return None


def _child_checks(child: _ChildResults, timeout: float) -> tuple[list[Check], Optional[int]]:
    checks: list[Check] = []
    res, err = child.results, child.errors

    def missing(name: str, label: str) -> Optional[Check]:
        if name in err:
            return Check(label, FAIL, f"probe failed: {err[name]}", _fix_for_error(err[name]))
        if child.stuck == name or (child.stuck == "startup" and name == "backend"):
            return Check(
                label,
                FAIL,
                f"no answer within {timeout:g}s (the probe process was stopped)",
                _WEDGED_FIX,
            )
        if name not in res and child.crash:
            return Check(
                label,
                FAIL,
                f"not probed: the probe process died ({child.crash})",
                f"run '{sys.executable} -c \"import ascend_safe, acl\"' to see the error; "
                "check the Python environment and CANN's set_env.sh",
            )
        if name not in res:
            why = "an earlier probe did not finish" if child.stuck else "not reached"
            return Check(label, WARN, f"not probed ({why})", "fix the checks above first")
        return None

    # backend
    bad = missing("backend", "backend")
    if bad is not None:
        checks.append(bad)
    else:
        b = res["backend"]
        fell_back = b["name"] == "sim" and b["requested"] == "auto"
        checks.append(
            Check(
                "backend",
                WARN if fell_back else OK,
                f"{'real pyacl' if b['name'] == 'acl' else 'the simulator'} "
                f"(ASCEND_SAFE_BACKEND={b['requested']}), module {b['module']}",
                "pyacl cannot be imported, so the simulator stands in: source CANN's "
                "set_env.sh (e.g. /usr/local/Ascend/ascend-toolkit/set_env.sh) to use the NPU, "
                "or set ASCEND_SAFE_BACKEND=sim to choose the simulator on purpose"
                if fell_back
                else None,
                dict(b),
            )
        )
    # versions
    bad = missing("versions", "versions")
    if bad is not None:
        checks.append(bad)
    else:
        v = res["versions"]
        parts = [f"{k} {v[k]}" for k in ("cann", "runtime", "driver", "acl_api") if v.get(k)]
        has_cann = bool(v.get("cann"))
        checks.append(
            Check(
                "versions",
                OK if has_cann else WARN,
                ", ".join(parts) if parts else "no version reported",
                None
                if has_cann
                else "this pyacl has no acl.get_cann_version (CANN older than 8.x?): read the "
                "version from <install>/ascend-toolkit/latest/version.cfg; 'npu-smi info' "
                "shows the driver",
                dict(v),
            )
        )
    # SoC
    bad = missing("soc", "soc")
    if bad is not None:
        checks.append(bad)
    else:
        soc = res["soc"]["soc"]
        family = product_family(soc)
        checks.append(
            Check(
                "soc",
                OK if family else WARN,
                f"{soc or 'unknown'} ({family or 'unknown product family'})",
                None
                if family
                else "acl.get_soc_name gave no known SoC: check the CANN install and the "
                "driver ('npu-smi info'); set ASCEND_SAFE_MAX_PROCS if the process limit "
                "must differ from 64",
                {"soc": soc, "family": family},
            )
        )
    # run mode
    run_mode: Optional[int] = None
    bad = missing("run_mode", "run_mode")
    if bad is not None:
        checks.append(bad)
    else:
        run_mode = res["run_mode"]["run_mode"]
        name = {0: "ACL_DEVICE (RC: the program runs on the device)", 1: "ACL_HOST (EP)"}
        checks.append(
            Check(
                "run_mode",
                OK,
                name.get(run_mode, f"unknown ({run_mode})"),
                details={"run_mode": run_mode},
            )
        )
    # devices
    bad = missing("device_count", "devices")
    if bad is not None:
        checks.append(bad)
    else:
        count = res["device_count"]["count"]
        checks.append(
            Check(
                "devices",
                OK if count else FAIL,
                f"{count} device(s)",
                None
                if count
                else "no device visible: check 'npu-smi info', the driver, and that the "
                "container was started with the /dev/davinci* devices",
                {"count": count},
            )
        )
        for device_id in range(count):
            key = f"device:{device_id}"
            bad = missing(key, key)
            if bad is not None:
                checks.append(bad)
                continue
            memory = res[key]["memory"]
            best = memory["HBM_MEM"] if memory["HBM_MEM"]["total"] else memory["DDR_MEM"]
            checks.append(
                Check(
                    key,
                    OK,
                    f"healthy; {best['free']} of {best['total']} bytes free",
                    details=dict(res[key]),
                )
            )
    # process slots
    bad = missing("slots", "process_slots")
    if bad is not None:
        checks.append(bad)
    else:
        checks.extend(_slot_checks(res["slots"]))
    return checks, run_mode


def _fix_for_error(message: str) -> str:
    if "BackendUnavailableError" in message:
        return "install CANN and source its set_env.sh, or set ASCEND_SAFE_BACKEND=sim"
    if "ValueError" in message and "ASCEND_SAFE_" in message:
        return "correct the environment variable named in the message"
    if "ProcessLimitError" in message:
        return "too many processes use the device: close some (see process_slots)"
    return (
        "see the error; check 'npu-smi info', the driver and CANN install, and that this "
        "user may open /dev/davinci*"
    )


def _slot_checks(s: dict[str, Any]) -> list[Check]:
    checks = [
        Check(
            "vm",
            OK,
            "virtual machine" if s["vm"] else "not a virtual machine",
            details={"vm": s["vm"]},
        )
    ]
    directory = s["directory"]
    if "unsafe" in s:
        checks.append(Check("slot_directory", FAIL, s["unsafe"], _fix_from_message(s["unsafe"])))
        return checks
    holders: dict[str, list[int]] = s["holders"]
    unheld: dict[str, int] = s["unheld"]
    checks.append(
        Check(
            "slot_directory",
            OK,
            f"{directory} is safe" if s["exists"] else f"{directory} (created on first use)",
            details={"directory": directory, "exists": s["exists"]},
        )
    )
    limit = s["limit"]
    busiest = max((len(p) for p in holders.values()), default=0)
    held = "; ".join(f"device {d}: PIDs {', '.join(map(str, p))}" for d, p in holders.items())
    summary = f"{limit} processes allowed per device" + (f"; held by {held}" if held else "")
    if unheld:
        summary += f"; {sum(unheld.values())} slot file(s) from processes that ended (reused)"
    status, fix = OK, None
    if s["junk"]:
        status = WARN
        fix = "remove these entries, which are not slot files and each block a slot: " + (
            "; ".join(s["junk"])
        )
        summary += f"; {len(s['junk'])} entry(ies) blocking slots"
    elif busiest >= limit:
        status = WARN
        fix = "a device has all its process slots taken: stop some of the processes listed"
    checks.append(
        Check(
            "process_slots",
            status,
            summary,
            fix,
            {"limit": limit, "holders": holders, "unheld": unheld, "junk": s["junk"]},
        )
    )
    return checks


def _fix_from_message(message: str) -> str:
    marker = "To fix: "
    return message.split(marker, 1)[1] if marker in message else message


# ================================================================== checks in this process


def _oom_checks(run_mode: Optional[int]) -> list[Check]:
    try:
        with open(OOM_KILLER_PATH, encoding="ascii") as fh:
            value: Optional[str] = fh.read().strip()
    except OSError:
        value = None
    details: dict[str, Any] = {"path": OOM_KILLER_PATH, "value": value, "run_mode": run_mode}
    if run_mode == RunMode.HOST:
        killer = Check(
            "oom_killer",
            OK,
            "not needed in host mode (a device malloc that does not fit fails with 207001)",
            details=details,
        )
    elif value == "1":
        killer = Check(
            "oom_killer", OK, f"{OOM_KILLER_PATH} = 1 (a stuck malloc exits)", details=details
        )
    elif value is None:
        killer = Check(
            "oom_killer",
            WARN,
            f"{OOM_KILLER_PATH} is missing"
            + (" (RC mode)" if run_mode == RunMode.DEVICE else " (run mode unknown)"),
            "in RC mode a device malloc that does not fit hangs; this kernel offers no "
            "enable_oom_killer switch: rely on ascend_safe's OOM policy 'raise' or 'wait'",
            details,
        )
    else:
        killer = Check(
            "oom_killer",
            WARN,
            f"{OOM_KILLER_PATH} = {value}: a device malloc that does not fit hangs",
            f"as root on the device: echo 1 > {OOM_KILLER_PATH} (to keep it across reboots: "
            "vm.enable_oom_killer = 1 in /etc/sysctl.conf); ascend_safe's OOM policy already "
            "guards its own allocations, this covers everything else",
            details,
        )
    try:
        setting = admission.environment_setting()
    except ValueError as exc:
        return [
            killer,
            Check(
                "oom_policy",
                FAIL,
                str(exc),
                "set ASCEND_SAFE_OOM_POLICY to "
                "raise, wait or native (and ASCEND_SAFE_OOM_TIMEOUT to seconds)",
            ),
        ]
    if setting is None:
        default = {0: "raise", 1: "native"}.get(run_mode if run_mode is not None else -1, "?")
        summary = f"default: {default} (raise in RC mode, native in host mode)"
        details = {"policy": None, "effective": default, "timeout": None}
    else:
        limit = "no limit" if setting.timeout is None else f"{setting.timeout:g}s"
        summary = f"{setting.policy}" + (
            f" (wait up to {limit})" if setting.policy == "wait" else ""
        )
        details = {
            "policy": setting.policy,
            "effective": setting.policy,
            "timeout": setting.timeout,
        }
    status, fix = OK, None
    if run_mode == RunMode.DEVICE and setting is not None and setting.policy == "native":
        status = WARN
        fix = (
            "in RC mode 'native' lets a malloc that does not fit hang the process: use "
            "ASCEND_SAFE_OOM_POLICY=raise or wait"
        )
    return [killer, Check("oom_policy", status, summary, fix, details)]


def _fork_check() -> Check:
    policy = fork.get_fork_policy()
    method = multiprocessing.get_start_method(allow_none=True)
    default = multiprocessing.get_all_start_methods()[0]
    effective = method or default
    details = {"fork_policy": policy, "start_method": method, "default_start_method": default}
    problems, fixes = [], []
    if effective == "fork":
        problems.append("multiprocessing starts processes with 'fork'")
        fixes.append(
            "children forked after pyacl use cannot use pyacl: call "
            "multiprocessing.set_start_method('spawn') or use ascend_safe.worker_pool"
        )
    if policy == "off":
        problems.append("the process-creation guard is off")
        fixes.append("set ASCEND_SAFE_FORK_POLICY=sync (default) so forks wait for async copies")
    summary = f"fork policy {policy}; multiprocessing start method {effective}" + (
        "" if method else " (default)"
    )
    if problems:
        return Check("fork", WARN, summary + ": " + "; ".join(problems), "; ".join(fixes), details)
    return Check("fork", OK, summary, details=details)


def _system_bus_socket() -> Optional[str]:
    """The system bus's socket path: ``DBUS_SYSTEM_BUS_ADDRESS`` (as D-Bus clients read it),
    else the standard one; None for an address that is not a socket path (abstract, tcp)."""
    address = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", "").strip()
    if not address:
        return SYSTEM_BUS_SOCKET
    first = address.split(";")[0]
    if first.startswith("unix:"):
        for option in first[len("unix:") :].split(","):
            key, _, value = option.partition("=")
            if key == "path":
                return value
    return None


def _logind_check(timeout: float) -> Check:
    sock = _system_bus_socket()
    if sock is None:  # an address we cannot stat: let the connection tell
        present = True
    else:
        try:
            present = stat.S_ISSOCK(os.stat(sock).st_mode)
        except OSError:
            present = False
    jeepney = importlib.util.find_spec("jeepney") is not None
    details: dict[str, Any] = {
        "system_bus_socket": sock,
        "socket_present": present,
        "jeepney": jeepney,
        "logind": None,
        "inhibitor": "unknown",
    }
    if not present:
        return Check(
            "logind",
            WARN,
            f"no system bus ({sock} is not a socket): suspend coordination cannot follow logind",
            "run dbus-daemon and systemd-logind (or mount the host's /run/dbus into the "
            "container), or drive ascend_safe.SuspendCoordinator with signals or direct calls",
            details,
        )
    if not jeepney:
        return Check(
            "logind",
            WARN,
            "system bus present, but jeepney is not installed",
            "pip install 'ascend_safe[logind]' (installs jeepney)",
            details,
        )
    owner = _logind_present(timeout)
    details["logind"] = owner
    if owner is None:
        return Check(
            "logind",
            WARN,
            "the system bus did not answer",
            "check that dbus-daemon runs and this user may connect to it",
            details,
        )
    if not owner:
        return Check(
            "logind",
            WARN,
            "no logind on the system bus (org.freedesktop.login1 has no owner)",
            "run systemd-logind, or drive ascend_safe.SuspendCoordinator with signals",
            details,
        )
    return Check(
        "logind",
        OK,
        "logind reachable on the system bus (inhibitor permission not tested: taking one "
        "would delay the machine's sleep)",
        details=details,
    )


def _logind_present(timeout: float) -> Optional[bool]:
    """Whether org.freedesktop.login1 has an owner; None if the bus does not answer."""
    try:
        from jeepney import (  # type: ignore[import-not-found,import-untyped,unused-ignore]
            DBusAddress,
            new_method_call,
        )
        from jeepney.io.blocking import (  # type: ignore[import-not-found,import-untyped,unused-ignore]
            open_dbus_connection,
        )
    except ImportError:
        return None
    bus = DBusAddress(
        "/org/freedesktop/DBus",
        bus_name="org.freedesktop.DBus",
        interface="org.freedesktop.DBus",
    )
    try:
        conn = open_dbus_connection(bus="SYSTEM", auth_timeout=timeout)
        try:
            msg = new_method_call(bus, "NameHasOwner", "s", ("org.freedesktop.login1",))
            reply = conn.send_and_get_reply(msg, timeout=timeout)
        finally:
            conn.close()
    except Exception:  # no bus, refused, timed out, or an error reply: no answer
        return None
    return bool(reply.body[0]) if reply.body else None


def _warnings_check() -> Check:
    action = _resource_warning_action()
    details = {"action": action, "PYTHONWARNINGS": os.environ.get("PYTHONWARNINGS")}
    if action in ("ignore", None):
        return Check(
            "resource_warnings",
            WARN,
            "ResourceWarning is hidden: resources collected while open go unreported",
            "run with 'python -X dev' or '-W default::ResourceWarning', or set "
            "PYTHONWARNINGS=default::ResourceWarning (pytest shows them by default)",
            details,
        )
    if action == "error":
        summary = "ResourceWarning is raised as an error"
    else:
        summary = f"ResourceWarning is shown (action '{action}')"
    return Check("resource_warnings", OK, summary, details=details)


def _resource_warning_action() -> Optional[str]:
    """The action the warnings filters give a ResourceWarning raised in ascend_safe."""
    for entry in warnings.filters:
        action, message, category, module, _lineno = entry
        if not issubclass(ResourceWarning, category):
            continue
        if message is not None and not message.match("unclosed <DeviceMemory>"):
            continue
        if module is not None and not module.match("ascend_safe._lifetime"):
            continue
        return str(action)
    return getattr(warnings, "defaultaction", None)


def known_variables() -> frozenset[str]:
    """Every ``ASCEND_SAFE_*`` variable the library or its simulator reads."""
    try:
        from .sim import _config
    except ValueError:  # a bad simulator variable: the backend check reports it
        return KNOWN_VARIABLES
    sim_vars = {_config.ENV_PREFIX + f.name.upper() for f in dataclasses.fields(_config.Config)}
    return KNOWN_VARIABLES | sim_vars


def _env_check() -> Check:
    known = known_variables()
    in_force = {k: v for k, v in sorted(os.environ.items()) if k.startswith("ASCEND_SAFE_")}
    unknown = [k for k in in_force if k not in known]
    bad = _invalid_values(in_force)
    details = {"variables": in_force, "unknown": unknown, "invalid": bad}
    problems, fixes = [], []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        problems.append(f"{name} is not a variable ascend_safe reads")
        fixes.append(f"rename {name} to {close[0]}" if close else f"remove {name}")
    status = WARN if unknown else OK
    for name, why in bad.items():
        problems.insert(0, f"{name}: {why}")
        fixes.insert(0, f"correct {name}")
        status = FAIL
    listed = ", ".join(f"{k}={v}" for k, v in in_force.items()) or "none set"
    if problems:
        return Check("environment", status, "; ".join(problems), "; ".join(fixes), details)
    return Check("environment", OK, listed, details=details)


def _invalid_values(env: dict[str, str]) -> dict[str, str]:
    bad: dict[str, str] = {}
    value = env.get("ASCEND_SAFE_BACKEND", "").strip().lower()
    if value and value not in ("auto", "acl", "sim"):
        bad["ASCEND_SAFE_BACKEND"] = f"{value!r} is not auto, acl or sim"
    value = env.get("ASCEND_SAFE_FORK_POLICY", "").strip().lower()
    if value and value not in fork.FORK_POLICIES:
        bad["ASCEND_SAFE_FORK_POLICY"] = f"{value!r} is not one of {', '.join(fork.FORK_POLICIES)}"
    checks: tuple[tuple[str, Callable[[], object]], ...] = (
        (slots.ENV_MAX_PROCS, lambda: slots.process_limit(None)),
        (slots.ENV_VM, slots.detect_vm),
        (admission.ENV_POLICY, admission.environment_setting),  # with ENV_TIMEOUT
    )
    for name, check in checks:
        if env.get(name, "").strip():
            try:
                check()
            except ValueError as exc:
                named = str(exc).split("=", 1)[0]  # the message starts with the variable
                bad[named if named.startswith("ASCEND_SAFE_") else name] = str(exc)
    value = env.get("ASCEND_SAFE_EXIT_TIMEOUT", "").strip()
    if value:
        try:
            ok = float(value) > 0
        except ValueError:
            ok = False
        if not ok:
            bad["ASCEND_SAFE_EXIT_TIMEOUT"] = f"{value!r} is not a positive number of seconds"
    return bad


def _python_check(version: str) -> Check:
    return Check(
        "python",
        OK,
        f"ascend_safe {version} on Python {sys.version.split()[0]} ({sys.executable})",
        details={"executable": sys.executable, "version": sys.version.split()[0]},
    )


# ========================================================================================= run


def run(timeout: float = DEFAULT_TIMEOUT, *, version: str = "") -> Report:
    """Diagnose this machine; each probe that needs pyacl gets at most *timeout* seconds."""
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    child = _run_child(timeout)
    checks = [_python_check(version)]
    from_child, run_mode = _child_checks(child, timeout)
    checks.extend(from_child)
    checks.extend(_oom_checks(run_mode))
    checks.append(_fork_check())
    checks.append(_logind_check(min(timeout, 2.0)))
    checks.append(_warnings_check())
    checks.append(_env_check())
    return Report(checks, version)

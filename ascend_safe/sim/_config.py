"""Simulator options: defaults, validation, and the environment that carries them to children.

Precedence, lowest first: the defaults; ``ASCEND_SAFE_SIM_CONFIG`` (a JSON object of the
options ``configure()`` set in this process or an ancestor); the per-option variables
``ASCEND_SAFE_SIM_<OPTION>``. ``configure()`` keeps the environment equal to the process's
effective options: it merges its options into ``ASCEND_SAFE_SIM_CONFIG`` and removes the
per-option variables it overrides, so every child (spawn, forkserver, ``subprocess``) starts
with the parent's options, while a per-option variable set for one child still wins there.
``reset()`` puts back the variables ``configure()`` changed (unless changed again since).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from typing import Any, Callable, Optional

__all__ = ["ENV_JSON", "ENV_PREFIX", "Config", "from_env", "publish", "restore_env", "validate"]

ENV_PREFIX = "ASCEND_SAFE_SIM_"
#: The options set by ``configure()`` (here or in an ancestor process), as one JSON object.
ENV_JSON = ENV_PREFIX + "CONFIG"


@dataclasses.dataclass
class Config:
    """Current simulator options (see the package docstring for their meaning)."""

    device_count: int = 2
    memory_per_device: int = 1 << 30
    soc_name: str = "Ascend910B4"
    run_mode: int = 1
    vm: bool = False
    max_procs_per_device: Optional[int] = None
    state_dir: Optional[str] = None
    rc_malloc_blocks: bool = True
    rc_malloc_timeout: float = 10.0
    call_latency: float = 0.0
    async_delay: float = 0.0
    lose_device_on_hibernate: bool = True
    record_file: Optional[str] = None
    model_cost_per_mb: float = 0.002
    strict: bool = False

    def process_limit(self) -> int:
        """Processes allowed per device: the override, or the product default."""
        if self.max_procs_per_device is not None:
            return self.max_procs_per_device
        if self.vm:
            return 32
        if self.soc_name.startswith(("Ascend910B", "Ascend910_93")):
            return 63
        return 64

    def slot_dir(self) -> str:
        """The simulated machine's state directory (slots, memory ledgers)."""
        if self.state_dir is not None:
            return self.state_dir
        return os.path.join(tempfile.gettempdir(), f"ascend_safe_sim-{os.getuid()}")


def _int(lo: int, hi: Optional[int] = None) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        if type(value) is not int or value < lo or (hi is not None and value > hi):
            bound = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise ValueError(f"simulator option {name} must be an int {bound}, got {value!r}")
        return value

    return check


def _float(name: str, value: Any) -> Any:
    if type(value) not in (int, float) or value < 0 or value != value:
        raise ValueError(f"simulator option {name} must be a number >= 0, got {value!r}")
    return float(value)


def _bool(name: str, value: Any) -> Any:
    if type(value) is not bool:
        raise ValueError(f"simulator option {name} must be a bool, got {value!r}")
    return value


def _str(name: str, value: Any) -> Any:
    if type(value) is not str or not value:
        raise ValueError(f"simulator option {name} must be a non-empty str, got {value!r}")
    return value


def _optional(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    def opt(name: str, value: Any) -> Any:
        return None if value is None else check(name, value)

    return opt


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "device_count": _int(1, 64),
    "memory_per_device": _int(1),
    "soc_name": _str,
    "run_mode": _int(0, 1),
    "vm": _bool,
    "max_procs_per_device": _optional(_int(1)),
    "state_dir": _optional(_str),
    "rc_malloc_blocks": _bool,
    "rc_malloc_timeout": _float,
    "call_latency": _float,
    "async_delay": _float,
    "lose_device_on_hibernate": _bool,
    "record_file": _optional(_str),
    "model_cost_per_mb": _float,
    "strict": _bool,
}


def validate(options: dict[str, Any]) -> dict[str, Any]:
    """Checked copy of *options*: TypeError for an unknown name, ValueError for a bad value."""
    out: dict[str, Any] = {}
    for name, value in options.items():
        check = _CHECKS.get(name)
        if check is None:
            raise TypeError(f"unknown simulator option {name!r}; known: {', '.join(_CHECKS)}")
        out[name] = check(name, value)
    return out


def _parse_env(name: str, text: str) -> Any:
    default = getattr(Config(), name)
    field_type = {f.name: f.type for f in dataclasses.fields(Config)}[name]
    stripped = text.strip()
    if "Optional" in str(field_type) and stripped.lower() in ("", "none"):
        return None
    try:
        if isinstance(default, bool):
            low = stripped.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if isinstance(default, float):
            return float(stripped)
        if isinstance(default, int) or "int" in str(field_type):
            return int(stripped, 0)
    except ValueError:
        raise ValueError(f"{ENV_PREFIX}{name.upper()}={text!r} is not a valid value") from None
    return text


def _from_json() -> dict[str, Any]:
    """The options in ``ASCEND_SAFE_SIM_CONFIG`` (validated), or none."""
    text = os.environ.get(ENV_JSON, "").strip()
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ValueError(f"{ENV_JSON} must be a JSON object of simulator options, got {text!r}")
    try:
        return validate(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{ENV_JSON}: {exc}") from None


def from_env() -> Config:
    """Defaults, then ``ASCEND_SAFE_SIM_CONFIG``, then ``ASCEND_SAFE_SIM_<OPTION>`` variables."""
    options = _from_json()
    for name in _CHECKS:
        text = os.environ.get(ENV_PREFIX + name.upper())
        if text is not None:
            options[name] = _parse_env(name, text)
    return Config(**validate(options))


#: Original values of the variables ``configure()`` changed, and what it left them as.
_saved: dict[str, Optional[str]] = {}
_written: dict[str, Optional[str]] = {}


def _set_env(name: str, value: Optional[str]) -> None:
    if name not in _saved:
        _saved[name] = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    _written[name] = value


def publish(options: dict[str, Any]) -> None:
    """Record validated *options* (from ``configure()``) in the environment for children."""
    if not options:
        return
    try:
        merged = _from_json()
    except ValueError:  # replaced by something invalid since import: start afresh
        merged = {}
    merged.update(options)
    _set_env(ENV_JSON, json.dumps(merged, sort_keys=True, separators=(",", ":")))
    for name in options:
        variable = ENV_PREFIX + name.upper()
        if variable in os.environ:
            _set_env(variable, None)


def restore_env() -> None:
    """Undo :func:`publish`: put back each variable it changed, unless changed since."""
    for name, original in _saved.items():
        if os.environ.get(name) != _written.get(name):
            continue  # someone else set it afterwards: theirs
        if original is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = original
    _saved.clear()
    _written.clear()

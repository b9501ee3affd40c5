"""What a conformance case is, and the probe context its function runs in.

A case pairs a probe (a function of the ``acl`` module that returns an observation) with the
expectation the simulator implements and the evidence for it. The probe registers every
resource it makes with :class:`Probe`, which releases them in reverse order whatever happens,
so a case never leaves anything allocated, even when it fails half-way.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

__all__ = [
    "CATEGORIES",
    "PHASES",
    "Case",
    "NotApplicable",
    "Probe",
    "SetupError",
    "case",
    "cases",
    "normalize",
    "shape",
]

#: Every category a case may have, in report order.
CATEGORIES = (
    "init",
    "return-shapes",
    "error-codes",
    "arg-parsing",
    "async",
    "events",
    "memory",
    "models",
    "process",
)

#: When a case runs: before ``acl.init`` (``bare``), after it with no device set (``init``), or
#: with the kit's device set in the calling thread (``device``).
PHASES = ("bare", "init", "device")

#: What pyACL's ``TypeError`` says when argument parsing fails (any cause, overflow included).
PARSE_FAILED = "args parse failed"


class NotApplicable(Exception):
    """The case does not apply to this machine (reported as ``skipped``, with the reason)."""


class SetupError(Exception):
    """A call a case needs in order to reach what it probes failed (reported as ``error``)."""


@dataclass(frozen=True)
class Case:
    """One probe with its expectation. ``expect`` is plain data (JSON-able), written once."""

    id: str
    category: str
    evidence: str
    expect: Any
    probe: Callable[[Probe], Any]
    phase: str = "device"
    #: Runs in a child process (process rules, handles whose misuse could crash the caller).
    isolated: bool = False
    #: Could disturb a production machine (memory exhaustion, process-limit probes): only with
    #: an explicit flag, and always in a child process.
    risky: bool = False
    #: Seconds a child process may spend on the case before it is killed.
    timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"case {self.id}: unknown category {self.category!r}")
        if self.phase not in PHASES:
            raise ValueError(f"case {self.id}: unknown phase {self.phase!r}")

    @property
    def in_child(self) -> bool:
        """Whether the case runs in a child process rather than in the caller."""
        return self.isolated or self.risky


_REGISTRY: dict[str, Case] = {}


def case(
    id: str,
    category: str,
    *,
    expect: Any,
    evidence: str,
    phase: str = "device",
    isolated: bool = False,
    risky: bool = False,
    timeout: float = 60.0,
) -> Callable[[Callable[[Probe], Any]], Callable[[Probe], Any]]:
    """Register the decorated probe as a case (ids are unique)."""

    def register(probe: Callable[[Probe], Any]) -> Callable[[Probe], Any]:
        if id in _REGISTRY:
            raise ValueError(f"duplicate conformance case id {id!r}")
        _REGISTRY[id] = Case(
            id=id,
            category=category,
            evidence=evidence,
            expect=normalize(expect),
            probe=probe,
            phase=phase,
            isolated=isolated,
            risky=risky,
            timeout=timeout,
        )
        return probe

    return register


def cases() -> list[Case]:
    """Every registered case, in category order then registration order."""
    order = {name: index for index, name in enumerate(CATEGORIES)}
    return sorted(_REGISTRY.values(), key=lambda c: order[c.category])


def normalize(value: Any) -> Any:
    """*value* as JSON would carry it (tuples become lists), so expectations compare as data."""
    if isinstance(value, (list, tuple)):
        return [normalize(v) for v in value]
    if isinstance(value, dict):
        return {str(k): normalize(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return repr(value)


def _type_name(value: Any) -> str:
    if value is None:
        return "None"
    name = type(value).__name__
    return "ndarray" if name == "ndarray" else name


def shape(result: Any, *, bare: bool = False) -> str:
    """A call's result as a shape: ``"(int, int, ret=0)"``, ``"ret=0"`` or a type (``bare``).

    pyacl returns ``ret`` alone, outputs then ``ret`` last, or (``bare``) a value with no ret.
    The shape keeps ``ret`` so that a failed call is visible in the comparison.
    """
    if bare:
        return _type_name(result)
    if type(result) is int:
        return f"ret={result}"
    if type(result) is tuple and result and type(result[-1]) is int:
        outputs = ", ".join(_type_name(v) for v in result[:-1])
        return f"({outputs}, ret={result[-1]})"
    return f"unexpected {_type_name(result)}: {result!r}"[:200]


def ret_of(result: Any) -> int:
    """The ``ret`` of a call's result (the last element of a tuple)."""
    if type(result) is tuple:
        result = result[-1]
    if type(result) is not int:
        raise SetupError(f"expected an aclError int, got {result!r}")
    return result


@dataclass
class Probe:
    """What a probe function gets: the ``acl`` module, the device, and a cleanup stack."""

    acl: Any
    device: int = 0
    #: Model files the user gave (``--model PATH``); model cases pick one that fits.
    models: tuple[str, ...] = ()
    notes: dict[str, Any] = field(default_factory=dict)
    _cleanups: list[Callable[[], Any]] = field(default_factory=list)
    _keep: list[Any] = field(default_factory=list)

    # ------------------------------------------------------------------ cleanup

    def defer(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` when the case ends, newest first, whatever happened."""
        self._cleanups.append(lambda: fn(*args))

    def cleanup(self) -> list[str]:
        """Run the deferred calls; return a description of those that raised or failed."""
        problems: list[str] = []
        while self._cleanups:
            fn = self._cleanups.pop()
            try:
                fn()
            except Exception as exc:  # keep releasing the rest
                problems.append(f"{type(exc).__name__}: {exc}")
        self._keep.clear()
        return problems

    def note(self, key: str, value: Any) -> None:
        """Extra detail for the report; not compared with the expectation."""
        self.notes[key] = normalize(value)

    # ------------------------------------------------------------------ setup helpers

    def ok(self, api: str, *args: Any) -> Any:
        """Call ``acl.<api>(*args)`` for setup: its outputs, or :class:`SetupError`."""
        result = self.fn(api)(*args)
        ret = ret_of(result)
        if ret != 0:
            raise SetupError(f"setup call acl.{api}{args!r} returned {ret}")
        if type(result) is tuple:
            return result[0] if len(result) == 2 else result[:-1]
        return None

    def fn(self, api: str) -> Callable[..., Any]:
        """``acl.<api>`` (``"rt.malloc"``); AttributeError names the missing function."""
        target: Any = self.acl
        for part in api.split("."):
            try:
                target = getattr(target, part)
            except AttributeError:
                raise AttributeError(f"this pyacl has no acl.{api}") from None
        fn: Callable[..., Any] = target
        return fn

    def malloc(self, size: int = 256) -> int:
        """Device memory of *size* bytes, freed at the end."""
        ptr: int = self.ok("rt.malloc", size, 0)
        self.defer(self.acl.rt.free, ptr)
        return ptr

    def malloc_host(self, size: int = 256) -> int:
        """Pinned host memory of *size* bytes, freed at the end."""
        ptr: int = self.ok("rt.malloc_host", size)
        self.defer(self.acl.rt.free_host, ptr)
        return ptr

    def pageable(self, data: bytes) -> int:
        """The address of ordinary (pageable) host memory holding *data*, 64-byte aligned (so
        that only the kind of memory differs from ``malloc_host``); kept alive to the end."""
        buf = ctypes.create_string_buffer(len(data) + 64)
        self._keep.append(buf)
        address = (ctypes.addressof(buf) + 63) // 64 * 64
        ctypes.memmove(address, data, len(data))
        return address

    def stream(self) -> int:
        """A stream of the current context, synchronized and destroyed at the end."""
        stream: int = self.ok("rt.create_stream")
        self.defer(self.acl.rt.destroy_stream, stream)
        self.defer(self.acl.rt.synchronize_stream, stream)
        return stream

    def event(self, flag: Optional[int] = None) -> int:
        """An event (``create_event``, or ``create_event_with_flag(flag)``), destroyed later."""
        if flag is None:
            event: int = self.ok("rt.create_event")
        else:
            event = self.ok("rt.create_event_with_flag", flag)
        self.defer(self.acl.rt.destroy_event, event)
        return event

    def context(self) -> int:
        """A new context on the kit's device (it becomes current); the previous current
        context is restored and the new one destroyed at the end."""
        previous = self.current_context()
        ctx: int = self.ok("rt.create_context", self.device)
        self.defer(self.acl.rt.destroy_context, ctx)
        if previous:
            self.defer(self.acl.rt.set_context, previous)
        return ctx

    def current_context(self) -> int:
        """The calling thread's current context, or 0 when there is none."""
        ctx, ret = self.acl.rt.get_context()
        return int(ctx) if ret == 0 else 0

    def read_device(self, ptr: int, size: int) -> bytes:
        """*size* bytes of device memory at *ptr*, copied with a synchronous memcpy."""
        buf = ctypes.create_string_buffer(size)
        self.ok("rt.memcpy", ctypes.addressof(buf), size, ptr, size, DEVICE_TO_HOST)
        return buf.raw

    def write_device(self, ptr: int, data: bytes) -> None:
        """Copy *data* to device memory at *ptr* with a synchronous memcpy."""
        buf = ctypes.create_string_buffer(data, len(data))
        self.ok("rt.memcpy", ptr, len(data), ctypes.addressof(buf), len(data), HOST_TO_DEVICE)

    def raises(self, api: str, *args: Any, release: Optional[Callable[[Any], Any]] = None) -> str:
        """Call ``acl.<api>(*args)`` expecting an exception: its class name (with pyACL's
        ``args parse failed`` when the message says so), or what it returned instead
        (*release* undoes a call that unexpectedly succeeded)."""
        fn = self.fn(api)
        try:
            result = fn(*args)
        except Exception as exc:
            name = type(exc).__name__
            return f"{name}: {PARSE_FAILED}" if PARSE_FAILED in str(exc) else name
        if release is not None:
            self.defer(release, result)
        return f"returned {shape(result)}"


# Memcpy kinds (aclrtMemcpyKind in acl_rt.h); pyacl exports no constants.
HOST_TO_HOST = 0
HOST_TO_DEVICE = 1
DEVICE_TO_HOST = 2
DEVICE_TO_DEVICE = 3

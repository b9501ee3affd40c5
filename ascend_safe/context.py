"""The bases of every resource: :class:`ContextOwner` (a device session, owning the device's
default context, or an explicit :class:`~ascend_safe.Context`; both are built in
:mod:`ascend_safe.device`) and :class:`InContext` (what is created in one). pyacl binds the
current context to the calling thread; every operation makes its owner's context current first,
so resources can be used from any thread."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from . import _backend, _inflight, _process
from ._lifetime import Resource

if TYPE_CHECKING:
    from .device import Device

__all__ = ["ContextOwner", "InContext"]

class _Current(threading.local):
    #: The serial of the owner whose context this thread last made current (0: none).
    current = 0


_thread = _Current()
_pstate = _process.state
#: For hot paths: ``if this_thread.current != owner._serial: owner.make_current()`` skips the
#: call when the context is already current (the owner of an object in use is open: its close
#: closes its children first, and a child's close waits for that use).
this_thread = _thread


class ContextOwner(Resource):
    """A resource that owns a pyacl context: streams, events and memory are created in it."""

    __slots__ = ("_ctx",)

    _ctx: int

    @property
    def device(self) -> Device:
        """The device session this context belongs to."""
        raise NotImplementedError

    @property
    def device_id(self) -> int:
        """The device's id."""
        return self.device.id

    def make_current(self) -> None:
        """Make this context current in the calling thread (a no-op when it already is)."""
        if self._handle is None or self._pid != _pstate.pid:
            self._raise_unusable()
        if _thread.current != self._serial:
            _backend.call("rt.set_context", self._ctx, resource=self)
            _thread.current = self._serial

    def _close_children(self) -> None:
        # Drain this context's streams before anything is freed: pyacl's free is immediate.
        for stream in _inflight.busy_streams():
            if stream.owner is self:
                stream._drain_if_busy()
        super()._close_children()

    def _became_current(self) -> None:
        _thread.current = self._serial

    def _forget_current(self) -> None:
        if _thread.current == self._serial:
            _thread.current = 0


class InContext(Resource):
    """A resource created in a context: a device's default one, or an explicit Context."""

    __slots__ = ("_owner",)

    def __init__(self, owner: ContextOwner) -> None:
        if not isinstance(owner, ContextOwner):
            raise TypeError(
                f"{type(self).__name__}() takes a Device or Context, not {type(owner).__name__}"
            )
        super().__init__(owner)
        self._owner = owner

    @property
    def owner(self) -> ContextOwner:
        """The device or context this resource was created in."""
        return self._owner

    @property
    def device(self) -> Device:
        """The device session this resource belongs to."""
        return self._owner.device

    def _use(self) -> Any:
        """The live handle, with the owning context made current in this thread."""
        handle = self._checked_handle()
        self._owner.make_current()
        return handle

    def _describe(self) -> str:
        return f" device={self._owner.device.id}"

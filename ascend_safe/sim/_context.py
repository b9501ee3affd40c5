"""Contexts: creation, the current context per thread, destruction (pyACL rt_context.cpp)."""

from __future__ import annotations

from ._codes import RT_CONTEXT_NULL, RT_PARAM_INVALID
from ._core import Fail
from ._objects import Context, Stream
from ._stream import StreamDomain

__all__ = ["ContextDomain"]


class ContextDomain(StreamDomain):
    """Contexts: creation, the current context per thread, destruction (pyACL rt_context.cpp)."""

    def _new_context(self, device: int, default: bool) -> Context:
        ctx = Context(self.new_handle(), device, default)
        ctx.default_stream = Stream(self.new_handle(), ctx, explicit=False)
        self.all_streams.append(ctx.default_stream)
        self.contexts[ctx.handle] = ctx
        return ctx

    def _drop_context(self, ctx: Context) -> None:
        for stream in list(ctx.streams.values()):
            self._destroy_stream_now(stream)
        if ctx.default_stream is not None:
            self._cancel_stream(ctx.default_stream)
        ctx.alive = False
        self.contexts.pop(ctx.handle, None)
        self.dead[ctx.handle] = "context"
        if self.tls.context is ctx:
            self.tls.context = None

    # ================================================================= acl.rt: context

    def api_create_context(self, device_id: int) -> tuple[int]:
        self._device(device_id)
        self._check_lost(device_id)
        ctx = self._new_context(device_id, default=False)
        self.tls.context = ctx
        return (ctx.handle,)

    def api_destroy_context(self, handle: int) -> tuple[()]:
        # api_impl.cc ContextDestroy: a context that is not valid (destroyed, foreign) and a
        # primary (default) context both give RT_ERROR_CONTEXT_NULL
        ctx = self._lookup(self.contexts, handle, "context", destroy=True, code=RT_CONTEXT_NULL)
        if ctx.default:
            # The runtime refuses to destroy a primary (default) context: RT_ERROR_CONTEXT_NULL
            raise Fail(
                RT_CONTEXT_NULL,
                f"context 0x{handle:x} is the default context of device {ctx.device}; it is "
                "released by reset_device, not destroy_context",
            )
        if ctx.streams:
            self.violate(
                "teardown_order",
                f"destroy_context 0x{handle:x} while {len(ctx.streams)} of its streams were "
                "still live; destroy streams first",
            )
        self._drop_context(ctx)
        return ()

    def api_set_context(self, handle: int) -> tuple[()]:
        # api_error.cc ContextSetCurrent: CHECK_CONTEXT_VALID_WITH_RETURN(..., INVALID_VALUE)
        ctx = self._lookup(self.contexts, handle, "context", code=RT_PARAM_INVALID)
        self.tls.context = ctx
        return ()

    def api_get_context(self) -> tuple[int]:
        ctx = self.tls.context
        if ctx is None or not ctx.alive:
            raise Fail(RT_CONTEXT_NULL, "this thread has no current context")
        return (ctx.handle,)

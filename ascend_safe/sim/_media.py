"""Media, AIPP, operator and tensor descriptors: create/destroy pairs at the handle level.

pyACL: ``media/media_vpc.cpp``, ``media/media_jpeg.cpp``, ``media/media_vdec.cpp``,
``media/media_venc.cpp``, ``mdl/mdl_wrap.cpp`` (AIPP), ``op/op.cpp``, ``utils_methods.cpp``
(tensor descriptions). The simulator processes no images: it hands out handles, checks them
like every other handle (stale, foreign, double destroy are violations), and reports live ones.
Each create is a bare value (0 on failure); each destroy returns ``ret``, except
``destroy_tensor_desc`` and ``op.destroy_attr``, which return None as pyACL's do
(``aclDestroyTensorDesc`` and ``aclopDestroyAttr`` are void: ``utils_methods.cpp``,
``op/op.cpp`` WrapAclOpDestroyAttr). Creates whose wrapper takes no argument never call
``PyArg_ParseTuple`` (format :data:`NO_PARSE`), so extra arguments are ignored.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

from ._codes import INVALID_PARAM
from ._core import NO_PARSE, Core, Fail

__all__ = ["DESCRIPTOR_PAIRS", "DescriptorPair", "MediaDomain"]


class DescriptorPair(NamedTuple):
    """One create/destroy pair: api names below ``acl``, handle kind, create parse format."""

    create: str
    destroy: str
    kind: str
    create_fmt: Optional[str]
    destroy_returns_none: bool = False


#: Every descriptor pair the simulator implements (formats from pyACL's wrappers).
DESCRIPTOR_PAIRS: tuple[DescriptorPair, ...] = (
    DescriptorPair(
        "media.dvpp_create_channel_desc",
        "media.dvpp_destroy_channel_desc",
        "dvpp_channel_desc",
        NO_PARSE,
    ),
    DescriptorPair(
        "media.dvpp_create_pic_desc", "media.dvpp_destroy_pic_desc", "dvpp_pic_desc", NO_PARSE
    ),
    DescriptorPair(
        "media.dvpp_create_stream_desc",
        "media.dvpp_destroy_stream_desc",
        "dvpp_stream_desc",
        NO_PARSE,
    ),
    DescriptorPair(
        "media.dvpp_create_batch_pic_desc",
        "media.dvpp_destroy_batch_pic_desc",
        "dvpp_batch_pic_desc",
        "I",
    ),
    DescriptorPair(
        "media.dvpp_create_roi_config", "media.dvpp_destroy_roi_config", "dvpp_roi_config", "IIII"
    ),
    DescriptorPair(
        "media.dvpp_create_resize_config",
        "media.dvpp_destroy_resize_config",
        "dvpp_resize_config",
        NO_PARSE,
    ),
    DescriptorPair(
        "media.dvpp_create_jpege_config",
        "media.dvpp_destroy_jpege_config",
        "dvpp_jpege_config",
        NO_PARSE,
    ),
    DescriptorPair(
        "media.vdec_create_channel_desc",
        "media.vdec_destroy_channel_desc",
        "vdec_channel_desc",
        NO_PARSE,
    ),
    DescriptorPair(
        "media.vdec_create_frame_config",
        "media.vdec_destroy_frame_config",
        "vdec_frame_config",
        NO_PARSE,
    ),
    DescriptorPair(
        "media.venc_create_channel_desc",
        "media.venc_destroy_channel_desc",
        "venc_channel_desc",
        NO_PARSE,
    ),
    DescriptorPair(
        "media.venc_create_frame_config",
        "media.venc_destroy_frame_config",
        "venc_frame_config",
        NO_PARSE,
    ),
    DescriptorPair("mdl.create_aipp", "mdl.destroy_aipp", "aipp", "K"),
    DescriptorPair("op.create_attr", "op.destroy_attr", "op_attr", NO_PARSE, True),
    DescriptorPair("create_tensor_desc", "destroy_tensor_desc", "tensor_desc", "iOi", True),
)


class MediaDomain(Core):
    """Descriptor create/destroy pairs at the handle-lifetime level (no image processing)."""

    def _init_state(self) -> None:
        super()._init_state()
        self.descriptors: dict[int, str] = {}  # handle -> kind

    def live_handles(self) -> dict[str, list[int]]:
        live = super().live_handles()
        with self.lock:
            for handle, kind in self.descriptors.items():
                live.setdefault(kind, []).append(handle)
        for kind in {k for k in self.descriptors.values()}:
            live[kind].sort()
        return live

    def _drop_descriptors(self) -> None:
        """At finalize: forget every descriptor (host structures pyacl frees)."""
        for handle, kind in list(self.descriptors.items()):
            del self.descriptors[handle]
            self.dead[handle] = kind

    def _create_descriptor(self, pair: DescriptorPair, args: tuple[Any, ...]) -> int:
        if pair.kind == "aipp" and args[0] == 0:
            raise Fail(INVALID_PARAM, "AIPP batch size must be > 0")
        if pair.kind == "dvpp_batch_pic_desc" and args[0] == 0:
            raise Fail(INVALID_PARAM, "batch size must be > 0")
        if pair.kind == "tensor_desc" and not isinstance(args[1], list):
            raise TypeError("argument 2 is not list")
        handle = self.new_handle()
        self.descriptors[handle] = pair.kind
        return handle

    def _destroy_descriptor(self, pair: DescriptorPair, handle: int) -> Any:
        if handle == 0:
            raise Fail(INVALID_PARAM, f"{pair.kind} handle is 0 (NULL)")
        kind = self.descriptors.get(handle)
        if kind != pair.kind:
            if kind is None and self.dead.get(handle) == pair.kind:
                self.violate("double_free", f"{pair.kind} 0x{handle:x} was already destroyed")
                raise Fail(INVALID_PARAM, f"{pair.kind} 0x{handle:x} was already destroyed")
            what = kind or "not a handle the simulator created"
            self.violate("foreign_handle", f"0x{handle:x} is not a {pair.kind} ({what})")
            raise Fail(INVALID_PARAM, f"0x{handle:x} is not a valid {pair.kind} handle")
        del self.descriptors[handle]
        self.dead[handle] = pair.kind
        return None if pair.destroy_returns_none else ()


def impl_name(api: str) -> str:
    """The ``api_*`` method name for *api* (``"media.dvpp_create_pic_desc"``)."""
    return "api_" + api.rsplit(".", 1)[-1]


def _install() -> None:
    for pair in DESCRIPTOR_PAIRS:

        def create(self: MediaDomain, *args: Any, _pair: DescriptorPair = pair) -> int:
            return self._create_descriptor(_pair, args)

        def destroy(self: MediaDomain, handle: int, _pair: DescriptorPair = pair) -> Any:
            return self._destroy_descriptor(_pair, handle)

        methods: tuple[tuple[str, Callable[..., Any]], ...] = (
            (pair.create, create),
            (pair.destroy, destroy),
        )
        for api, fn in methods:
            setattr(MediaDomain, impl_name(api), fn)


_install()
